"""examples/grafana/changeover-rollouts.json against the real thing: a real ``changeover
serve`` running a canary of examples/model_service.py paused half way with a background
analysis, under steady load (plain GETs and streamed chat completions, for the time to
first token), and a real Prometheus (Debian's) scraping serve's ``/metrics``.

Every query of every panel, with the board's variables filled in as Grafana would, returns
data; the per-version panels return a series for both revisions; the rollout variable's
query lists the rollout; and the rollout-level series say what ``status`` says.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_helpers import EXAMPLES
from e2e_load import BackgroundLoad
from e2e_serve import Serve
from e2e_specs import example_rollout, with_version, write_rollout

from tests import prometheus_helpers

pytestmark = pytest.mark.slow

BOARD = EXAMPLES / "grafana" / "changeover-rollouts.json"
RATE_INTERVAL = "10s"  # what Grafana picks for $__rate_interval at a 1 s scrape, or more


@pytest.fixture
def prometheus(serve: Serve, tmp_path: Path) -> Iterator[str]:
    with prometheus_helpers.running(tmp_path / "prom", serve.port) as url:
        yield url


@contextmanager
def _streaming(url: str) -> Iterator[None]:
    """Streamed chat completions through the router on a thread, until the block ends."""
    stop = threading.Event()

    def talk() -> None:
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    client.post("/v1/chat/completions", json=body)

    thread = threading.Thread(target=talk, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(15)


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    doc = reply.json()
    assert doc.get("status") == "success", f"{expr}: {doc}"
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def _until_data(
    prometheus: str,
    expr: str,
    *,
    revisions: frozenset[str] | set[str] = frozenset(),
    within: float = 45,
) -> list[dict[str, Any]]:
    """The query's series once it has some (and one for each of ``revisions``), or the
    last answer when ``within`` seconds pass first."""
    deadline = time.monotonic() + within
    while True:
        found = _query(prometheus, expr)
        have = {s["metric"].get("revision") for s in found}
        if (found and revisions <= have) or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_every_grafana_panel_returns_data_from_serve(
    serve: Serve, prometheus: str, tmp_path: Path
) -> None:
    board = json.loads(BOARD.read_text())
    v1 = example_rollout(
        "canary",
        name="graphed",
        version="v1",
        mark=serve.mark,
        strategy_patch={
            "steps": [{"setWeight": 50}, {"pause": {}}],
            "analysis": {
                "metrics": [
                    {
                        "name": "error-rate",
                        "interval": "1s",
                        "successCondition": "result <= 0.05",
                        "provider": {
                            "builtin": {
                                "metric": "error-rate",
                                "revision": "canary",
                                "window": "5s",
                            }
                        },
                    }
                ]
            },
        },
    )
    command = v1["spec"]["template"]["command"]
    command[1:2] = [str(EXAMPLES / "model_service.py"), "--ttft-ms", "20", "--token-ms", "2"]
    spec = write_rollout(tmp_path / "graphed.yaml", v1)
    assert serve.apply(spec, "--wait").code == 0
    url = serve.status("graphed")["endpoint"]
    with BackgroundLoad(url, rate=50), _streaming(url):
        write_rollout(spec, with_version(v1, "v2"))
        assert serve.apply(spec).code == 0
        serve.wait_phase("graphed", "Paused", canaryRevision=2, within=90)
        status = serve.status("graphed")
        assert status["weights"] == {"1": 50, "2": 50}, status

        variable = board["templating"]["list"][1]["query"]["query"]
        assert variable == "label_values(changeover_rollout_info, rollout)"
        names = _until_data(prometheus, "changeover_rollout_info")
        assert {s["metric"]["rollout"] for s in names} == {"graphed"}, names

        empty = []
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = (
                    target["expr"]
                    .replace("$rollout", "graphed")
                    .replace("$__rate_interval", RATE_INTERVAL)
                )
                by_version = {"1", "2"} if "by (revision" in expr else set()
                found = _until_data(prometheus, expr, revisions=by_version)
                if not found:
                    empty.append(f"{panel['title']}: {expr}")
                    continue
                revisions = {s["metric"].get("revision") for s in found}
                assert by_version <= revisions, f"{panel['title']}: {found}"
        assert not empty, "panels without data:\n" + "\n".join(empty) + "\n" + serve.log()

    shares = _query(prometheus, 'changeover_rollout_weight_percent{rollout="graphed"}')
    assert {s["metric"]["revision"]: s["value"][1] for s in shares} == {"1": "50", "2": "50"}
    phase = _query(prometheus, 'changeover_rollout_phase{rollout="graphed"} == 1')
    assert [s["metric"]["phase"] for s in phase] == ["Paused"]
    limit = _query(prometheus, 'changeover_analysis_threshold{rollout="graphed"}')
    assert [(s["metric"]["operator"], s["value"][1]) for s in limit] == [("<=", "0.05")]
