"""The router registry: names and capabilities known without importing any router, and each
shipped name resolving to the factory of a router that declares the same capabilities."""

from __future__ import annotations

import subprocess
import sys

import pytest

from changeover.traffic import base


def test_validation_imports_no_router() -> None:
    """``lint`` must not load a data plane (the builtin proxy's compiled build, HAProxy's
    driver, the Kubernetes client) to know what each router can do."""
    code = (
        "import sys, changeover.validation\n"
        "from changeover.traffic import base\n"
        "assert base.capabilities_of('istio') and base.capabilities_of('builtin')\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('changeover.'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = out.split()
    assert [m for m in loaded if m.startswith(("changeover.traffic.", "changeover.kube"))] == [
        "changeover.traffic.base"
    ]
    assert "changeover.analysis.providers.prometheus" not in loaded


@pytest.mark.parametrize("name", sorted(base.SHIPPED))
def test_shipped_router_resolves_to_its_module(name: str) -> None:
    factory = base.factory_of(name)
    module = sys.modules[factory.__module__]
    assert callable(factory)
    assert base.capabilities_of(name) == module.CAPABILITIES
