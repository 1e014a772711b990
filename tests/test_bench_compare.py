"""bench.compare's arithmetic (no wrk, no processes): CPU per request from /proc figures,
the paired new/old ratios by round, and the tables it prints."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

# bench/ is not an installed package: importable from the repo's root, which pytest's
# entry point does not put on sys.path (appended: nothing installed is shadowed).
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.append(ROOT)

from bench import common, compare  # noqa: E402


def s(rps: float, user: float = 20.0, system: float = 10.0, p99: float = 1.0) -> compare.Sample:
    return compare.Sample(rps, user, system, p99, 0)


def test_cpu_per_request_is_split_into_user_and_system() -> None:
    res = common.WrkResult(rps=1000.0, p50_ms=0.5, p99_ms=2.0, requests=5000, errors=3)
    got = compare.sample(res, before=(1.0, 2.0), after=(1.1, 2.05))
    assert got.user_us == pytest.approx(20.0)  # 0.1 s over 5,000 requests
    assert got.sys_us == pytest.approx(10.0)
    assert (got.rps, got.p99_ms, got.errors) == (1000.0, 2.0, 3)
    empty = compare.sample(common.WrkResult(0.0, 0.0, 0.0, 0, 9), (1.0, 1.0), (1.0, 1.0))
    assert math.isnan(empty.user_us) and math.isnan(empty.sys_us)


def test_ratios_pair_the_same_round() -> None:
    old = [s(1000), s(800), s(1000)]
    new = [s(1100, user=15, system=9), s(900), s(950)]
    p = compare.paired(old, new)
    assert p.rps == pytest.approx([1.1, 1.125, 0.95])
    assert p.cpu == pytest.approx([0.8, 1.0, 1.0])
    assert p.ahead == 2
    with pytest.raises(ValueError):  # a missing round is a bug, not a shorter pairing
        compare.paired(old, new[:2])


def test_old_and_new_run_back_to_back_each_first_in_turn() -> None:
    assert compare.order(0) == ("old", "new", "nginx")
    assert compare.order(1) == ("new", "old", "nginx")
    assert compare.order(2) == compare.order(0)


def test_tables() -> None:
    results = {
        ("old", 32): [s(1000), s(800)],
        ("new", 32): [s(1100), s(900)],
        ("nginx", 32): [s(2000, p99=0.5), s(2200, p99=0.7)],
    }
    lines = compare.tables([32], results)
    assert "| 32 | old | 900 (800–1,000) | 0.43 | 20.0 | 10.0 | 1.00 | 0 |" in lines
    assert "| 32 | new | 1,000 (900–1,100) | 0.48 | 20.0 | 10.0 | 1.00 | 0 |" in lines
    assert "| 32 | nginx | 2,100 (2,000–2,200) | 1.00 | 20.0 | 10.0 | 0.60 | 0 |" in lines
    assert "| 32 | 1.100, 1.125 | 1.113 (+11.3%) | 2 of 2 | 1.000 |" in lines
