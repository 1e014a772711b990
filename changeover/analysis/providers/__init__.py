"""Metric providers: one module each, behind the registry in ``providers.base``.

Importing a provider's module registers it. ``load()`` imports every module that ships
(the judges register as providers too: ``mannWhitney``, ``abSignificance``), so the
controller's runner and ``lint`` see the same set. Modules that are not there are skipped.
"""

from __future__ import annotations

import importlib
import importlib.util

MODULES = (
    "changeover.analysis.providers.builtin",
    "changeover.analysis.providers.web",
    "changeover.analysis.providers.job",
    "changeover.analysis.providers.prometheus",
    "changeover.analysis.judges.mann_whitney",
    "changeover.analysis.judges.ab_significance",
)


def load() -> None:
    """Register every provider (idempotent)."""
    for name in MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
