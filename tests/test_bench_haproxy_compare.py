"""bench.haproxy_dataplane compare's arithmetic and writer (bench/haproxy_compare.py): no
wrk, no processes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

# bench/ is not an installed package: importable from the repo's root (appended, as in
# test_bench_compare.py: nothing installed is shadowed).
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.append(ROOT)

from bench import common  # noqa: E402
from bench import haproxy_compare as hd  # noqa: E402


def s(rps: float, cpu: float = 20.0, other: float = 0.0) -> hd.Sample:
    return hd.Sample(rps, 0.5, 2.0, 0, cpu, 5.0, 15.0, 0.9, 0.0, 1.0, 1.0, other=other)


def test_sample_per_request_from_proc_figures() -> None:
    res = common.WrkResult(rps=1000.0, p50_ms=0.5, p99_ms=2.0, requests=2000, errors=0)
    before = hd.Usage(ns=1_000_000_000, user=1.0, system=2.0, vcsw=10, nvcsw=5)
    after = hd.Usage(ns=1_040_000_000, user=1.01, system=2.03, vcsw=30, nvcsw=7)
    ctl = (hd.Usage(0, 0, 0, 0, 0), hd.Usage(2_000_000, 0, 0, 0, 0))
    got = hd.sample(res, 2.0, before, after, ctl, other=0.05)
    assert got.cpu_us == pytest.approx(20.0)  # 40 ms over 2,000 requests
    assert (got.user_us, got.sys_us) == (pytest.approx(5.0), pytest.approx(15.0))
    assert got.busy == pytest.approx(0.02)  # 40 ms over 2 s
    assert got.ctl_us == pytest.approx(1.0)
    assert (got.waits_per_k, got.preempted_per_k) == (pytest.approx(10.0), pytest.approx(1.0))
    assert got.other == 0.05


def test_median_interval_by_order_statistics() -> None:
    lo, hi, cover = hd.median_interval([float(x) for x in range(40)])
    assert (lo, hi) == (13.0, 26.0) and cover == pytest.approx(0.9615, abs=1e-3)
    assert math.isnan(hd.median_interval([1.0, 2.0, 3.0, 4.0, 5.0])[0])  # n=5: no 95%


def test_ratios_pair_rounds_and_quiet_rounds() -> None:
    hand = [s(1000), s(1000, other=0.5), s(800)]
    co = [s(950, cpu=21), s(1100), s(800, other=0.2)]
    assert hd._ratios(co, hand, "rps") == pytest.approx([0.95, 1.1, 1.0])
    assert hd._ratios(co, hand, "cpu_us") == pytest.approx([1.05, 1.0, 1.0])
    assert hd.quiet(co, hand) == {0}
    with pytest.raises(ValueError):
        hd._ratios(co, hand[:2], "rps")


def test_verdicts() -> None:
    hand = [s(1000) for _ in range(10)]
    ahead = [s(1000 * (0.97 + i / 1000), cpu=20.5) for i in range(10)]
    behind = [s(1000 * (0.90 + i / 1000), cpu=22.5) for i in range(10)]
    (line,) = hd.verdicts([32], {("hand", 32): hand, ("changeover", 32): ahead})
    assert line.count("**within 5%**") == 2
    (line,) = hd.verdicts([32], {("hand", 32): hand, ("changeover", 32): behind})
    assert line.count("**more than 5% behind**") == 2


def test_write_subsection_keeps_the_earlier_notes_and_other_sections(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Benchmark results\n\n## Router\n\n### Throughput\n\nold table\n\n"
        f"{hd.SUBSECTION}\n\nold figures\n\n#### Earlier runs\n\n- history\n\n"
        "### Soak\n\nsoak\n\n## Compare\n\ncompare\n"
    )
    hd.write_subsection(f"{hd.SUBSECTION}\n\nnew figures\n", results)
    text = results.read_text()
    assert "old figures" not in text and "new figures" in text
    assert text.index("new figures") < text.index("- history") < text.index("### Soak")
    assert "old table" in text and "soak" in text and "compare" in text
