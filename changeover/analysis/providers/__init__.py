"""Metric providers: one module each, behind the registry in ``providers.base``.

Importing a provider's module registers it; ``providers.base.SHIPPED`` names the modules
that ship (the judges register as providers too: ``mannWhitney``, ``abSignificance``), and
the registry imports one the first time its name is used. ``load()`` imports them all.
"""

from __future__ import annotations

import importlib

from changeover.analysis.providers import base


def load() -> None:
    """Register every shipped provider (idempotent)."""
    for module in sorted(set(base.SHIPPED.values())):
        importlib.import_module(module)
