"""Per-request distributions: the router's sketch read back within 1%, over a window, as
quantiles for conditions and as per-request samples for the mannWhitney judge."""

from __future__ import annotations

import math

import numpy as np
import pytest

from changeover.analysis import distributions, sampler
from changeover.analysis.judges import classifier, scoring
from changeover.traffic.builtin import Registry, sketch


def test_sketch_quantiles_are_within_one_percent_of_the_data() -> None:
    rng = np.random.default_rng(7)
    data = rng.lognormal(np.log(0.2), 0.6, 20000)
    s = sketch.Sketch()
    for v in data:
        s.observe(float(v))
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        # The rank convention (q·(n-1), lower) of the sketch, on the data itself.
        exact = float(np.sort(data)[int(q * (len(data) - 1))])
        got = distributions.quantile(s.bins, q, sketch.GAMMA)
        assert abs(got - exact) <= 0.01 * exact, q
    assert len(s.bins) < 600


def test_sketch_clamps_and_keeps_its_key_range() -> None:
    s = sketch.Sketch()
    for v in (0.0, -1.0, 1e-12, math.inf, 1e30, math.nan):
        s.observe(v)
    assert set(s.bins) <= {sketch.MIN_KEY, sketch.MAX_KEY}
    s.set_bins([[sketch.MAX_KEY + 5, 3], [0, -2], [1, 4]])
    assert s.bins == {1: 4}


def test_samples_repeat_small_windows_and_thin_big_ones_evenly() -> None:
    assert distributions.samples({}, 1.02) == []
    bins = {0: 2, 10: 1}
    one, ten = 2 / 2.02, 1.02**10 * 2 / 2.02
    assert distributions.samples(bins, 1.02) == [one, one, pytest.approx(ten)]
    big = {k: 1000 for k in range(100)}  # 100,000 requests
    thin = distributions.samples(big, 1.02, limit=1000)
    assert len(thin) == 1000 and thin == sorted(thin)
    assert np.median(thin) == pytest.approx(distributions.quantile(big, 0.5, 1.02), rel=0.011)


def record(registry: Registry, rev: int, latencies: np.ndarray) -> None:
    rm = registry.rollout("web").revision(rev)
    for v in latencies:
        rm.record(200, float(v))


def test_window_quantiles_use_the_sketch_not_the_buckets() -> None:
    # p99 of 0.11-0.12 s sits inside the 0.1-0.25 bucket: interpolation says ~0.24.
    registry = Registry()
    record(registry, 1, np.linspace(0.110, 0.120, 1000))
    smp = sampler.Sampler(registry)
    smp.sample(0.0)
    stats = smp.window("web", 1, 60, 0.5)
    assert stats.value("latency-p99") == pytest.approx(0.1199, rel=0.01)
    assert stats.value("latency-p50") == pytest.approx(0.115, rel=0.01)


def test_window_and_series_count_only_their_seconds() -> None:
    registry = Registry()
    smp = sampler.Sampler(registry)
    record(registry, 1, np.full(100, 0.010))
    smp.sample(1.0)
    record(registry, 1, np.full(100, 0.050))
    smp.sample(2.0)
    record(registry, 1, np.full(50, 0.200))  # not sampled yet: live
    recent = smp.window("web", 1, 1.5, 2.5)
    assert recent.value("latency-p50") == pytest.approx(0.05, rel=0.01)
    assert recent.value("latency-p99") == pytest.approx(0.2, rel=0.01)
    samples = smp.series("web", 1, "latency", 0.5)
    assert len(samples) == 100 and all(s == pytest.approx(0.05, rel=0.01) for s in samples)
    assert len(smp.series("web", 1, "latency", 60)) == 200
    with pytest.raises(KeyError, match="latency"):
        smp.series("web", 1, "nope", 60)


def test_the_judge_on_per_request_samples_finds_a_ten_percent_regression() -> None:
    rng = np.random.default_rng(11)
    registry = Registry()
    smp = sampler.Sampler(registry)
    record(registry, 1, rng.lognormal(np.log(0.2), 0.5, 6000))
    record(registry, 2, rng.lognormal(np.log(0.22), 0.5, 6000))
    record(registry, 3, rng.lognormal(np.log(0.2), 0.5, 6000))
    smp.sample(1.0)
    spec = classifier.MetricSpec(name="latency", direction=classifier.Direction.INCREASE)
    stable = smp.series("web", 1, "latency", 60)
    assert len(stable) == distributions.MAX_SAMPLES

    def phase(canary: int) -> str:
        got = smp.series("web", canary, "latency", 60)
        return scoring.judge([classifier.classify(spec, canary=got, baseline=stable)]).phase

    assert phase(2) == "Failed"
    assert phase(3) == "Successful"


def test_status_views_leave_the_sketches_out() -> None:
    registry = Registry()
    record(registry, 1, np.full(10, 0.01))
    assert "sketch" not in registry.rollout("web").snapshot()["revisions"]["1"]["latency"]
    assert "sketch" in registry.snapshot()["web"]["revisions"]["1"]["latency"]
