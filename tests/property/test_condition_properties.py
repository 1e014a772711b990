"""Property: any condition text is either parsed or refused with a syntax error that has a
caret (what ``lint`` prints under the field path); any parsed condition judged against any
measured value gives a measurement phase with a bounded message; never a traceback."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from spec_strategies import SETTINGS, conditions, measured_values

from changeover.analysis import assess
from changeover.analysis import conditions as cond
from changeover.spec import load
from changeover.validation import analysis_checks

PHASES = ("Successful", "Failed", "Inconclusive", "Error")


@SETTINGS
@given(conditions)
def test_any_text_parses_or_is_a_syntax_error_with_a_caret(text: str) -> None:
    try:
        cond.parse(text)
    except cond.ConditionSyntaxError as exc:
        rendered = exc.render()
        assert " at column " in rendered and "^" in rendered
        assert len(rendered) < 1000
    assert cond.check(text) is None or "^" in str(cond.check(text))


@SETTINGS
@given(conditions, conditions, measured_values)
def test_judging_any_value_gives_a_phase_never_an_exception(
    success: str, failure: str, value: Any
) -> None:
    ok = cond.check(success) is None
    bad = cond.check(failure) is None
    phase, message = assess.judge(
        value, success=success if ok else None, failure=failure if bad else None
    )
    assert phase in PHASES
    assert len(message) < 2000


@SETTINGS
@given(conditions)
def test_a_bad_condition_in_a_template_is_a_field_error(text: str) -> None:
    doc = {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "t"},
        "spec": {
            "metrics": [
                {
                    "name": "m",
                    "successCondition": text,
                    "provider": {"builtin": {"metric": "error-rate"}},
                }
            ]
        },
    }
    loaded = [load.LoadedDocument(source="t.yaml", index=0, data=doc)]
    _, problems, _ = analysis_checks.parse_templates(loaded)
    if cond.check(text) is None:
        assert not [p for p in problems if p.severity == "error"], problems
    else:
        assert problems, text
    for problem in problems:
        assert problem.file == "t.yaml"
        assert problem.path.startswith("spec.metrics[0]"), problem
