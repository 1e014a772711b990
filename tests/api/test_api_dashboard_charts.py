"""The dashboard's live charts read right: chromium (Playwright, Debian's binary) on a real
API server whose service reports traffic the test controls, built with the router's own
histogram class. Every second each revision answers 20 more requests, revision 2 a quarter
of them with 5xx, every response taking 0.2 s to its head and, for revision 2 (a model
service streaming tokens), 0.2 s to its first token. The page must chart the request
rate, the error share, p99 latency and TTFB as a PromQL rate()/histogram_quantile() over
those buckets would, and show the time-to-first-token chart only because a revision
streamed. Analysis measurements are charted: numbers against the condition's threshold,
objects ({p99, errorRate}) as one series per numeric field.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_helpers import AUTH, ROLLOUT, TOKEN

from changeover.api.server import start_api
from changeover.testing.fake_service import FakeService
from changeover.traffic.builtin.metrics import Histogram
from tests import browser_helpers

pytestmark = pytest.mark.slow

# histogram_quantile(0.99) of observations all in the (0.1, 0.25] bucket: linear inside it.
P99 = 0.1 + (0.25 - 0.1) * 0.99


class TrafficService(FakeService):
    """A fake service whose rollout "chat" serves known traffic, cumulative as the router's."""

    def __init__(self) -> None:
        super().__init__()
        self.started = time.monotonic()

    def traffic(self, name: str) -> dict[str, Any]:
        self._get(name)
        ticks = int((time.monotonic() - self.started) * 10)  # 2 requests every 0.1 s
        return {"revisions": {"1": _revision(ticks, errors=0), "2": _revision(ticks, errors=1)}}

    def analysis(self, name: str) -> list[dict[str, Any]]:
        self._get(name)
        return [RUN]


def _measured(*values: Any) -> list[dict[str, Any]]:
    return [
        {"phase": "Successful", "value": v, "message": "", "finishedAt": 1_700_000_000.0 + i}
        for i, v in enumerate(values)
    ]


# One run: a metric measuring a number against a threshold, one measuring an object.
RUN = {
    "id": "chat-2-1-step",
    "kind": "step",
    "revision": 2,
    "phase": "Running",
    "message": "",
    "startedAt": 1_700_000_000.0,
    "finishedAt": None,
    "metrics": [
        {
            "name": "errors",
            "successCondition": "result <= 0.05",
            "thresholds": {"success": {"operator": "<=", "value": 0.05}},
            "phase": "Running",
            "measurements": _measured(0.01, [0.02]),
        },
        {
            "name": "latency",
            "successCondition": "result.p99 < 0.5 && result.errorRate < 0.2",
            "thresholds": {},
            "phase": "Running",
            "measurements": _measured({"p99": 0.3, "errorRate": 0.01, "note": "x"}),
        },
    ],
}


def _revision(ticks: int, *, errors: int) -> dict[str, Any]:
    hist = Histogram()
    for _ in range(2 * ticks):
        hist.observe(0.2)
    doc: dict[str, Any] = {
        "requests": {"2xx": 2 * ticks - errors * (ticks // 2), "5xx": errors * (ticks // 2)},
        "latency": hist.snapshot(),
        "ttfb": hist.snapshot(),
    }
    if errors:
        doc["streams"] = {"count": 2 * ticks, "ttft": hist.snapshot()}
    return doc


@pytest.fixture
def api_url() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    api = asyncio.run_coroutine_threadsafe(
        start_api(TrafficService(), "127.0.0.1", 0, TOKEN), loop
    ).result(10)
    httpx.post(f"{api.url}/api/v1/apply", json={"documents": [ROLLOUT]}, headers=AUTH)
    try:
        yield api.url
    finally:
        asyncio.run_coroutine_threadsafe(api.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_charts_show_rates_error_share_and_percentiles(api_url: str) -> None:
    last: dict[str, dict[str, float]] = {}
    drawn = {}
    with browser_helpers.page() as (page, errors):
        page.goto(f"{api_url}/dashboard/#/rollouts/chat")
        for key in ("rate", "errors", "latency", "ttfb", "ttft"):
            chart = page.locator(f'[data-chart="{key}"] .uplot')
            page.wait_for_function(
                f"() => Number(document.querySelector('[data-chart=\"{key}\"] .uplot')"
                "?.dataset.points || 0) >= 3",
                timeout=30_000,
            )
            last[key] = json.loads(chart.get_attribute("data-last") or "{}")
        for metric in ("errors", "latency"):
            chart = page.locator(f'[data-measurements="{metric}"] .uplot')
            chart.wait_for()
            drawn[metric] = json.loads(chart.get_attribute("data-series") or "[]")
    # One event a second: about 20 requests a second each (the server's clock, not ours).
    assert all(15 <= last["rate"][v] <= 25 for v in ("v1", "v2")), last["rate"]
    assert last["errors"]["v1"] == 0
    assert 0.2 <= last["errors"]["v2"] <= 0.3, last["errors"]
    for key, label in (("latency", "p99 v1"), ("ttfb", "p99 v2"), ("ttft", "p99 v2")):
        assert abs(last[key][label] - P99) < 1e-9, (key, last[key])
    assert last["ttft"]["p99 v1"] is None  # revision 1 never streamed
    # Numbers (and a one-element vector) against the threshold; an object's numeric fields.
    assert drawn == {"errors": ["errors", "success <= 0.05"], "latency": ["p99", "errorRate"]}
    assert errors == []
