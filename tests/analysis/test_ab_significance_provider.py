"""The ``abSignificance`` provider: counts per revision from the builtin router's series,
the verdict as the measurement's phase (Undecided while still collecting)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from changeover.analysis.judges import ab_significance as ab
from changeover.analysis.providers import base

STABLE, CANARY = 1, 2


def context(per_second: dict[int, tuple[float, float]], seconds: int) -> base.MeasureContext:
    """Each revision serves ``rate`` requests a second with success share ``ok``; the
    first second had no traffic (NaN ratios, as the sampler reports)."""

    def series(revision: int, metric: str, window: float) -> list[float]:
        rate, ok = per_second[revision]
        value = {"request-rate": rate, "success-rate": ok, "error-rate": 1 - ok}[metric]
        quiet = 0.0 if metric == "request-rate" else math.nan
        return ([quiet] + [value] * (seconds - 1))[-int(window) :]

    return base.MeasureContext(
        rollout="shop",
        namespace="default",
        stable_revision=STABLE,
        canary_revision=CANARY,
        now=0.0,
        series=series,
    )


CONFIG: dict[str, Any] = {
    "method": "fixedHorizon",
    "alpha": 0.05,
    "minSamples": 2000,
    "window": "10m",
    "conversions": {"builtin": "successes"},
    "trials": {"builtin": "requests"},
}


async def measure(config: dict[str, Any], ctx: base.MeasureContext) -> base.ProviderResult:
    return await base.create("abSignificance").measure(config, args={}, context=ctx)


async def test_collecting_is_undecided() -> None:
    result = await measure(CONFIG, context({STABLE: (10, 0.9), CANARY: (10, 0.95)}, 60))
    assert result.phase == "Undecided" and result.value["decided"] is False
    assert result.value["control"]["trials"] == 590.0
    assert result.message == "collecting: 590 of 2000 per variant"


async def test_a_better_canary_wins() -> None:
    result = await measure(CONFIG, context({STABLE: (10, 0.90), CANARY: (10, 0.95)}, 301))
    v = result.value
    assert result.phase == "Successful"
    assert v["winner"] == "treatment" and v["winnerRevision"] == CANARY
    assert v["control"]["conversions"] == pytest.approx(2700.0)
    assert v["lift"] == pytest.approx(0.95 / 0.90 - 1)
    assert v["interval"][0] > 0
    json.dumps(v, allow_nan=False)


async def test_a_worse_canary_loses_and_errors_can_be_the_metric() -> None:
    ctx = context({STABLE: (10, 0.95), CANARY: (10, 0.90)}, 301)
    assert (await measure(CONFIG, ctx)).phase == "Failed"
    errors = {**CONFIG, "conversions": {"builtin": "errors"}, "higherIsBetter": False}
    result = await measure(errors, ctx)
    assert result.phase == "Failed" and result.value["winner"] == "control"


async def test_a_tie_at_the_horizon_takes_on_no_difference() -> None:
    ctx = context({STABLE: (10, 0.90), CANARY: (10, 0.90)}, 301)
    assert (await measure(CONFIG, ctx)).phase == "Inconclusive"
    assert (await measure({**CONFIG, "onNoDifference": "Successful"}, ctx)).phase == "Successful"


async def test_registered_under_both_names() -> None:
    assert isinstance(base.create("abTest"), ab.ABSignificanceProvider)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"method": "bayesian"}, "not sequential or fixedHorizon"),
        ({"alpha": 2}, "alpha: expected a number between 0 and 1"),
        ({"trials": None}, "trials: expected {builtin: successes}"),
        ({"conversions": {"builtin": "p99"}}, "conversions.builtin: expected one of"),
        ({"onNoDifference": "Maybe"}, "onNoDifference"),
    ],
)
def test_config_problems(patch: dict[str, Any], message: str) -> None:
    found = ab.problems({**CONFIG, **patch})
    assert len(found) == 1 and message in found[0]


def test_prometheus_counts_are_instant_queries() -> None:
    _, conv, trials = ab.parse_config(
        {
            "prometheus": {"address": "http://127.0.0.1:9090"},
            "conversions": {"prometheus": 'sum(orders_total{revision="{{revision}}"})'},
            "trials": {"prometheus": {"query": 'sum(visits_total{revision="{{revision}}"})'}},
        }
    )
    assert conv.prometheus is not None and "rangeQuery" not in conv.prometheus
    assert trials.prometheus is not None and trials.prometheus["address"].endswith(":9090")


async def test_without_revisions_it_is_an_error() -> None:
    ctx = base.MeasureContext(
        rollout="shop", namespace="default", stable_revision=1, canary_revision=None, now=0.0
    )
    with pytest.raises(base.ProviderError, match="needs a control"):
        await measure(CONFIG, ctx)
