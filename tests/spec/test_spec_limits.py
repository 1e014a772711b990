"""The documented size limits (``spec.limits``): refused at lint with the field path."""

from __future__ import annotations

import json
from pathlib import Path

from changeover import validation
from changeover.spec import limits, models


def _doc(**spec_fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "template": {"command": ["python3", "examples/app.py", "--port", "$(PORT)"]},
        "service": {"port": 18080},
        "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
    }
    body.update(spec_fields)
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "big"},
        "spec": body,
    }


def _lint(tmp_path: Path, doc: dict[str, object]) -> list[str]:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    return [f"{p.path}: {p.message}" for p in validation.lint(path) if p.severity == "error"]


def test_a_spec_within_the_limits_passes(tmp_path: Path) -> None:
    steps = [{"setWeight": i % 100 + 1} for i in range(limits.MAX_STEPS)]
    doc = _doc(replicas=limits.MAX_REPLICAS, strategy={"canary": {"steps": steps}})
    assert _lint(tmp_path, doc) == []


def test_too_many_steps_are_refused_at_lint_with_the_path(tmp_path: Path) -> None:
    steps = [{"setWeight": i % 100 + 1} for i in range(5_000)]
    problems = _lint(tmp_path, _doc(strategy={"canary": {"steps": steps}}))
    assert problems == ["spec.strategy.canary.steps: 5000 steps: at most 200 allowed"]


def test_fifty_thousand_steps_are_refused_at_apply_with_the_path() -> None:
    """What ``apply`` checks (the API takes JSON, without YAML's node cap): the 1.25 MB
    spec of 50,000 steps that was once accepted."""
    steps = [{"setWeight": i % 100 + 1} for i in range(50_000)]
    rollout = models.Rollout.model_validate(_doc(strategy={"canary": {"steps": steps}}))
    problems = [
        f"{p.file}: {p.path}: {p.message}"
        for p in validation.validate_rollouts([rollout], source="big.yaml")
    ]
    assert "big.yaml: spec.strategy.canary.steps: 50000 steps: at most 200 allowed" in problems
    assert any(p.startswith("big.yaml: spec: ") and "bytes of spec" in p for p in problems)


def test_too_many_replicas_are_refused(tmp_path: Path) -> None:
    problems = _lint(tmp_path, _doc(replicas=100_000))
    assert problems == ["spec.replicas: 100000 replicas: at most 256 allowed"]


def test_a_step_scale_over_the_limit_names_its_step(tmp_path: Path) -> None:
    steps = [{"setWeight": 10}, {"setCanaryScale": {"replicas": 1000}}]
    problems = _lint(tmp_path, _doc(strategy={"canary": {"steps": steps}}))
    assert problems == [
        "spec.strategy.canary.steps[1].setCanaryScale.replicas: 1000 replicas: at most 256 allowed"
    ]


def test_a_huge_env_is_refused_by_size(tmp_path: Path) -> None:
    template = {
        "command": ["python3", "examples/app.py"],
        "env": {f"V{i}": "x" * 1000 for i in range(300)},
    }
    problems = _lint(tmp_path, _doc(template=template))
    assert len(problems) == 1 and problems[0].startswith("spec: ")
