"""The demo's two rollouts, as the documents a user would write, and where their app lives.

Both run ``examples/app.py`` from the source checkout (the repository is the package's
parent), started with this interpreter so the demo never depends on what ``python3`` means
on the user's PATH. Ports come from the caller (free loopback ports), so the demo never
collides with a server the user already runs on 8080.

The canary walks the steps of ``examples/canary.yaml`` with a pause that needs a human
(``pause: {}``) and timed pauses shortened to the demo's pace::

    steps: [setWeight 20, pause 12s, setWeight 50, pause {}, setWeight 80, pause 12s]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from changeover import errors

JSON = dict[str, Any]

CANARY = "demo-canary"
BLUE_GREEN = "demo-bluegreen"
ANALYSIS = "demo-analysis"
CANARY_REPLICAS = 4
BLUE_GREEN_REPLICAS = 2
ANALYSIS_REPLICAS = 2
ANALYSIS_TEMPLATE = "demo-error-rate"
BAD_ERROR_RATE = 0.3


class DemoError(errors.ChangeoverError):
    """The demo cannot go on; the message says why and what to do."""


def repo_root() -> Path:
    """The checkout that holds both the package and ``examples/app.py``.

    The demo ships its service as an example file, not as package data, so it runs from a
    source checkout (``make demo``); anywhere else it says so instead of failing later.
    """
    root = Path(__file__).resolve().parents[2]  # changeover/demo/rollout_docs.py → the repository
    if not (root / "examples" / "app.py").is_file():
        raise DemoError(
            f"the demo runs examples/app.py from a changeover source checkout, and there is "
            f"none at {root / 'examples' / 'app.py'}; clone the repository and run "
            f"`make demo` from its root"
        )
    return root


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _template(root: Path, version: str, model: str) -> JSON:
    return {
        "command": [
            sys.executable,
            str(root / "examples" / "app.py"),
            "--port",
            "$(PORT)",
            "--version",
            version,
        ],
        "env": {"MODEL": model, "LATENCY_MS": "5"},
        "workingDir": str(root),
        "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 0.5},
    }


def canary_steps(pause_seconds: float) -> list[JSON]:
    return [
        {"setWeight": 20},
        {"pause": {"duration": _seconds(pause_seconds)}},
        {"setWeight": 50},
        {"pause": {}},
        {"setWeight": 80},
        {"pause": {"duration": _seconds(pause_seconds)}},
    ]


def describe_step(step: JSON, *, short: bool = False) -> str:
    """``{"setWeight": 20}`` → ``setWeight 20`` (short: ``20%``); ``{"pause": {}}`` →
    ``pause {} until promote`` (short: ``pause {}``)."""
    if "setWeight" in step:
        return f"{step['setWeight']}%" if short else f"setWeight {step['setWeight']}"
    if "pause" in step:
        duration = (step["pause"] or {}).get("duration")
        if duration:
            return f"pause {duration}"
        return "pause {}" if short else "pause {} until promote"
    if "analysis" in step:
        names = [t["templateName"] for t in step["analysis"].get("templates", [])]
        return "analysis" if short else f"analysis {', '.join(names)}"
    return ", ".join(step)


def canary(*, root: Path, version: str, port: int, pause_seconds: float) -> JSON:
    """A chat API rolled out by canary: 4 replicas behind the builtin router on ``port``."""
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": CANARY, "labels": {"app": "chat-api"}},
        "spec": {
            "replicas": CANARY_REPLICAS,
            "template": _template(root, version, "llama-3-8b-instruct"),
            "service": {"port": port},
            "strategy": {
                "canary": {
                    "maxSurge": "25%",
                    "maxUnavailable": 0,
                    "steps": canary_steps(pause_seconds),
                }
            },
        },
    }


def analysis_template(*, interval_seconds: float) -> JSON:
    """The act's AnalysisTemplate: the canary's share of 5xx answers, from the builtin
    router, measured every ``interval_seconds`` three times; a second bad measurement fails
    it (as in examples/analysis-template.yaml, at the demo's pace)."""
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": ANALYSIS_TEMPLATE},
        "spec": {
            "args": [{"name": "max-error-rate", "value": "0.05"}],
            "metrics": [
                {
                    "name": "error-rate",
                    "interval": _seconds(interval_seconds),
                    "count": 3,
                    "failureLimit": 1,
                    "successCondition": "result <= {{args.max-error-rate}}",
                    "provider": {
                        "builtin": {
                            "metric": "error-rate",
                            "revision": "canary",
                            "window": _seconds(max(5.0, 3 * interval_seconds)),
                            "minRequests": 10,
                        }
                    },
                }
            ],
        },
    }


def analysis_steps() -> list[JSON]:
    check = {"analysis": {"templates": [{"templateName": ANALYSIS_TEMPLATE}]}}
    return [{"setWeight": 20}, check, {"setWeight": 50}, check]


def analysis_canary(*, root: Path, version: str, port: int, error_rate: float) -> JSON:
    """A canary that no human promotes: each analysis step decides (examples/
    canary-analysis.yaml). ``error_rate`` is the share of requests the app answers 500."""
    template = _template(root, version, "llama-3-8b-instruct")
    template["env"]["ERROR_RATE"] = f"{error_rate:g}"
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": ANALYSIS, "labels": {"app": "chat-api"}},
        "spec": {
            "replicas": ANALYSIS_REPLICAS,
            "template": template,
            "service": {"port": port},
            "strategy": {"canary": {"steps": analysis_steps()}},
        },
    }


def blue_green(
    *, root: Path, version: str, port: int, preview_port: int, scale_down_seconds: float
) -> JSON:
    """A triage model rolled out blue-green: the new revision waits on ``preview_port``
    for a promote; the old one stays up ``scale_down_seconds`` so undo is instant."""
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": BLUE_GREEN, "labels": {"app": "triage-model"}},
        "spec": {
            "replicas": BLUE_GREEN_REPLICAS,
            "template": _template(root, version, "triage-bert"),
            "service": {"port": port},
            "strategy": {
                "blueGreen": {
                    "previewPort": preview_port,
                    "autoPromotionEnabled": False,
                    "scaleDownDelaySeconds": _seconds(scale_down_seconds),
                }
            },
        },
    }
