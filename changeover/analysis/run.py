"""An analysis run as data: its metrics, their tallies, its phase. Pure and serializable.

The controller's runner (``runners.analysis_runner``) owns the I/O: it asks ``due`` which
metrics to measure now, measures them, and folds each result back in with
``with_measurement``; ``stop`` ends a run the rollout no longer needs (a terminated run is
Successful unless something already failed, as in Argo Rollouts). After every change the
runner stores ``to_json()``, so a restarted controller resumes from ``from_json``.

``summary()`` is what the status document shows per metric::

    {"phase": "Failed", "measured": true, "value": 0.31,
     "message": "metric error-rate Failed = 0.31 ...",
     "count": 3, "successful": 1, "failed": 2, "inconclusive": 0, "error": 0,
     "undecided": 0, "consecutiveError": 0, "dryRun": false, "measuredAt": 1717000000.0}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from changeover.analysis import assess, templates, thresholds

JSON = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class AnalysisRun:
    id: str
    rollout: str
    namespace: str = "default"
    # Where it runs: "step", "background", "prePromotion", "postPromotion", "experiment".
    kind: str
    revision: int
    stable_revision: int | None = None
    metrics: tuple[templates.MetricSpec, ...] = ()
    args: Mapping[str, str] = field(default_factory=dict)
    results: Mapping[str, assess.MetricResult] = field(default_factory=dict)
    phase: assess.Phase = "Pending"
    message: str = ""
    started_at: float = 0.0
    finished_at: float | None = None
    stopped: bool = False

    @property
    def completed(self) -> bool:
        return self.phase in assess.COMPLETED

    @staticmethod
    def refused(run_id: str, rollout: str, why: str, *, now: float, namespace: str) -> AnalysisRun:
        """A step run that could not start, as an Error (stored, so the verdict is read back
        like any run's)."""
        return AnalysisRun(
            id=run_id,
            rollout=rollout,
            namespace=namespace,
            kind="step",
            revision=0,
            phase="Error",
            message=f"cannot start: {why}",
            started_at=now,
            finished_at=now,
        )

    # --- transitions -----------------------------------------------------------------

    def assessed(self, now: float) -> AnalysisRun:
        """Re-assess every metric and the run; completes it (``finished_at``) if done."""
        if self.completed:
            return self
        verdict = assess.assess_run(self.metrics, self.results, stopped=self.stopped)
        phase = verdict.phase
        if phase == "Running" and all(r.phase == "Pending" for r in verdict.metrics.values()):
            phase = "Pending" if not self.stopped else phase
        done = phase in assess.COMPLETED
        return replace(
            self,
            results=dict(verdict.metrics),
            phase=phase,
            message=verdict.message if done else self.message,
            finished_at=now if done else None,
        )

    def due(self, now: float) -> list[templates.MetricSpec]:
        """The metrics to measure now (the caller skips those already being measured)."""
        if self.completed or self.stopped:
            return []
        out = []
        for metric in self.metrics:
            result = self.results.get(metric.name) or assess.MetricResult(name=metric.name)
            at = assess.next_due(metric, result, started_at=self.started_at)
            if at is not None and at <= now:
                out.append(metric)
        return out

    def next_wakeup(self) -> float | None:
        """The earliest time a metric falls due (for the runner's sleep)."""
        times = []
        for metric in self.metrics:
            result = self.results.get(metric.name) or assess.MetricResult(name=metric.name)
            at = assess.next_due(metric, result, started_at=self.started_at)
            if at is not None:
                times.append(at)
        return min(times, default=None)

    def with_measurement(
        self, metric_name: str, measurement: assess.Measurement, *, now: float
    ) -> AnalysisRun:
        """Fold in a finished measurement (ignored once the run completed)."""
        if self.completed:
            return self
        metric = next(m for m in self.metrics if m.name == metric_name)
        result = self.results.get(metric_name) or assess.MetricResult(name=metric_name)
        updated = assess.record(result, measurement, retention=metric.retention)
        return replace(self, results={**self.results, metric_name: updated}).assessed(now)

    def stop(self, now: float) -> AnalysisRun:
        if self.completed:
            return self
        return replace(self, stopped=True).assessed(now)

    # --- views ---------------------------------------------------------------------

    def summary(self) -> dict[str, JSON]:
        """Per metric: phase, latest value and message, and the counters."""
        out: dict[str, JSON] = {}
        for metric in self.metrics:
            result = self.results.get(metric.name) or assess.MetricResult(name=metric.name)
            latest = result.latest
            measured = latest is not None or result.error > 0
            message = result.message or (latest.message if latest is not None else "")
            if not measured and result.phase in assess.COMPLETED:
                message = message or assess.NOT_MEASURED
            out[metric.name] = {
                "phase": result.phase,
                "measured": measured,
                "value": assess.finite(latest.value) if latest is not None else None,
                "message": message,
                "count": result.count,
                "successful": result.successful,
                "failed": result.failed,
                "inconclusive": result.inconclusive,
                "error": result.error,
                "undecided": result.undecided,
                "consecutiveError": result.consecutive_error,
                "dryRun": metric.dry_run,
                "measuredAt": latest.finished_at if latest is not None else None,
                "run": self.id,
            }
        return out

    def describe(self) -> JSON:
        """The run itself, for ``status``'s ``analysisRuns``."""
        return {
            "id": self.id,
            "kind": self.kind,
            "revision": self.revision,
            "phase": self.phase,
            "message": self.message,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "metrics": [m.name for m in self.metrics],
        }

    def detail(self) -> JSON:
        """``describe()`` plus, per metric, its conditions, the threshold a simple condition
        names (``analysis.thresholds``), its tally and its kept measurements: what the
        dashboard charts and ``/metrics`` exports."""
        metrics = []
        for metric in self.metrics:
            result = self.results.get(metric.name) or assess.MetricResult(name=metric.name)
            limits = {
                which: thresholds.threshold(condition)
                for which, condition in (
                    ("success", metric.success_condition),
                    ("failure", metric.failure_condition),
                )
            }
            metrics.append(
                {
                    "name": metric.name,
                    "provider": metric.provider,
                    "successCondition": metric.success_condition,
                    "failureCondition": metric.failure_condition,
                    "thresholds": {
                        which: {"operator": found[0], "value": found[1]}
                        for which, found in limits.items()
                        if found is not None
                    },
                    "phase": result.phase,
                    "message": result.message,
                    "dryRun": metric.dry_run,
                    "measurements": [
                        {
                            "phase": m.phase,
                            "value": assess.finite(m.value),
                            "message": m.message,
                            "finishedAt": m.finished_at,
                        }
                        for m in result.measurements
                    ],
                }
            )
        return {**self.describe(), "metrics": metrics}

    # --- storage -------------------------------------------------------------------

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "rollout": self.rollout,
            "namespace": self.namespace,
            "kind": self.kind,
            "revision": self.revision,
            "stableRevision": self.stable_revision,
            "metrics": [m.to_json() for m in self.metrics],
            "args": dict(self.args),
            "results": {name: _result_json(r) for name, r in self.results.items()},
            "phase": self.phase,
            "message": self.message,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "stopped": self.stopped,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> AnalysisRun:
        return AnalysisRun(
            id=data["id"],
            rollout=data["rollout"],
            namespace=data.get("namespace", "default"),
            kind=data["kind"],
            revision=data["revision"],
            stable_revision=data.get("stableRevision"),
            metrics=tuple(templates.MetricSpec.from_json(m) for m in data.get("metrics", [])),
            args=data.get("args") or {},
            results={
                name: _result_from(name, r) for name, r in (data.get("results") or {}).items()
            },
            phase=data.get("phase", "Pending"),
            message=data.get("message", ""),
            started_at=data.get("startedAt", 0.0),
            finished_at=data.get("finishedAt"),
            stopped=bool(data.get("stopped", False)),
        )


def _result_json(result: assess.MetricResult) -> JSON:
    return {
        "phase": result.phase,
        "message": result.message,
        "count": result.count,
        "successful": result.successful,
        "failed": result.failed,
        "inconclusive": result.inconclusive,
        "error": result.error,
        "undecided": result.undecided,
        "consecutiveError": result.consecutive_error,
        "consecutiveSuccess": result.consecutive_success,
        "consecutiveUndecided": result.consecutive_undecided,
        "lastFinishedAt": result.last_finished_at,
        "measurements": [
            {
                "phase": m.phase,
                "value": assess.finite(m.value),
                "message": m.message,
                "startedAt": m.started_at,
                "finishedAt": m.finished_at,
                **({"metadata": dict(m.metadata)} if m.metadata else {}),
            }
            for m in result.measurements
        ],
    }


def _result_from(name: str, data: Mapping[str, Any]) -> assess.MetricResult:
    return assess.MetricResult(
        name=name,
        phase=data.get("phase", "Pending"),
        message=data.get("message", ""),
        count=data.get("count", 0),
        successful=data.get("successful", 0),
        failed=data.get("failed", 0),
        inconclusive=data.get("inconclusive", 0),
        error=data.get("error", 0),
        undecided=data.get("undecided", 0),
        consecutive_error=data.get("consecutiveError", 0),
        consecutive_success=data.get("consecutiveSuccess", 0),
        consecutive_undecided=data.get("consecutiveUndecided", 0),
        last_finished_at=data.get("lastFinishedAt"),
        measurements=tuple(
            assess.Measurement(
                phase=m["phase"],
                value=m.get("value"),
                message=m.get("message", ""),
                started_at=m.get("startedAt", 0.0),
                finished_at=m.get("finishedAt", 0.0),
                metadata=dict(m.get("metadata") or {}),
            )
            for m in data.get("measurements", [])
        ),
    )
