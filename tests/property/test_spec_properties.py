"""Property: whatever document arrives, ``lint`` and ``apply``'s validation answer with
field errors (file, field path, message) or accept it; never a traceback.

Documents come from the models (random fields, wrong types, random nesting: see
``spec_strategies``) and from the examples broken at a random path. Both ways are checked:
YAML text as ``lint``/the CLI reads it, and the decoded documents as the HTTP API's
``apply`` validates them (``local_controller.local_service.LocalService.apply``'s sequence).
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st
from spec_strategies import (
    SETTINGS,
    example_documents,
    mutated,
    rollout_documents,
    template_documents,
)

from changeover import errors, validation
from changeover.spec import load
from changeover.validation import analysis_checks

SOURCE = "fuzz.yaml"
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: 40 times as fast
EXAMPLES = example_documents()
# The examples' AnalysisTemplates, as if applied earlier (the server knows stored ones).
STORED = {
    t.name: t
    for t, _ in analysis_checks.parse_templates(
        [
            load.LoadedDocument(source="examples", index=i, data=d)
            for i, d in enumerate(EXAMPLES)
            if d.get("kind") == "AnalysisTemplate"
        ]
    )[0]
}


def problems_of_apply(documents: list[dict[str, Any]]) -> list[errors.SpecProblem]:
    """What ``apply`` through the API refuses ``documents`` with ([] when accepted)."""
    loaded = [load.LoadedDocument(source=SOURCE, index=i, data=d) for i, d in enumerate(documents)]
    try:
        specs = load.parse_documents(loaded)
    except errors.SpecError as exc:
        return list(exc.problems)
    parsed, template_problems, broken = analysis_checks.parse_templates(specs.other)
    known = {**STORED, **{template.name: template for template, _ in parsed}}
    found = [
        *template_problems,
        *validation.validate_rollouts(specs.rollouts, source=SOURCE),
        *analysis_checks.check_rollouts(
            specs.rollouts, [SOURCE] * len(specs.rollouts), known, strict=True, broken=broken
        ),
    ]
    for rollout in specs.rollouts:
        try:
            rollout.spec.process_template(source=SOURCE)
        except errors.SpecError as exc:
            found += exc.problems
    return [p for p in found if p.severity != "warning"]


def problems_of_lint(documents: list[dict[str, Any]]) -> list[errors.SpecProblem]:
    """What ``lint`` says of ``documents`` written as one YAML file."""
    text = yaml.dump_all(documents, Dumper=_DUMPER, allow_unicode=True)
    try:
        validation.read_text(text, source=SOURCE)
    except errors.SpecError as exc:
        return list(exc.problems)
    return []


def assert_field_errors(found: list[errors.SpecProblem]) -> None:
    for problem in found:
        assert problem.file.startswith(SOURCE), problem
        assert problem.message.strip(), problem
        assert "Traceback" not in problem.message
        assert len(str(problem)) < 5000, "a message must stay readable"
        str(problem)  # renders


def check(documents: list[dict[str, Any]]) -> None:
    assert_field_errors(problems_of_apply(documents))
    assert_field_errors(problems_of_lint(documents))


@SETTINGS
@given(st.lists(rollout_documents(), min_size=1, max_size=2))
def test_rollouts_from_the_models_give_field_errors(documents: list[dict[str, Any]]) -> None:
    check(documents)


@SETTINGS
@given(mutated(EXAMPLES))
def test_examples_broken_anywhere_give_field_errors(document: dict[str, Any]) -> None:
    check([document])


@SETTINGS
@given(template_documents(), mutated(EXAMPLES))
def test_analysis_templates_from_the_models_give_field_errors(
    template: dict[str, Any], rollout: dict[str, Any]
) -> None:
    check([template, rollout])


def test_the_examples_themselves_are_accepted() -> None:
    """The generator's starting points are valid, so a mutation is what breaks them."""
    rollouts = [d for d in EXAMPLES if d.get("kind") == "Rollout"]
    assert len(rollouts) >= 6
    for doc in rollouts:
        assert problems_of_apply([doc]) == [], doc["metadata"]
