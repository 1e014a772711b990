"""The strategy decision tree: every leaf, the flags, the questionnaire and its spec snippets."""

from __future__ import annotations

import inspect
import io
import json

import pytest
import yaml
from rich.console import Console

from changeover import recommend
from changeover.recommend import Answers, Strategy
from changeover.spec import models

# Every leaf of the tree, with the answers that reach it.
LEAVES = [
    (Answers(side_by_side=False), Strategy.RECREATE),
    (Answers(zero_exposure=True), Strategy.SHADOW),
    (Answers(downtime_ok=True, high_risk=True), Strategy.CANARY),
    (Answers(downtime_ok=True, high_risk=False), Strategy.ROLLING_UPDATE),
    (Answers(critical=True), Strategy.BLUE_GREEN),
    (Answers(critical=False, compare_variants=True), Strategy.AB_TEST),
    (Answers(critical=False, compare_variants=False), Strategy.BLUE_GREEN),
]


@pytest.mark.parametrize(("answers", "strategy"), LEAVES)
def test_every_leaf(answers: Answers, strategy: Strategy) -> None:
    rec = recommend.recommend(answers)
    assert rec.strategy == strategy
    assert rec.answers == answers
    assert rec.reasons and all(r.endswith(".") for r in rec.reasons)
    assert set(rec.tradeoffs) == set(recommend.TRADEOFF_KEYS)
    assert f"    {strategy}:" in rec.example_yaml


def test_cannot_overlap_beats_everything_else() -> None:
    everything = Answers(
        side_by_side=False,
        zero_exposure=True,
        downtime_ok=True,
        high_risk=True,
        critical=True,
        compare_variants=True,
    )
    rec = recommend.recommend(everything)
    assert rec.strategy == Strategy.RECREATE
    assert len(rec.reasons) == 1 and "side by side" in rec.reasons[0]


def test_zero_exposure_beats_the_downtime_tree() -> None:
    assert recommend.recommend(Answers(zero_exposure=True, downtime_ok=True)).strategy == (
        Strategy.SHADOW
    )


def test_answers_off_the_path_do_not_matter() -> None:
    # Criticality is only asked when downtime is not acceptable.
    a = recommend.recommend(Answers(downtime_ok=True, high_risk=True, critical=True))
    b = recommend.recommend(Answers(downtime_ok=True, high_risk=True, critical=False))
    assert a.strategy == b.strategy == Strategy.CANARY
    assert a.reasons == b.reasons


def test_reasons_follow_the_path() -> None:
    rec = recommend.recommend(Answers(downtime_ok=True, high_risk=True))
    assert rec.reasons[0] == "The old and new versions can run side by side."
    assert rec.reasons[1] == "Some downtime or reduced capacity is acceptable."
    assert "high-risk" in rec.reasons[2]


# --- flags ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "strategy"),
    [
        ({}, Strategy.BLUE_GREEN),
        ({"no_side_by_side": True}, Strategy.RECREATE),
        ({"zero_exposure": True}, Strategy.SHADOW),
        ({"downtime_ok": True}, Strategy.ROLLING_UPDATE),
        ({"downtime_ok": True, "high_risk": True}, Strategy.CANARY),
        ({"critical": True}, Strategy.BLUE_GREEN),
        ({"compare_variants": True}, Strategy.AB_TEST),
    ],
)
def test_from_flags(flags: dict[str, bool], strategy: Strategy) -> None:
    assert recommend.from_flags(**flags).strategy == strategy


def test_flags_table_matches_from_flags() -> None:
    params = set(inspect.signature(recommend.from_flags).parameters)
    assert {f.param for f in recommend.FLAGS} == params
    assert all(f.name == f.param.replace("_", "-") for f in recommend.FLAGS)


# --- the spec snippets --------------------------------------------------------------------


@pytest.mark.parametrize("strategy", list(Strategy))
def test_example_yaml_is_a_valid_rollout_of_that_strategy(strategy: Strategy) -> None:
    rollout = models.Rollout.model_validate(yaml.safe_load(recommend.example_yaml(strategy)))
    assert rollout.spec.strategy.name == strategy


def test_every_strategy_has_all_tradeoffs() -> None:
    assert set(recommend.TRADEOFFS) == set(Strategy)
    for tradeoffs in recommend.TRADEOFFS.values():
        assert list(tradeoffs) == list(recommend.TRADEOFF_KEYS)


def test_json_form() -> None:
    data = recommend.from_flags(downtime_ok=True, high_risk=True).to_json_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["strategy"] == "canary" and data["label"] == "Canary"
    assert data["answers"]["downtime_ok"] is True
    assert "exampleYaml" in data


# --- the questionnaire ----------------------------------------------------------------------


def run_interactive(*replies: bool) -> tuple[recommend.Recommendation, list[str], str]:
    asked: list[str] = []
    script = iter(replies)

    def ask(prompt: str, default: bool) -> bool:
        asked.append(prompt)
        return next(script)

    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    rec = recommend.interactive(console, ask=ask)
    assert next(script, None) is None, "every scripted reply was used"
    return rec, asked, out.getvalue()


Q = recommend.QUESTIONS


def test_interactive_stops_at_recreate_after_one_question() -> None:
    rec, asked, out = run_interactive(False)
    assert rec.strategy == Strategy.RECREATE
    assert asked == [Q["side_by_side"].text]
    assert "Recommended: Recreate" in out


def test_interactive_asks_overlap_then_exposure_then_the_tree() -> None:
    rec, asked, out = run_interactive(True, False, False, False, True)
    assert rec.strategy == Strategy.AB_TEST
    assert asked == [
        Q[key].text
        for key in ("side_by_side", "zero_exposure", "downtime_ok", "critical", "compare_variants")
    ]
    assert rec == recommend.recommend(
        Answers(side_by_side=True, zero_exposure=False, downtime_ok=False, compare_variants=True)
    )
    for key in recommend.TRADEOFF_KEYS:
        assert key.capitalize() in out
    assert "abTest:" in out and "userKey:" in out


@pytest.mark.parametrize(
    ("replies", "strategy"),
    [
        ((True, True), Strategy.SHADOW),
        ((True, False, True, True), Strategy.CANARY),
        ((True, False, True, False), Strategy.ROLLING_UPDATE),
        ((True, False, False, True), Strategy.BLUE_GREEN),
        ((True, False, False, False, False), Strategy.BLUE_GREEN),
    ],
)
def test_interactive_reaches_every_leaf(replies: tuple[bool, ...], strategy: Strategy) -> None:
    rec, asked, out = run_interactive(*replies)
    assert rec.strategy == strategy
    assert len(asked) == len(replies)
    assert f"Recommended: {strategy.label}" in out


def test_default_prompt_reads_the_console() -> None:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    # Rich's Confirm reads from the console's input: n(o) to overlap ends it at recreate.
    console.input = lambda *args, **kwargs: "n"  # type: ignore[method-assign]
    assert recommend.interactive(console).strategy == Strategy.RECREATE
