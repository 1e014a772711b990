"""The ``mannWhitney`` provider: given the builtin router's per-second series for the
stable and canary revisions, when the runner measures, then the verdict is the phase."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from changeover.analysis.judges import mann_whitney
from changeover.analysis.providers import base

STABLE, CANARY = 3, 4


def series_from(data: dict[tuple[int, str], list[float]]) -> base.SeriesFn:
    def series(revision: int, metric: str, window: float) -> list[float]:
        return data[(revision, metric)][-int(window) :]

    return series


def context(data: dict[tuple[int, str], list[float]] | None) -> base.MeasureContext:
    return base.MeasureContext(
        rollout="web",
        namespace="default",
        stable_revision=STABLE,
        canary_revision=CANARY,
        now=1_000_000.0,
        series=series_from(data) if data is not None else None,
    )


def traffic(
    *, latency_factor: float = 1.0, error_rate: float = 0.01, seed: int = 0
) -> dict[tuple[int, str], list[float]]:
    """120 seconds of per-second p99 latency and error rate for both revisions."""
    rng = np.random.default_rng(seed)
    out: dict[tuple[int, str], list[float]] = {}
    for rev, factor, errors in ((STABLE, 1.0, 0.01), (CANARY, latency_factor, error_rate)):
        out[(rev, "latency-p99")] = list(rng.lognormal(np.log(0.2 * factor), 0.15, 120))
        out[(rev, "error-rate")] = list(rng.binomial(50, errors, 120) / 50)
    return out


CONFIG: dict[str, Any] = {
    "window": "2m",
    "thresholds": {"pass": 90, "marginal": 50},
    "groupWeights": {"errors": 50, "latency": 50},
    "metrics": [
        {
            "name": "errors",
            "builtin": "error-rate",
            "group": "errors",
            "direction": "increase",
            "critical": True,
            "nanStrategy": "replace",
            "effectSize": {"criticalIncrease": 2.0},
        },
        {"name": "p99", "builtin": "latency-p99", "group": "latency", "direction": "increase"},
    ],
}


async def measure(config: dict[str, Any], ctx: base.MeasureContext) -> base.ProviderResult:
    return await base.create("mannWhitney").measure(config, args={}, context=ctx)


async def test_a_healthy_canary_is_successful() -> None:
    result = await measure(CONFIG, context(traffic(seed=1)))
    assert result.phase == "Successful"
    assert result.value["score"] == 100.0
    assert result.value["metrics"]["p99"]["classification"] == "Pass"
    assert result.message == "score 100.0: every metric passed"
    json.dumps(result.value, allow_nan=False)  # what the store and the API will carry


async def test_a_slow_canary_fails_the_latency_group() -> None:
    result = await measure(CONFIG, context(traffic(latency_factor=1.3, seed=2)))
    p99 = result.value["metrics"]["p99"]
    assert p99["classification"] == "High"
    assert p99["effectSize"] == pytest.approx(1.3, abs=0.05)
    assert p99["interval"][0] > 0 and p99["canary"]["count"] == 120
    assert result.value["score"] == 50.0 and result.phase == "Inconclusive"
    assert result.message == "score 50.0: p99 High"


async def test_an_erroring_canary_fails_critically() -> None:
    result = await measure(CONFIG, context(traffic(error_rate=0.2, seed=3)))
    assert result.phase == "Failed" and result.value["score"] == 0.0
    assert result.value["metrics"]["errors"]["critical"] is True
    assert result.message == "critical metric failed: errors High"


async def test_revisions_can_be_named_in_the_config() -> None:
    data = traffic(latency_factor=1.5, seed=4)
    swapped = {**CONFIG, "baselineRevision": str(CANARY), "canaryRevision": STABLE}
    result = await measure(swapped, context(data))
    assert result.value["metrics"]["p99"]["classification"] == "Pass"  # faster: increase-only


async def test_without_builtin_series_it_is_an_error() -> None:
    with pytest.raises(base.ProviderError, match="no builtin router metrics"):
        await measure(CONFIG, context(None))


async def test_without_a_canary_it_is_an_error() -> None:
    ctx = base.MeasureContext(
        rollout="web", namespace="default", stable_revision=1, canary_revision=None, now=0.0
    )
    with pytest.raises(base.ProviderError, match="needs a baseline"):
        await measure(CONFIG, ctx)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"metrics": []}, "metrics: expected a list"),
        ({"window": "soon"}, "window: expected a duration"),
        ({"thresholds": {"pass": 50, "marginal": 80}}, "marginal <= pass"),
        (
            {"metrics": [{"name": "x", "builtin": "error-rate", "direction": "up"}]},
            "metrics[0].direction: expected increase | decrease | either, got 'up'",
        ),
        ({"metrics": [{"name": "x"}]}, "metrics[0]: expected exactly one of builtin"),
        (
            {"metrics": [{"name": "x", "prometheus": {"query": "up"}}]},
            "metrics[0].prometheus.address: expected an http(s) URL",
        ),
        (
            {"metrics": [{"name": "x", "builtin": "a"}, {"name": "x", "builtin": "b"}]},
            "names must be unique",
        ),
    ],
)
def test_config_problems_name_the_field(patch: dict[str, Any], message: str) -> None:
    found = mann_whitney.problems({**CONFIG, **patch})
    assert len(found) == 1 and message in found[0]


async def test_bad_config_is_a_provider_error() -> None:
    with pytest.raises(base.ProviderError, match=r"provider\.mannWhitney\.metrics"):
        await measure({"metrics": "all"}, context(traffic()))


def test_prometheus_sources_inherit_defaults_and_default_to_the_window() -> None:
    cfg = mann_whitney.parse_config(
        {
            "window": "90s",
            "step": "5s",
            "prometheus": {"address": "http://127.0.0.1:9090", "timeout": 3},
            "metrics": [{"name": "p99", "prometheus": 'q{revision="{{revision}}"}'}],
        }
    )
    block = cfg.metrics[0].source.prometheus
    assert block is not None
    assert block["address"] == "http://127.0.0.1:9090" and block["timeout"] == 3
    assert block["rangeQuery"] == {"start": "now() - 90s", "end": "now()", "step": "5s"}


async def test_a_quiet_canary_is_an_error_not_a_failure() -> None:
    """No requests yet: every per-second sample is NaN, removed, so every metric is
    Nodata; the runner gets an Error (retried) instead of Kayenta's NODATA failure."""
    data = traffic(seed=5)
    for metric in ("latency-p99", "error-rate"):
        data[(CANARY, metric)] = [math.nan] * 120
    quiet = {**CONFIG, "metrics": [{**m, "nanStrategy": "remove"} for m in CONFIG["metrics"]]}
    with pytest.raises(base.ProviderError, match="no samples yet: errors: no canary data"):
        await measure(quiet, context(data))
