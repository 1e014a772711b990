"""changeover.spec: the Rollout spec, read from YAML and checked, every problem at once.

The surface other layers use::

    specs = spec.read("rollouts/")          # load + parse + check; SpecError on any error
    problems = spec.lint("rollout.yaml")    # the same, as a list (warnings too); never raises
    rollouts = spec.parse_rollouts(spec.load_text(body, source="request"))

Inside the package, import modules (``from changeover.spec import models``), not these names.

``validate`` asks the traffic registry what routers can do, and importing ``changeover.traffic``
registers (so imports) the builtin proxy. The engine imports ``spec.models`` and must not pay
for, or depend on, that; so the names from ``validate`` load on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from changeover.spec.load import (
    LoadedDocument,
    Specs,
    load_path,
    load_text,
    parse_documents,
    parse_rollouts,
)
from changeover.spec.models import API_VERSION, STRATEGY_NAMES, Rollout

if TYPE_CHECKING:
    from changeover.spec.validate import lint, read, read_text, validate_rollouts

_LAZY = ("lint", "read", "read_text", "validate_rollouts")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("changeover.spec.validate"), name)
    raise AttributeError(f"module 'changeover.spec' has no attribute {name!r}")


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
