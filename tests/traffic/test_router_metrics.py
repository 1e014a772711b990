"""Router metrics: the Prometheus text parses and counts what happened."""

from __future__ import annotations

import re

import httpx
from router_helpers import RouterFactory, UpstreamFactory, ep

from changeover.traffic.builtin import metrics, metrics_text

_SAMPLE = re.compile(r'^([a-z_]+)(?:\{((?:[a-z]+="[^"]*",?)*)\})? (\S+)$')


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A strict little reader of the text format: every line is a comment or a sample."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-z]+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def sample(
    parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return parsed[(name, frozenset(labels.items()))]


async def test_metrics_count_requests_by_revision_and_class(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    v1, v2 = await upstream("v1"), await upstream("v2")
    router = await make_router()
    await router.set_backends(1, [ep(v1)])
    await router.set_backends(2, [ep(v2)])
    await router.set_weight({1: 50, 2: 50})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
        for _ in range(10):
            await client.get("/")
        for _ in range(4):
            await client.get("/status/500")
        await client.get("/status/404")
    parsed = parse(metrics_text.render(router.metrics_registry))

    def web(name: str, **labels: str) -> float:
        return sample(parsed, name, rollout="web", **labels)

    total = {
        rev: sum(
            web("changeover_requests_total", revision=rev, code=c) for c in metrics.CODE_CLASSES
        )
        for rev in ("1", "2")
    }
    assert total == {"1": 8, "2": 7}
    two = sum(web("changeover_requests_total", revision=r, code="2xx") for r in "12")
    five = sum(web("changeover_requests_total", revision=r, code="5xx") for r in "12")
    assert (two, five) == (10, 4)
    for rev in ("1", "2"):
        count = web("changeover_request_duration_seconds_count", revision=rev)
        inf = web("changeover_request_duration_seconds_bucket", revision=rev, le="+Inf")
        assert count == inf == total[rev]
        assert web("changeover_requests_in_flight", revision=rev) == 0
        assert web("changeover_time_to_first_byte_seconds_count", revision=rev) == total[rev]
    snap = router.metrics_registry.snapshot()["web"]["revisions"]
    assert snap["1"]["requests"]["2xx"] + snap["2"]["requests"]["2xx"] == 10


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    h = metrics.Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 2.0):
        h.observe(v)
    assert h.cumulative() == [2, 3, 4]
    assert h.snapshot()["buckets"] == {"0.1": 2, "1.0": 3, "+Inf": 4}


def test_label_values_are_escaped() -> None:
    reg = metrics.Registry()
    reg.rollout('we"ird').revision(1).record(200, 0.01)
    assert 'rollout="we\\"ird"' in metrics_text.render(reg)


def test_variant_series_are_escaped_and_bounded() -> None:
    reg = metrics.Registry()
    rev = reg.rollout("web").revision(1)
    for i in range(40):
        found = metrics.variant_metrics(rev.variants, 'fl"ag', f'v{i}"\n}}')
        assert found is not None
        found.record(500 if i % 2 else 200, 0.01)
    text = metrics_text.render(reg)
    lines = [x for x in text.splitlines() if x.startswith("changeover_variant_requests_total{")]
    # 15 named variants and "other", five status classes each
    assert len(lines) == metrics.MAX_VARIANTS * 5
    labels = 'rollout="web",revision="1",flag="fl\\"ag"'
    escaped = 'variant="v1\\"\\n}"'
    assert f'changeover_variant_requests_total{{{labels},{escaped},code="5xx"}} 1' in text
    # v15..v39 count as "other": 13 of them odd, so 5xx
    assert f'changeover_variant_requests_total{{{labels},variant="other",code="5xx"}} 13' in text
