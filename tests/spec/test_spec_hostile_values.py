"""Hostile numbers and keys found by the property tests (tests/property): each was a
traceback or a silently accepted absurdity; each is now a field error naming the path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from changeover import errors, validation
from changeover.spec import load
from changeover.validation import analysis_checks

ROLLOUT: dict[str, Any] = {
    "apiVersion": "changeover.dev/v1alpha1",
    "kind": "Rollout",
    "metadata": {"name": "web"},
    "spec": {
        "template": {"command": ["python3", "app.py"]},
        "service": {"port": 18080},
        "strategy": {"rollingUpdate": {}},
    },
}


def problems(**spec: Any) -> list[str]:
    doc = copy.deepcopy(ROLLOUT)
    for key, value in spec.items():
        parent = doc["spec"]
        *path, last = key.split("__")
        for part in path:
            parent = parent.setdefault(part, {})
        parent[last] = value
    try:
        load.parse_documents([load.LoadedDocument(source="r.yaml", index=0, data=doc)])
    except errors.SpecError as exc:
        return [f"{p.path}: {p.message}" for p in exc.problems]
    return []


PAUSE = "spec.strategy.canary.steps[0].pause.duration"


def pause(value: Any) -> list[str]:
    return problems(strategy={"canary": {"steps": [{"pause": {"duration": value}}]}})


@pytest.mark.parametrize("value", [10**400, float("nan"), float("inf"), "9" * 400 + "s"])
def test_a_duration_that_is_no_finite_number_is_a_field_error(value: Any) -> None:
    assert pause(value) == [f"{PAUSE}: expected a finite duration such as 30s, 5m or 1h"]


def test_a_duration_in_non_ascii_digits_is_a_field_error() -> None:
    assert pause("١٠s") == [f"{PAUSE}: expected a duration such as 30s, 5m or 1h, got '١٠s'"]


def test_an_integer_of_thousands_of_digits_in_yaml_is_a_field_error() -> None:
    text = (
        "apiVersion: changeover.dev/v1alpha1\nkind: Rollout\nmetadata: {name: w}\nspec:\n"
        f"  replicas: 1{'0' * 5000}\n  template: {{command: [x]}}\n"
    )
    with pytest.raises(errors.SpecError) as caught:
        validation.read_text(text, source="r.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "r.yaml: malformed YAML at line 5, column 13: an integer of more than 40 digits"
    ]


@pytest.mark.parametrize("value", ["²", "١٠", "٣٠%", "9" * 5000])
def test_a_count_in_non_ascii_or_endless_digits_is_a_field_error(value: str) -> None:
    [found] = problems(strategy__rollingUpdate__maxSurge=value)
    assert found.startswith("spec.strategy.rollingUpdate.maxSurge: expected an integer or a")


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_no_number_field_takes_nan_or_infinity(value: float) -> None:
    [found] = problems(template__terminationGracePeriodSeconds=value)
    assert found.startswith("spec.template.terminationGracePeriodSeconds: expected a number")


def test_an_unknown_key_with_a_bracket_is_named() -> None:
    doc = {**ROLLOUT, "[a-": None}
    with pytest.raises(errors.SpecError) as caught:
        load.parse_documents([load.LoadedDocument(source="r.yaml", index=0, data=doc)])
    assert [p.message for p in caught.value.problems] == [
        "unknown field '[a-'; expected one of apiVersion, kind, metadata, spec"
    ]


def test_an_analysis_template_whose_metadata_is_not_a_mapping_is_a_field_error() -> None:
    doc = {"apiVersion": "changeover.dev/v1alpha1", "kind": "AnalysisTemplate"}
    doc |= {"metadata": True, "spec": None}
    loaded = [load.LoadedDocument(source="t.yaml", index=0, data=doc)]
    _, found, _ = analysis_checks.parse_templates(loaded)
    assert {(p.path, p.message) for p in found} == {
        ("metadata", "expected a mapping, got true"),
        ("spec", "expected a mapping, got nothing (null)"),
    }


def test_a_document_nested_deeper_than_any_spec_is_a_field_error() -> None:
    """Found by the property tests: 200 levels in a metric's provider block passed every
    check until pydantic's serializer gave up (a ValueError at lint)."""
    nested: Any = 1
    for _ in range(200):
        nested = [nested]
    doc = {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "t"},
        "spec": {"metrics": [{"name": "m", "provider": {"builtin": {"metric": nested}}}]},
    }
    with pytest.raises(errors.SpecError) as caught:
        load.parse_documents([load.LoadedDocument(source="t.yaml", index=0, data=doc)])
    [problem] = caught.value.problems
    assert problem.path.startswith("spec.metrics[0].provider.builtin.metric[0][0]")
    assert problem.message == "nested more than 48 levels deep; no spec needs that"
