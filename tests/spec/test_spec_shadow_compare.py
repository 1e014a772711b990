"""The ``compare`` block of a mirror: checked when the spec is read and against the router."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_spec_validate import lint, no_router, rollout

from changeover.traffic import base

C = base.Capability


@pytest.fixture
def routers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(base, "_REGISTRY", {})
    base.register("builtin", frozenset(C), no_router)
    base.register("haproxy", frozenset({C.WEIGHTS, C.MIRROR}), no_router)  # mirrors, no compare
    yield


def shadow(compare: str) -> str:
    return f"strategy:\n  shadow:\n    percentage: 50\n    compare: {compare}\n"


def test_a_router_that_mirrors_but_cannot_compare_is_named(routers: None, tmp_path: Path) -> None:
    doc = rollout(
        "m", port=8080, strategy=shadow("{comparator: json}"), extra="traffic: {haproxy: {}}\n"
    )
    assert lint(tmp_path, doc) == [
        "r.yaml: spec.strategy.shadow.compare: compare needs a router with shadow answers "
        "compared: builtin (this rollout uses 'haproxy')"
    ]
    assert lint(tmp_path, rollout("m", port=8080, strategy=shadow("{comparator: json}"))) == []


@pytest.mark.parametrize(
    ("compare", "expected"),
    [
        ("{comparator: 'os.system(1)'}", "expected exact, json, text, a module:function path"),
        ("{comparator: json, ignore: [id]}", "expected JSON pointers such as /id, got 'id'"),
        ("{comparator: text, threshold: 1.5}", "expected a number from 0 to 1, got 1.5"),
        ("{maxBodyBytes: 0}", "expected an integer from 1 to 16777216, got 0"),
        ("{latencyThreshold: soon}", "latencyThreshold"),
    ],
)
def test_bad_compare_blocks_are_named(
    routers: None, tmp_path: Path, compare: str, expected: str
) -> None:
    problems = lint(tmp_path, rollout("m", port=8080, strategy=shadow(compare)))
    assert len(problems) == 1 and "spec.strategy.shadow.compare" in problems[0], problems
    assert expected in problems[0], problems
