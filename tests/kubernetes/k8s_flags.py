"""Flag resources in the Kubernetes tests: a walked Flag's manifest, its status and
events as the operator writes them, and the CLI with ``--platform kubernetes``."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import k8s_testbed as testbed
from k8s_helpers import Kube, eventually
from typer.testing import CliRunner

from changeover.cli.main import app
from changeover.kube import client as kube
from changeover.platforms.kubernetes.events import list_events

JSON = dict[str, Any]
BIN = Path(sys.executable).parent  # kubectl-changeover, the plugin


def flag(name: str, steps: list[JSON], *, target: str | None = None) -> JSON:
    walk: JSON = {"variant": "new", "steps": steps}
    if target is not None:
        walk["target"] = target
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Flag",
        "metadata": {"name": name},
        "spec": {
            "key": name,
            "type": "string",
            "variants": {"old": "v1", "new": "v2"},
            "defaultVariant": "old",
            "split": [{"variant": "new", "weight": 100}],
            "rollout": walk,
        },
    }


async def flag_status(k: Kube, name: str) -> JSON:
    obj = await k.client.get_or_none(kube.FLAGS, name, namespace=k.namespace)
    return (obj or {}).get("status") or {}


def walked(status: JSON) -> tuple[str | None, int | None, int | None]:
    r = status.get("rollout") or {}
    return status.get("phase"), r.get("stepIndex"), r.get("weight")


async def flag_events(k: Kube, name: str, *wanted: str) -> list[str]:
    """The Flag's event reasons once ``wanted`` have all occurred in that order (events are
    recorded after the status write a test waits for)."""

    async def reasons() -> list[str]:
        items = await list_events(k.client, namespace=k.namespace, name=name, kind="Flag")
        return [e["reason"] for e in items]

    def in_order(seen: list[str]) -> bool:
        it = iter(seen)
        return all(w in it for w in wanted)

    return await eventually(reasons, in_order, what=f"{name} events {' → '.join(wanted)}")


def cli(namespace: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        app,
        [
            *args,
            "--platform",
            "kubernetes",
            "--kubeconfig",
            str(testbed.kubeconfig()),
            "-n",
            namespace,
        ],
    )
    return result.exit_code, result.stdout, result.stderr


async def cli_ok(namespace: str, *args: str) -> str:
    code, out, err = await asyncio.to_thread(cli, namespace, *args)
    assert code == 0, f"{args}: exit {code}: {out}{err}"
    return out


async def kubectl_changeover(*args: str) -> str:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed (make test installs it)"
    proc = await asyncio.create_subprocess_exec(
        kubectl,
        "changeover",
        *args,
        f"--kubeconfig={testbed.kubeconfig()}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "NO_COLOR": "1"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def web_template(
    k: Kube, name: str, url: str, *, count: int, interval: str = "", timeout_seconds: int = 0
) -> None:
    """An AnalysisTemplate whose metric reads ``{"ok": true}`` from ``url`` (the web
    provider), ``count`` times ``interval`` apart, failing at the first false."""
    web: JSON = {"url": url, "jsonPath": "{$.ok}"}
    if timeout_seconds:
        web["timeoutSeconds"] = timeout_seconds
    metric: JSON = {
        "name": "healthy",
        "count": count,
        "successCondition": "result == true",
        "failureLimit": 0,
        "provider": {"web": web},
    }
    if interval:
        metric["interval"] = interval
    await k.create(
        kube.ANALYSIS_TEMPLATES,
        {
            "apiVersion": "changeover.dev/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": {"name": name},
            "spec": {"metrics": [metric]},
        },
    )
