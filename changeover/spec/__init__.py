"""changeover.spec: the Rollout spec, read from YAML and checked, every problem at once.

The surface other layers use::

    specs = spec.read("rollouts/")          # load + parse + check; SpecError on any error
    problems = spec.lint("rollout.yaml")    # the same, as a list (warnings too); never raises
    rollouts = spec.parse_rollouts(spec.load_text(body, source="request"))

Inside the package, import modules (``from changeover.spec import models``), not these names.
"""

from __future__ import annotations

from changeover.spec.load import (
    LoadedDocument,
    Specs,
    load_path,
    load_text,
    parse_documents,
    parse_rollouts,
)
from changeover.spec.models import API_VERSION, STRATEGY_NAMES, Rollout
from changeover.spec.validate import lint, read, read_text, validate_rollouts

__all__ = [
    "API_VERSION",
    "STRATEGY_NAMES",
    "LoadedDocument",
    "Rollout",
    "Specs",
    "lint",
    "load_path",
    "load_text",
    "parse_documents",
    "parse_rollouts",
    "read",
    "read_text",
    "validate_rollouts",
]
