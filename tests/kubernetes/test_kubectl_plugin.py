"""``kubectl changeover``: kubectl finds the plugin on PATH and the plugin drives a
rollout on the test cluster with kubectl's own --kubeconfig, --context and -n."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import k8s_testbed as testbed
import pytest
from conftest import helper_operator
from k8s_helpers import Kube, eventually, healthy_on, phase_is, rollout

STEPS = {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}}
BIN = Path(sys.executable).parent


async def kubectl(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``kubectl changeover ARGS`` as a user types it, the plugin found on PATH."""
    kubectl_bin = shutil.which("kubectl")
    assert kubectl_bin, "kubectl is not installed (make test installs it)"
    proc = await asyncio.create_subprocess_exec(
        kubectl_bin,
        "changeover",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "NO_COLOR": "1", **(env or {})},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture
def kubeconfig_with_contexts(tmp_path: Path) -> Path:
    """The test bed's kubeconfig with a second context, `elsewhere`, made current and
    pointing nowhere: only --context picks the working one."""
    text = testbed.kubeconfig().read_text()
    text = text.replace("current-context: local", "current-context: elsewhere")
    text = text.replace(
        "contexts: [{name: local,",
        "contexts: [{name: elsewhere, context: {cluster: nowhere, user: admin}}, {name: local,",
    )
    text = text.replace(
        "clusters: [",
        'clusters: [{name: nowhere, cluster: {server: "https://127.0.0.1:1"}}, ',
    )
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    return path


async def test_plugin_drives_a_canary(kube_: Kube, kubeconfig_with_contexts: Path) -> None:
    k = kube_
    conn = [f"--kubeconfig={kubeconfig_with_contexts}", "--context", "local", "-n", k.namespace]
    async with helper_operator(k):
        await k.apply_rollout(rollout("web", strategy=STEPS))
        await healthy_on(k, "web", 1)
        await k.set_image("web", "app:v2")
        await phase_is(k, "web", "Paused")
        code, out = await kubectl("get", "rollout", "web", *conn)
        assert code == 0, out
        assert "web" in out and "Paused" in out
        code, out = await kubectl("promote", "web", *conn)
        assert code == 0, out
        await eventually(
            lambda: k.status("web"),
            lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 3,
            what="paused at the second pause",
        )
        code, out = await kubectl("abort", "web", *conn)
        assert code == 0, out
        await eventually(
            lambda: k.status("web"),
            lambda s: s.get("phase") == "Aborted" and s.get("weightsText") == "1:100",
            what="aborted, all traffic on stable",
        )
        code, out = await kubectl("list", "rollouts", *conn)
        assert code == 0 and "Aborted" in out, out
    # Without --context the kubeconfig's current context (nowhere) is used: it fails
    # cleanly, naming the server, instead of acting on the wrong cluster.
    code, out = await kubectl("get", "rollout", "web", f"--kubeconfig={kubeconfig_with_contexts}")
    assert code != 0 and "127.0.0.1:1" in out and "Traceback" not in out


async def test_plugin_refuses_unknown_commands() -> None:
    code, out = await kubectl("frobnicate", "web")
    assert code == 2 and "unknown command 'frobnicate'" in out
    code, out = await kubectl("version")
    assert code == 0 and "kubectl-changeover" in out
