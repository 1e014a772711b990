"""A model rollout gated by its shadow's answers, end to end: real serve, real router
process, real model-service replicas (examples/model_service.py streaming OpenAI-style
chat completions), real CLI.

v2 answers like v1: its streamed answers, reassembled and compared with v1's, match, so
analysis promotes it. v3 drifts (every answer differs): analysis on the match rate fails
and the rollout is aborted, stable v2 untouched; ``changeover shadow`` shows the
differences as diffs.
"""

from __future__ import annotations

import copy
import itertools
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from e2e_helpers import EXAMPLES, JSON, MARK_VAR, free_port, metric_sum
from e2e_serve import Serve
from e2e_specs import write_rollout

pytestmark = pytest.mark.slow


def model_rollout(name: str, mark: str, version: str, *, drift: float = 0.0) -> JSON:
    doc: JSON = copy.deepcopy(yaml.safe_load((EXAMPLES / "model-shadow.yaml").read_text()))
    doc["metadata"] = {"name": name}
    spec = doc["spec"]
    spec["replicas"] = 1
    template = spec["template"]
    template["command"] = [
        sys.executable,
        str(EXAMPLES / "model_service.py"),
        "--port",
        "$(PORT)",
        "--version",
        version,
    ]
    template["env"] = {**template["env"], "DRIFT": str(drift), MARK_VAR: mark}
    template["readinessProbe"] = {"httpGet": {"path": "/healthz"}, "periodSeconds": 0.2}
    template["terminationGracePeriodSeconds"] = 5
    spec["service"] = {"port": free_port()}
    return doc


@contextmanager
def chatting(url: str) -> Iterator[list[int]]:
    """Streamed chat requests on two threads until the block ends; their statuses."""
    statuses: list[int] = []
    stop = threading.Event()
    counter = itertools.count()

    def talk() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                n = next(counter)
                body = {
                    "messages": [{"role": "user", "content": f"question {n % 9}"}],
                    "stream": True,
                }
                try:
                    statuses.append(client.post("/v1/chat/completions", json=body).status_code)
                except httpx.HTTPError:
                    statuses.append(0)

    threads = [threading.Thread(target=talk, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        yield statuses
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)


def test_matching_shadow_promoted_drifting_shadow_stopped(serve: Serve, tmp_path: Path) -> None:
    name = "chat-model"
    v1 = model_rollout(name, serve.mark, "v1")
    path = write_rollout(tmp_path / "model.yaml", v1)
    assert serve.apply(path).code == 0
    status = serve.wait_phase(name, "Healthy", stableRevision=1)
    url = status["endpoint"]

    with chatting(url) as statuses:
        v2 = copy.deepcopy(v1)
        v2["spec"]["template"]["command"][-1] = "v2"
        write_rollout(path, v2)
        assert serve.apply(path).code == 0
        compared = serve.wait_status(
            name,
            lambda d: (
                d["canaryRevision"] == 2
                and (d.get("shadow") or {}).get("2", {}).get("compared", 0) >= 5
            ),
            what="v2's answers compared with v1's",
        )
        assert compared["weights"] == {"1": 100}  # users see v1 only
        done = serve.wait_phase(name, "Healthy", stableRevision=2, within=90)
        seen = done["shadow"]["2"] if done.get("shadow") else compared["shadow"]["2"]
        assert seen["matched"] == seen["compared"] > 0, seen
        assert seen["mismatched"] == {"status": 0, "body": 0, "latency": 0}

        v3 = model_rollout(name, serve.mark, "v3", drift=1.0)
        v3["spec"]["service"] = v1["spec"]["service"]
        write_rollout(path, v3)
        assert serve.apply(path).code == 0
        stopped = serve.wait_phase(name, "Aborted", within=60)
    assert stopped["stableRevision"] == 2 and stopped["weights"] == {"2": 100}
    assert stopped["analysis"]["answers-match"]["phase"] == "Failed", stopped["analysis"]
    assert "shadow analysis Failed" in stopped["message"]
    # clients were answered by production throughout
    assert statuses and set(statuses) == {200}, set(statuses)

    shown = serve.cli("shadow", name, check=True).stdout
    assert "shadow revision 3 vs revision 2" in shown, shown
    assert "body: similarity" in shown and "[-" in shown and "{+" in shown, shown
    doc = serve.cli("shadow", name, "-o", "json", check=True).json
    differences = doc["3"]["differences"]
    assert differences and differences[0]["kinds"] == ["body"]
    assert differences[0]["primary"]["body"] != differences[0]["shadow"]["body"]
    # the same counts in serve's /metrics, copied from the router process
    samples = serve.metrics()
    body = metric_sum(samples, "changeover_shadow_mismatched_total", revision="3", kind="body")
    compared = metric_sum(samples, "changeover_shadow_compared_total", revision="3")
    assert body == compared > 0, (body, compared)
