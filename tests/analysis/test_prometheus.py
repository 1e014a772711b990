"""The ``prometheus`` provider against a real Prometheus server scraping a real builtin router.

Given a router that proxied known traffic (stable answers 200, the canary 500 on /boom),
and a Prometheus (Debian's package, installed by ``make deps-prometheus``) scraping the
router's metrics every second behind basic auth, when the provider queries it, then it
sees exactly the router's counts, shaped as scalars, vectors and range series.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from analysis_helpers import HttpServer, TemplateRunner, argo_templates

from changeover.analysis.judges import ab_significance, mann_whitney
from changeover.analysis.providers import base, prometheus
from changeover.endpoints import Endpoint
from changeover.traffic.builtin import BuiltinRouter, Registry, metrics_text
from tests import prometheus_helpers

pytestmark = pytest.mark.slow

USER, PASSWORD = prometheus_helpers.AUTH.pair
GOOD, BOOM = 40, 20  # requests to / (both sides 200) and to /boom (canary 500)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Prom:
    url: str
    registry: Registry

    def config(self, **extra: Any) -> dict[str, Any]:
        return {
            "address": self.url,
            "authentication": {"basicAuth": {"username": USER, "password": PASSWORD}},
            "timeout": 10,
            **extra,
        }


async def _upstream(fail_boom: bool) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                status = 500 if fail_boom and path == b"/boom" else 200
                writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 2\r\n\r\nok" % status)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def _drive_traffic(registry: Registry) -> None:
    """Stable (revision 1) and canary (revision 2) split 50/50; the canary fails /boom."""
    stable, canary = await _upstream(False), await _upstream(True)
    router = BuiltinRouter("web", port=0, metrics=registry)
    await router.start()
    try:
        for rev, server in ((1, stable), (2, canary)):
            port = server.sockets[0].getsockname()[1]
            await router.set_backends(rev, [Endpoint("127.0.0.1", port)])
        await router.set_weight({1: 50, 2: 50})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
            for path in ["/"] * GOOD + ["/boom"] * BOOM:
                await client.get(path)
    finally:
        await router.close()
        for server in (stable, canary):
            server.close()


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    registry = Registry()
    asyncio.run(_drive_traffic(registry))
    metrics = prometheus_helpers.serve_exposition(functools.partial(metrics_text.render, registry))
    tmp = tmp_path_factory.mktemp("prom")
    auth = prometheus_helpers.AUTH
    try:
        with prometheus_helpers.running(tmp, metrics.server_address[1], basic_auth=auth) as url:
            # Three scrapes holding every request the router counted (range queries need
            # more than one point).
            prometheus_helpers.wait_for_scrapes(
                url,
                'count_over_time(changeover_requests_total{rollout="web",revision="1",'
                'code="2xx"}[1m]) and on() sum(changeover_requests_total{rollout="web"}) == '
                + str(GOOD + BOOM),
                basic_auth=auth,
            )
            yield Prom(url, registry)
    finally:
        metrics.shutdown()
        metrics.server_close()


CTX = base.MeasureContext(
    rollout="web", namespace="default", stable_revision=1, canary_revision=2, now=0.0
)


async def measure(config: dict[str, Any]) -> base.ProviderResult:
    return await base.create("prometheus").measure(config, args={}, context=CTX)


def router_count(prom: Prom, revision: int, code: str) -> int:
    snap: dict[str, Any] = prom.registry.snapshot()["web"]["revisions"][str(revision)]
    return int(snap["requests"][code])


async def test_instant_vector_matches_the_router_counts(prom: Prom) -> None:
    result = await measure(
        prom.config(query='sum(changeover_requests_total{rollout="web",code="5xx"})')
    )
    assert result.value == [float(router_count(prom, 2, "5xx"))]
    assert result.phase is None
    assert result.value[0] > 0  # the canary did fail /boom


async def test_a_vector_of_several_series_is_a_list_in_label_order(prom: Prom) -> None:
    query = 'sum by (revision) (changeover_requests_total{rollout="web",code="2xx"})'
    cfg = prometheus.parse_config(prom.config(query=query))
    raw = await prometheus.PrometheusClient(cfg).query(query)
    by_revision = {s.labels["revision"]: s.values[0] for s in raw.series}
    assert by_revision == {
        "1": router_count(prom, 1, "2xx"),
        "2": router_count(prom, 2, "2xx"),
    }
    assert (await measure(prom.config(query=query))).value == [s.values[0] for s in raw.series]


async def test_scalar_query_is_a_float(prom: Prom) -> None:
    result = await measure(
        prom.config(query='scalar(sum(changeover_requests_total{rollout="web"}))')
    )
    assert result.value == float(GOOD + BOOM)


async def test_success_rate_and_latency_quantile(prom: Prom) -> None:
    ok = 'sum(changeover_requests_total{rollout="web",revision="2",code="2xx"})'
    total = 'sum(changeover_requests_total{rollout="web",revision="2"})'
    rate = await measure(prom.config(query=f"{ok} / {total}"))
    expected = router_count(prom, 2, "2xx") / (
        router_count(prom, 2, "2xx") + router_count(prom, 2, "5xx")
    )
    assert rate.value == [pytest.approx(expected)]
    p99 = await measure(
        prom.config(
            query="histogram_quantile(0.99, sum by (le, revision) "
            '(changeover_request_duration_seconds_bucket{rollout="web"}))'
        )
    )
    assert len(p99.value) == 2 and all(0 < v < 1 for v in p99.value)


async def test_range_query_is_a_series_over_time(prom: Prom) -> None:
    result = await measure(
        prom.config(
            query='sum(changeover_requests_total{rollout="web"})',
            rangeQuery={"start": 'now() - duration("20s")', "end": "now()", "step": "1s"},
        )
    )
    assert isinstance(result.value, list) and len(result.value) >= 2
    assert result.value[-1] == GOOD + BOOM
    assert result.value == sorted(result.value)  # a counter never goes down


async def test_range_query_of_several_series_is_a_list_of_lists(prom: Prom) -> None:
    result = await measure(
        prom.config(
            query='sum by (revision) (changeover_requests_total{rollout="web"})',
            rangeQuery={"start": "now() - 10s", "step": "2s"},
        )
    )
    assert len(result.value) == 2 and all(isinstance(s, list) for s in result.value)


async def test_empty_vector_is_an_empty_list(prom: Prom) -> None:
    assert (
        await measure(prom.config(query='changeover_requests_total{rollout="nope"}'))
    ).value == []


async def test_promql_error_carries_prometheus_text(prom: Prom) -> None:
    with pytest.raises(base.ProviderError, match=r"bad_data: .*parse error"):
        await measure(prom.config(query="sum(changeover_requests_total"))


async def test_wrong_password_is_an_error_not_a_crash(prom: Prom) -> None:
    cfg = prom.config(query="up")
    cfg["authentication"] = {"basicAuth": {"username": USER, "password": "wrong"}}
    with pytest.raises(base.ProviderError, match="401"):
        await measure(cfg)
    del cfg["authentication"]
    with pytest.raises(base.ProviderError, match="401"):
        await measure(cfg)


async def test_connection_refused_is_a_provider_error() -> None:
    with pytest.raises(base.ProviderError, match=r"prometheus http://127\.0\.0\.1"):
        await measure({"address": f"http://127.0.0.1:{free_port()}", "query": "up"})


async def test_bad_config_is_a_provider_error_naming_the_field() -> None:
    with pytest.raises(base.ProviderError, match=r"provider\.prometheus\.address"):
        await measure({"address": "prometheus:9090", "query": "up"})
    assert prometheus.problems({"address": "http://p", "query": "up", "timeout": "soon"}) == [
        "timeout: expected a duration such as 30s, 5m or 1h, got 'soon'"
    ]
    assert prometheus.problems(
        {"address": "http://p", "query": "up", "rangeQuery": {"start": "yesterday"}}
    )


async def test_mann_whitney_judge_reads_each_revision_from_prometheus(prom: Prom) -> None:
    """The canary's 5xx counter against the stable's, one sample per second of the last
    ten (``{{revision}}`` filled in per side): the canary is High on errors, a critical
    metric, so the run fails."""
    auth = prom.config()
    config = {
        "window": "10s",
        "step": "1s",
        "prometheus": {"address": prom.url, "authentication": auth["authentication"]},
        "metrics": [
            {
                "name": "errors",
                "critical": True,
                "direction": "increase",
                # Before the first scrape there are no points, so none count as 0.
                "prometheus": {
                    "query": 'sum(changeover_requests_total{revision="{{revision}}",code="5xx"})'
                },
            },
            {
                "name": "requests",
                "prometheus": 'sum(changeover_requests_total{revision="{{revision}}"})',
            },
        ],
    }
    result = await mann_whitney.MannWhitneyProvider().measure(config, args={}, context=CTX)
    errors = result.value["metrics"]["errors"]
    assert errors["classification"] == "High" and errors["critical"]
    assert errors["canary"]["max"] == router_count(prom, 2, "5xx")
    assert errors["baseline"]["max"] == 0 and errors["canary"]["count"] >= 3
    assert result.value["metrics"]["requests"]["classification"] == "Pass"
    assert result.phase == "Failed"


async def test_ab_verdict_counts_each_revision_in_prometheus(prom: Prom) -> None:
    """Conversions = 2xx answers, trials = all answers, per revision: the canary failed
    /boom, so the stable (control) wins and the measurement fails."""
    config = {
        "method": "fixedHorizon",
        "minSamples": 20,
        "prometheus": {"address": prom.url, "authentication": prom.config()["authentication"]},
        "conversions": {
            "prometheus": 'sum(changeover_requests_total{revision="{{revision}}",code="2xx"})'
        },
        "trials": {"prometheus": 'sum(changeover_requests_total{revision="{{revision}}"})'},
    }
    result = await ab_significance.ABSignificanceProvider().measure(config, args={}, context=CTX)
    v = result.value
    assert v["control"]["conversions"] == router_count(prom, 1, "2xx")
    assert v["treatment"]["trials"] == router_count(prom, 2, "2xx") + router_count(prom, 2, "5xx")
    assert v["winner"] == "control" and result.phase == "Failed"


async def test_argo_result_handling_template_against_real_prometheus(
    prom: Prom, tmp_path: Path
) -> None:
    """tests/fixtures/argo_templates/result-handling.yaml (the NaN, Inf, empty vector,
    default() and asFloat conditions Argo documents) run through the analysis runner: a query
    that matches nothing gives [] and, through scalar(), NaN, judged as Argo's docs say."""
    answer = {"stats": {"failureRatio": None, "passRatio": "0.93"}}
    web = await HttpServer(answer=lambda _req: (200, answer)).start()
    runs = TemplateRunner(tmp_path / "changeover.db")
    try:
        (doc,) = argo_templates("result-handling.yaml")
        args = {
            "prom": prom.url,
            "expr": 'changeover_requests_total{rollout="absent"}',
            "prom-user": USER,
            "prom-pass": PASSWORD,
            "verdict-url": web.url("/measure"),
        }
        runs.start("r", runs.put(doc), args)
        for _ in range(6):  # one measurement per metric, each lands on its own
            if runs.seen("r").phase not in ("Pending", "Running"):
                break
            await runs.measure()
        assert runs.metrics("r") == {
            "nan-passes": "Successful",  # isNaN(result) || result > 0.9
            "inf-check": "Successful",  # isInf(NaN) is false
            "nothing-passes": "Successful",  # len(result) == 0 || ...
            "nothing-fails": "Failed",  # len(result) >= 1 && ...
            "null-as-zero": "Successful",  # default(nil, 0) <= 0.02
            "text-to-number": "Successful",  # asFloat("0.93") > 0.8
        }
        assert runs.seen("r").phase == "Failed"
    finally:
        await runs.close()
        await web.stop()
