"""What no process can be started with is a field error at ``lint``/``apply``: before, an
env name with '=' or a NUL in a value passed lint and left the replica silently unstarted
(``subprocess`` raised a ValueError nobody saw)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from changeover import validation
from changeover.analysis.providers import job

DOC: dict[str, Any] = {
    "apiVersion": "changeover.dev/v1alpha1",
    "kind": "Rollout",
    "metadata": {"name": "web"},
    "spec": {
        "template": {"command": ["python3", "app.py"]},
        "service": {"port": 18080},
        "strategy": {"recreate": {}},
    },
}


def lint(tmp_path: Path, template: dict[str, Any], **recreate: Any) -> list[str]:
    doc = json.loads(json.dumps(DOC))
    doc["spec"]["template"].update(template)
    doc["spec"]["strategy"]["recreate"].update(recreate)
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML, and carries "\u0000" as it is
    return [str(p).replace(str(path), "r.yaml") for p in validation.lint(path)]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            {"env": {"A=B": "1"}},
            "r.yaml: spec.template.env[\"A=B\"]: a variable name cannot contain '='",
        ),
        (
            {"env": {"TOKEN": "ab\u0000cd"}},
            "r.yaml: spec.template.env.TOKEN: contains a NUL character, which no environment "
            "value can hold",
        ),
        ({"env": {"": "x"}}, "r.yaml: spec.template.env: a variable name cannot be empty"),
        (
            {"command": ["python3", "a\u0000b"]},
            "r.yaml: spec.template.command[1]: contains a NUL character, which no process "
            "argument can hold",
        ),
        (
            {"command": ["", "app.py"]},
            "r.yaml: spec.template.command[0]: expected a program to run, got an empty string",
        ),
        (
            {"workingDir": "/srv\u0000"},
            "r.yaml: spec.template.workingDir: contains a NUL character, which no path can hold",
        ),
    ],
)
def test_what_no_process_can_carry_is_a_field_error(
    tmp_path: Path, template: dict[str, Any], expected: str
) -> None:
    assert lint(tmp_path, template) == [expected]


def test_recreate_hooks_are_checked_the_same_way(tmp_path: Path) -> None:
    hook = {"command": ["migrate"], "env": {"X=1": "y"}}
    assert lint(tmp_path, {}, pre=hook) == [
        "r.yaml: spec.strategy.recreate.pre.env[\"X=1\"]: a variable name cannot contain '='"
    ]


def test_a_job_metric_is_checked_the_same_way() -> None:
    found = job.problems({"command": ["smoke", "\u0000"], "env": {"A=B": "1"}})
    assert found == [
        "command[1]: contains a NUL character, which no process argument can hold",
        "env[\"A=B\"]: a variable name cannot contain '='",
    ]


@pytest.mark.parametrize("path", ["/health check", "/h\r\nX-Evil: 1", "/é", "/a\u0000"])
def test_a_probe_path_the_request_line_cannot_carry_is_a_field_error(
    tmp_path: Path, path: str
) -> None:
    [found] = lint(tmp_path, {"readinessProbe": {"httpGet": {"path": path}}})
    assert found.startswith(
        "r.yaml: spec.template.readinessProbe.httpGet.path: expected a URL path of visible ASCII"
    )


def test_an_ordinary_probe_path_is_fine(tmp_path: Path) -> None:
    assert lint(tmp_path, {"readinessProbe": {"httpGet": {"path": "/healthz?deep=1%20x"}}}) == []


def test_pod_template_containers_are_checked_the_same_way(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(DOC))
    doc["spec"]["template"] = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "web:v2",
                    "args": ["--flag", "a\u0000"],
                    "env": [{"name": "A=B", "value": "1"}, {"name": "OK", "value": "\u0000"}],
                }
            ]
        },
    }
    doc["spec"]["strategy"] = {"canary": {}}
    path = tmp_path / "pod.yaml"
    path.write_text(json.dumps(doc))
    found = {(p.path, p.message) for p in validation.lint(path) if p.severity == "error"}
    root = "spec.template.spec.containers[0]"
    assert found == {
        (f"{root}.args[1]", "contains a NUL character, which no process argument can hold"),
        (f"{root}.env[0].name", "a variable name cannot contain '=' or NUL"),
        (f"{root}.env[1].value", "contains a NUL character, which no environment value can hold"),
    }
