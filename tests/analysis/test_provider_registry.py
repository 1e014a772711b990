"""The metric provider registry: every shipped name known before its module is imported,
and each module registering the names ``SHIPPED`` says it does."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from changeover.analysis.providers import base


def test_names_are_known_without_importing_providers() -> None:
    code = (
        "import sys\n"
        "from changeover.analysis.providers import base\n"
        "print(' '.join(base.registered()))\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('changeover.analysis'))))\n"
    )
    names, loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert set(names.split()) == set(base.SHIPPED)
    assert not set(loaded.split()) & set(base.SHIPPED.values())


@pytest.mark.parametrize("name", sorted(base.SHIPPED))
def test_shipped_module_registers_its_name(name: str) -> None:
    importlib.import_module(base.SHIPPED[name])
    assert name in base._REGISTRY
    assert base.create(name).name in (name, "abSignificance")
