"""Every example spec is a valid Rollout of the strategy its file name promises."""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from changeover import validation
from changeover.spec import models
from changeover.traffic import base as traffic

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

STRATEGY_OF_FILE = {
    "canary.yaml": "canary",
    "blue-green.yaml": "blueGreen",
    "rolling-update.yaml": "rollingUpdate",
    "recreate.yaml": "recreate",
    "ab-test.yaml": "abTest",
    "shadow.yaml": "shadow",
}
# More than one example per strategy, and the AnalysisTemplates they use.
MORE_ROLLOUTS = {
    "canary-analysis.yaml": "canary",
    "haproxy.yaml": "canary",
    "websocket.yaml": "canary",
}
TEMPLATE_FILES = ("analysis-template.yaml", "llm-analysis.yaml")
# Rollouts of the example model service (examples/model_service.py).
MODEL_ROLLOUTS = {"model-shadow.yaml": "shadow"}


def rollout(name: str) -> models.Rollout:
    return models.Rollout.model_validate(yaml.safe_load((EXAMPLES / name).read_text()))


def test_there_is_one_example_per_strategy() -> None:
    named = [*STRATEGY_OF_FILE, *MORE_ROLLOUTS, *MODEL_ROLLOUTS, *TEMPLATE_FILES]
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(named)
    assert sorted(STRATEGY_OF_FILE.values()) == sorted(models.STRATEGY_NAMES)


@pytest.mark.parametrize(
    ("name", "strategy"), sorted({**STRATEGY_OF_FILE, **MORE_ROLLOUTS}.items())
)
def test_example_is_a_rollout_of_its_strategy(name: str, strategy: str) -> None:
    r = rollout(name)
    assert r.spec.strategy.name == strategy
    app = "examples/websocket_echo.py" if name == "websocket.yaml" else "examples/app.py"
    assert r.spec.template.command[:2] == ["python3", app]
    assert "$(PORT)" in r.spec.template.command
    assert r.spec.template.readiness_probe is not None
    assert r.spec.template.readiness_probe.http_get is not None
    assert r.spec.template.readiness_probe.http_get.path == "/healthz"


@pytest.mark.parametrize(("name", "strategy"), sorted(MODEL_ROLLOUTS.items()))
def test_model_example_runs_the_model_service(name: str, strategy: str) -> None:
    r = rollout(name)
    assert r.spec.strategy.name == strategy
    assert r.spec.template.command[:2] == ["python3", "examples/model_service.py"]
    assert "$(PORT)" in r.spec.template.command


def test_examples_lint_clean_together() -> None:
    # The builtin router registers itself on import; until it exists, that is its problem.
    with contextlib.suppress(ImportError):
        importlib.import_module("changeover.traffic.builtin")
    problems = [p for p in validation.lint(EXAMPLES) if p.severity == "error"]
    if "builtin" not in traffic.registered() and all(
        "unknown router" in p.message for p in problems
    ):
        pytest.skip("the builtin router is not registered yet")
    assert problems == []


def test_kubernetes_examples_are_pod_templates_and_lint_clean() -> None:
    files = sorted((EXAMPLES / "kubernetes").glob("*.yaml"))
    assert files
    problems = [p for p in validation.lint(EXAMPLES / "kubernetes") if p.severity != "info"]
    assert problems == []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "Rollout":
                assert models.Rollout.model_validate(doc).spec.platform == "kubernetes"


def test_canary_steps_are_the_documented_ones() -> None:
    steps = rollout("canary.yaml").spec.strategy.canary
    assert steps is not None
    assert [s.to_json_dict() for s in steps.steps] == [
        {"setWeight": 20},
        {"pause": {"duration": "10s"}},
        {"setWeight": 50},
        {"pause": {}},
        {"setWeight": 80},
    ]


def test_blue_green_waits_for_a_human_on_a_preview_port() -> None:
    r = rollout("blue-green.yaml")
    bg = r.spec.strategy.blue_green
    assert bg is not None
    assert bg.auto_promotion_enabled is False
    assert bg.preview_port is not None and bg.preview_port != r.spec.service.port


def test_ab_test_matches_a_header_and_splits_users_in_half() -> None:
    ab = rollout("ab-test.yaml").spec.strategy.ab_test
    assert ab is not None
    assert ab.match[0].header_name == "x-variant"
    assert ab.user_key is not None and ab.user_key.header == "x-user-id"
    assert ab.weight == 50


def test_shadow_mirrors_half() -> None:
    shadow = rollout("shadow.yaml").spec.strategy.shadow
    assert shadow is not None and shadow.percentage == 50


def test_recreate_hooks_run(tmp_path: Path) -> None:
    recreate = rollout("recreate.yaml").spec.strategy.recreate
    assert recreate is not None
    repo = EXAMPLES.parent
    for hook in (recreate.pre, recreate.mid, recreate.post):
        assert hook is not None
        argv = [sys.executable if hook.command[0] == "python3" else hook.command[0]]
        argv += [*hook.command[1:], "--seconds", "0"]
        done = subprocess.run(
            argv,
            cwd=repo,
            env={"HOOK_STATE_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "schema-version").read_text() == "v1\n"


def test_a_failing_hook_exits_nonzero(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "hooks.py"), "migrate", "--fail", "--seconds", "0"],
        env={"HOOK_STATE_DIR": str(tmp_path)},
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert not (tmp_path / "schema-version").exists()
