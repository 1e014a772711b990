"""changeover.spec: the Rollout spec, read from YAML into typed models; the bottom layer.

The surface other layers use::

    rollouts = spec.parse_rollouts(spec.load_text(body, source="request"))
    docs, problems = spec.load.collect_path("rollouts/")

Checking specs against the routers and metric providers (``lint``, ``apply``) is
``changeover.validation``'s, a layer above this one: ``spec`` imports nothing of
``traffic`` or ``analysis``. Inside the package, import modules
(``from changeover.spec import models``), not these names.
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

__all__ = [
    "API_VERSION",
    "STRATEGY_NAMES",
    "LoadedDocument",
    "Rollout",
    "Specs",
    "load_path",
    "load_text",
    "parse_documents",
    "parse_rollouts",
]
