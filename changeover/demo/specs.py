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
CANARY_REPLICAS = 4
BLUE_GREEN_REPLICAS = 2


class DemoError(errors.ChangeoverError):
    """The demo cannot go on; the message says why and what to do."""


def repo_root() -> Path:
    """The checkout that holds both the package and ``examples/app.py``.

    The demo ships its service as an example file, not as package data, so it runs from a
    source checkout (``make demo``); anywhere else it says so instead of failing later.
    """
    root = Path(__file__).resolve().parents[2]  # changeover/demo/specs.py → the repository
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
