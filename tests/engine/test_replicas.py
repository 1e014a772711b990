"""Replica and weight arithmetic, mirroring the worked examples in engine/replicas.py."""

from __future__ import annotations

import doctest

import pytest

from changeover.engine import commands, replicas
from changeover.engine.replicas import Pool
from changeover.engine.strategies import canary
from changeover.spec import models


@pytest.mark.parametrize(
    ("surge", "unavailable", "total", "expected"),
    [
        ("25%", "25%", 10, (3, 2)),  # surge rounds up (2.5 → 3), unavailable down (2.5 → 2)
        (0, 0, 4, (0, 1)),  # both zero: unavailable 1 so the rollout can move
        ("0%", "10%", 5, (0, 1)),  # 10% of 5 = 0.5 → 0, then both zero → 1
        (1, 5, 3, (1, 3)),  # unavailable capped at replicas
        ("50%", 0, 3, (2, 0)),
        ("100%", "100%", 4, (4, 4)),
        (2, "30%", 10, (2, 3)),
    ],
)
def test_surge_and_unavailable(
    surge: int | str, unavailable: int | str, total: int, expected: tuple[int, int]
) -> None:
    assert replicas.surge_and_unavailable(surge, unavailable, total) == expected


@pytest.mark.parametrize(
    ("total", "surge", "new", "all_", "expected"),
    [
        (10, 3, 0, 10, 3),
        (10, 3, 3, 13, 0),  # at replicas + surge
        (4, 2, 3, 4, 1),  # never above replicas for new
        (3, 0, 0, 0, 3),  # first revision: nothing else running
        (3, 0, 0, 3, 0),  # no surge: wait for old to go first
        (4, 1, 4, 5, 0),  # new complete
    ],
)
def test_rolling_scale_up(total: int, surge: int, new: int, all_: int, expected: int) -> None:
    got = replicas.rolling_scale_up(
        replicas=total, surge=surge, new_replicas=new, total_replicas=all_
    )
    assert got == expected


@pytest.mark.parametrize(
    ("total", "unavailable", "new", "old", "expected"),
    [
        (
            4,
            1,
            Pool(revision=2, replicas=1, available=0),
            [Pool(revision=1, replicas=4, available=4)],
            {1: 3},
        ),
        (
            4,
            0,
            Pool(revision=2, replicas=1, available=0),
            [Pool(revision=1, replicas=4, available=4)],
            {},
        ),
        (
            4,
            0,
            Pool(revision=2, replicas=1, available=1),
            [Pool(revision=1, replicas=4, available=4)],
            {1: 3},
        ),
        (
            2,
            0,
            Pool(revision=3, replicas=2, available=2),
            [Pool(revision=1, replicas=1, available=0), Pool(revision=2, replicas=1, available=1)],
            {1: 0, 2: 0},
        ),
        (
            3,
            1,
            Pool(revision=2, replicas=3, available=3),
            [Pool(revision=1, replicas=0, available=0)],
            {},
        ),
        # a broken old replica goes first (not an available one)
        (
            3,
            0,
            Pool(revision=2, replicas=1, available=1),
            [Pool(revision=1, replicas=3, available=2)],
            {1: 2},
        ),
    ],
)
def test_rolling_scale_down(
    total: int, unavailable: int, new: Pool, old: list[Pool], expected: dict[int, int]
) -> None:
    got = replicas.rolling_scale_down(replicas=total, unavailable=unavailable, new=new, old=old)
    assert got == expected


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [(10, 15, 2), (5, 20, 1), (3, 50, 2), (4, 0, 0), (4, 100, 4), (1, 1, 1), (0, 50, 0)],
)
def test_canary_replicas_round_up(total: int, weight: int, expected: int) -> None:
    assert replicas.canary_replicas(total, weight) == expected


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        (None, 2),
        (models.SetCanaryScale(replicas=5), 5),
        (models.SetCanaryScale(weight=50), 5),
        (models.SetCanaryScale(match_traffic_weight=True), 2),
        (models.SetCanaryScale(replicas=0), 0),
    ],
)
def test_canary_scale(scale: models.SetCanaryScale | None, expected: int) -> None:
    assert replicas.canary_scale(10, 20, scale) == expected


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        ({1: 3, 2: 1}, {1: 75, 2: 25}),
        ({1: 2, 2: 1}, {1: 67, 2: 33}),
        ({1: 1, 2: 1, 3: 1}, {1: 33, 2: 33, 3: 34}),
        ({1: 0, 2: 2}, {2: 100}),
        ({1: 0}, {}),
        ({1: 1, 2: 2}, {1: 33, 2: 67}),
    ],
)
def test_ratio_weights(available: dict[int, int], expected: dict[int, int]) -> None:
    got = replicas.ratio_weights(available)
    assert got == expected
    assert not got or sum(got.values()) == 100


@pytest.mark.parametrize("module", [replicas, canary, commands])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)  # type: ignore[arg-type]
    assert result.failed == 0
    assert result.attempted > 0
