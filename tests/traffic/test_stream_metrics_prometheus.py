"""examples/llm-analysis.yaml's Prometheus queries, run by a real Prometheus scraping the
router's /metrics while examples/model_service.py streams through it: they give the numbers
the service was set to (time to first token, inter-token latency, tokens per second)."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

import httpx
import pytest
import yaml
from router_helpers import RouterFactory
from test_router_streams import StartModel, model_service, router_for, stream_once

from changeover.traffic.builtin import metrics_text
from tests import prometheus_helpers

pytestmark = pytest.mark.slow
LOOPS = ("uvloop",)
__all__ = ["model_service"]  # the fixture, imported for this module's tests

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llm-analysis.yaml"


def example_queries() -> dict[str, str]:
    """The Prometheus template's queries by metric name, for revision 1."""
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    (template,) = [d for d in docs if d["metadata"]["name"] == "token-latency-prometheus"]
    return {
        m["name"]: m["provider"]["prometheus"]["query"].replace("{{args.revision}}", "1")
        for m in template["spec"]["metrics"]
    }


async def test_example_queries_give_the_streams_numbers(
    make_router: RouterFactory, model_service: StartModel, tmp_path: Path
) -> None:
    port = await model_service("--ttft-ms", "200", "--token-ms", "50", "--tokens", "5")
    router = await router_for(make_router, port)
    exposition = prometheus_helpers.serve_exposition(
        functools.partial(metrics_text.render, router.metrics_registry)
    )
    try:
        with prometheus_helpers.running(tmp_path / "prom", exposition.server_address[1]) as url:
            client = httpx.AsyncClient(base_url=url)
            deadline = time.monotonic() + 60
            scraped = False
            while not scraped:  # streams keep flowing until rate() has enough scrapes
                await asyncio.gather(*(stream_once(router.port) for _ in range(4)))
                got = await client.get(
                    "/api/v1/query",
                    params={"query": "count_over_time(changeover_streams_total[1m])"},
                )
                result = got.json()["data"]["result"]
                scraped = bool(result) and float(result[0]["value"][1]) >= 6
                assert time.monotonic() < deadline, "prometheus never scraped enough"
            values = {}
            for name, query in example_queries().items():
                got = await client.get("/api/v1/query", params={"query": query})
                (sample,) = got.json()["data"]["result"]
                values[name] = float(sample["value"][1])
            await client.aclose()
    finally:
        exposition.shutdown()
        exposition.server_close()
    # Bucket-interpolated: TTFT ~0.2 s lies in (0.1, 0.25], gaps of ~0.05 s in (0.025, 0.05]
    # or just above; 5 tokens over ~0.4 s a stream.
    assert 0.2 <= values["ttft-p95"] <= 0.5, values
    assert 0.025 <= values["itl-p99"] <= 0.1, values
    assert 8 <= values["tokens-per-second"] <= 12.5, values
    assert values["stream-cut-rate"] == 0, values
