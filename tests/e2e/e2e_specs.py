"""Rollout YAMLs for the end-to-end tests, derived from examples/: unique names, free ports,
the example app at a given version, and the test's mark in every process's environment."""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from e2e_helpers import APP, EXAMPLES, JSON, MARK_VAR, free_port

EXAMPLE_FILES = {
    "recreate": "recreate.yaml",
    "rollingUpdate": "rolling-update.yaml",
    "blueGreen": "blue-green.yaml",
    "canary": "canary.yaml",
    "abTest": "ab-test.yaml",
    "shadow": "shadow.yaml",
}


def example_rollout(
    strategy: str,
    *,
    name: str,
    version: str,
    mark: str,
    replicas: int = 2,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    strategy_patch: Mapping[str, Any] | None = None,
) -> JSON:
    """examples/<strategy>.yaml made fit for a test: a unique name, a free router port, the
    example app at ``version`` run by this interpreter, small replica counts, a fast readiness
    probe, and the test's mark in every process's environment. ``strategy_patch`` is merged
    over the example's strategy block (None values delete keys)."""
    doc: JSON = yaml.safe_load((EXAMPLES / EXAMPLE_FILES[strategy]).read_text())
    doc = copy.deepcopy(doc)
    doc["metadata"] = {"name": name}
    spec = doc["spec"]
    spec["replicas"] = replicas
    spec.pop("minReadySeconds", None)
    template = spec["template"]
    template["command"] = [sys.executable, str(APP), "--port", "$(PORT)", "--version", version]
    template["env"] = {**template.get("env", {}), MARK_VAR: mark, **(env or {})}
    template["readinessProbe"] = {"httpGet": {"path": "/healthz"}, "periodSeconds": 0.2}
    template["terminationGracePeriodSeconds"] = 5
    spec["service"] = {"port": port or free_port()}
    block = spec["strategy"][strategy]
    if strategy == "blueGreen":
        block["previewPort"] = free_port()
    for key, value in (strategy_patch or {}).items():
        if value is None:
            block.pop(key, None)
        else:
            block[key] = value
    return doc


def write_rollout(path: Path, doc: JSON) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def with_version(doc: JSON, version: str) -> JSON:
    new = copy.deepcopy(doc)
    command = new["spec"]["template"]["command"]
    command[command.index("--version") + 1] = version
    return new


def checkout_flag(variant: str, steps: list[JSON], **spec: Any) -> JSON:
    """The `checkout` Flag the flag tests walk: variants old/new/broken, everyone on
    ``variant`` once walked by ``steps``. ``spec`` adds fields (``router``,
    ``requestContext``); a ``rollout`` mapping among them is merged into ``spec.rollout``."""
    rollout = {"variant": variant, "steps": steps, **spec.pop("rollout", {})}
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Flag",
        "metadata": {"name": "checkout"},
        "spec": {
            "type": "string",
            "variants": {"old": "old", "new": "new", "broken": "broken"},
            "defaultVariant": "old",
            "split": [{"variant": variant, "weight": 100}],
            **spec,
            "rollout": rollout,
        },
    }
