"""Rollout-level metrics for ``/metrics``: where each rollout is, next to the router's
per-request ones.

Rendered from the status documents and the analysis runs the API already serves (so the
numbers always agree with ``changeover status``), in the Prometheus text format::

    changeover_rollout_info{rollout,strategy} 1
    changeover_rollout_phase{rollout,phase} 1 | 0          (one series per phase)
    changeover_rollout_step{rollout} / changeover_rollout_steps{rollout}
    changeover_rollout_revision{rollout,role="current|stable|canary"}
    changeover_rollout_weight_percent{rollout,revision}
    changeover_rollout_ready_replicas{rollout,revision}
    changeover_rollout_desired_replicas{rollout,revision}
    changeover_analysis_run_phase{rollout,revision,kind,phase} 1 | 0
    changeover_analysis_measurement_value{rollout,revision,kind,metric}
    changeover_analysis_threshold{rollout,revision,kind,metric,condition,operator}

Analysis series cover the newest revision that has runs, the newest run of each kind
(step, background, ...): one series per metric, not one per run ever started.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from changeover.engine.phases import Phase

JSON = dict[str, Any]
RUN_PHASES = ("Pending", "Running", "Successful", "Failed", "Error", "Inconclusive")

_FAMILIES = {
    "changeover_rollout_info": "Rollouts served, by strategy (always 1).",
    "changeover_rollout_phase": "1 for the rollout's current phase, 0 for the others.",
    "changeover_rollout_step": "Index of the current canary step (from 0).",
    "changeover_rollout_steps": "Number of canary steps.",
    "changeover_rollout_revision": "Revision number by role: current, stable, canary.",
    "changeover_rollout_weight_percent": "Share of traffic sent to each revision (percent).",
    "changeover_rollout_ready_replicas": "Ready replicas of each revision.",
    "changeover_rollout_desired_replicas": "Replicas each revision should have.",
    "changeover_analysis_run_phase": "1 for the newest run's phase of each kind, 0 otherwise.",
    "changeover_analysis_measurement_value": "The latest numeric measurement of each metric.",
    "changeover_analysis_threshold": "The number a metric's simple condition compares with.",
}


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**pairs: object) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items())


def _number(value: Any) -> float | None:
    """A finite number from a hostile value (bools count as 0/1), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, list) and len(value) == 1:  # Prometheus vector answers: [0.01]
        return _number(value[0])
    return None


def render(statuses: Iterable[JSON], runs: Mapping[str, list[JSON]]) -> str:
    """The exposition of every rollout in ``statuses``; ``runs`` maps a rollout's name to
    its detailed analysis runs, oldest first (``AnalysisRun.detail``)."""
    series: dict[str, list[str]] = {name: [] for name in _FAMILIES}

    def add(family: str, labels: str, value: float) -> None:
        shown = str(int(value)) if float(value).is_integer() else repr(float(value))
        series[family].append(f"{family}{{{labels}}} {shown}")

    for doc in statuses:
        name = str(doc.get("name", ""))
        rollout = _labels(rollout=name)
        add("changeover_rollout_info", _labels(rollout=name, strategy=doc.get("strategy")), 1)
        for phase in Phase:
            add(
                "changeover_rollout_phase",
                _labels(rollout=name, phase=phase),
                1 if doc.get("phase") == phase else 0,
            )
        for family, key in (
            ("changeover_rollout_step", "currentStepIndex"),
            ("changeover_rollout_steps", "totalSteps"),
        ):
            value = _number(doc.get(key))
            if value is not None:
                add(family, rollout, value)
        for role, key in (
            ("current", "revision"),
            ("stable", "stableRevision"),
            ("canary", "canaryRevision"),
        ):
            value = _number(doc.get(key))
            if value is not None:
                add("changeover_rollout_revision", _labels(rollout=name, role=role), value)
        _per_revision(add, name, doc)
        _analysis(add, name, runs.get(name, []))
    out: list[str] = []
    for family, help_text in _FAMILIES.items():
        out += [f"# HELP {family} {help_text}", f"# TYPE {family} gauge", *series[family]]
    return "\n".join(out) + "\n"


def _per_revision(add: Any, name: str, doc: JSON) -> None:
    weights = doc.get("weights") or {}
    states = doc.get("revisionStates") or {}
    for revision, weight in sorted(weights.items()):
        value = _number(weight)
        if value is not None:
            add(
                "changeover_rollout_weight_percent", _labels(rollout=name, revision=revision), value
            )
    for revision, state in sorted(states.items()):
        labels = _labels(rollout=name, revision=revision)
        for family, key in (
            ("changeover_rollout_ready_replicas", "ready"),
            ("changeover_rollout_desired_replicas", "desired"),
        ):
            value = _number(state.get(key)) if isinstance(state, dict) else None
            if value is not None:
                add(family, labels, value)


def _analysis(add: Any, name: str, runs: list[JSON]) -> None:
    if not runs:
        return
    newest = max(r.get("revision", 0) for r in runs)
    by_kind: dict[str, JSON] = {}
    for run in runs:  # oldest first: the newest run of each kind wins
        if run.get("revision") == newest:
            by_kind[str(run.get("kind"))] = run
    for kind, run in sorted(by_kind.items()):
        base = {"rollout": name, "revision": newest, "kind": kind}
        for phase in RUN_PHASES:
            add(
                "changeover_analysis_run_phase",
                _labels(**base, phase=phase),
                1 if run.get("phase") == phase else 0,
            )
        for metric in run.get("metrics", []):
            labels = {**base, "metric": metric.get("name")}
            values = [_number(m.get("value")) for m in metric.get("measurements", [])]
            found = [v for v in values if v is not None]
            if found:
                add("changeover_analysis_measurement_value", _labels(**labels), found[-1])
            for which, limit in sorted((metric.get("thresholds") or {}).items()):
                add(
                    "changeover_analysis_threshold",
                    _labels(**labels, condition=which, operator=limit["operator"]),
                    limit["value"],
                )
