"""Runs analysis for the controller: starts runs, measures metrics when due, stops runs.

The engine asks for runs (``StartAnalysis`` / ``StopAnalysis``, carried out by
``local_controller.local_executor``) and reads their phase (``observe``) in every plan.
This runner is driven by the controller's loop: ``step()`` on every tick samples the builtin
router's counters about once a second (``analysis.sampler``) and starts a measurement task for every
metric that is due (``analysis.run.AnalysisRun.due``). A finished measurement is judged
(``analysis.assess``), folded into the run, stored, and the controller is woken so the
engine sees a verdict at once.

Crash safety: a run is stored when it starts and after every measurement, so a restarted
controller reloads the runs that had not completed and goes on measuring them; a
measurement that was in flight at the crash is simply taken again. Starting a run whose id
exists is a no-op, so the engine may ask twice.

Provider failures never escape: ``ProviderError`` (and anything unexpected) becomes an
Error measurement, counted against ``consecutiveErrorLimit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from changeover import aio, errors
from changeover.analysis import (
    assess,
    conditions_eval,
    providers,
    sampler,
    shadow_comparisons,
    templates,
)
from changeover.analysis.providers import base as providers_base
from changeover.analysis.run import AnalysisRun
from changeover.clock import Clock
from changeover.engine import actions, context
from changeover.platforms.base import Platform, ReplicaState
from changeover.runners.analysis_store import AnalysisStore, unscoped
from changeover.spec import analysis as spec_analysis
from changeover.spec import models

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 1.0
# A provider that never answers still ends: its measurement is an Error after this long.
MEASURE_CAP_SECONDS = 600.0
_VALUE_KEPT = 4096  # characters of a measured value kept (a web provider may return a lot)
_DEPTH_KEPT = 32  # levels of nesting of a measured value kept


class AnalysisRunner:
    def __init__(
        self,
        *,
        store: AnalysisStore,
        clock: Clock,
        platform: Platform | None = None,
        metrics: sampler.Snapshotter | None = None,
        wake: Callable[[], None] = lambda: None,
        secret: Callable[[str, str, str], str] | None = None,
        provider_overrides: Mapping[str, Callable[[], providers_base.MetricProvider]] | None = None,
    ) -> None:
        """``secret(namespace, name, key)`` reads a ``secretKeyRef`` argument (None: the
        local platform, which has no Secrets: such a run cannot start, and says why);
        ``provider_overrides`` replace providers by name (the operator's ``job``)."""
        providers.load()
        self._secret = secret
        self._overrides = dict(provider_overrides or {})
        self.store = store
        self.clock = clock
        self._platform = platform
        self.sampler = sampler.Sampler(metrics) if metrics is not None else None
        self._wake = wake
        self._runs: dict[str, AnalysisRun] = {}  # not completed
        self._done: dict[str, AnalysisRun] = {}  # completed, as observed recently
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._held: dict[tuple[str, str], float] = {}  # (run, metric) → not before this time
        for doc in store.active_runs():
            run = AnalysisRun.from_json(doc)
            self._runs[run.id] = run

    # --- what the executor calls ------------------------------------------------------

    def start(
        self,
        action: actions.StartAnalysis,
        *,
        rollout: models.Rollout,
        hashes: Mapping[int, str] | None = None,
    ) -> None:
        """Create run ``action.run_id`` (no-op if it exists) with resolved metrics;
        ``hashes``: the revisions' pod-template hashes, where the platform has them."""
        if action.run_id in self._runs or action.run_id in self._done:
            return
        if self.store.run(action.run_id) is not None:
            return
        now = self.clock.now()
        run = AnalysisRun(
            id=action.run_id,
            rollout=rollout.name,
            namespace=rollout.metadata.namespace,
            kind=action.kind,
            revision=action.revision,
            stable_revision=action.stable_revision,
            started_at=now,
        )
        try:
            resolved = templates.resolve(
                action.analysis,
                self._templates(rollout.metadata.namespace),
                rollout=rollout,
                stable=action.stable_revision,
                latest=action.revision,
                secret=self._secret_of(rollout.metadata.namespace),
                hashes=hashes,
            )
            known = providers_base.registered()
            unknown = [m.provider for m in resolved.metrics if m.provider not in known]
            if unknown:
                raise templates.TemplateError(f"unknown metric provider {unknown[0]!r}")
        except (templates.TemplateError, errors.SpecError, ValueError) as exc:
            where = getattr(exc, "path", "")
            message = f"cannot start: {where + ': ' if where else ''}{exc}"
            run = dataclasses.replace(run, phase="Error", message=message, finished_at=now)
            self._save(run)
            self._done[run.id] = run
            return
        metrics = tuple(resolved.metrics)
        if action.measure_once_after is not None:
            metrics = tuple(_once(m, action.measure_once_after) for m in metrics)
        run = dataclasses.replace(run, metrics=metrics, args=resolved.args).assessed(now)
        self._save(run)
        (self._done if run.completed else self._runs)[run.id] = run

    def stop(self, run_id: str) -> None:
        """End a run the rollout no longer needs: in-flight measurements are cancelled."""
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        self._cancel(run_id)
        run = run.stop(self.clock.now())
        self._save(run)
        self._done[run_id] = run

    def observe(self, run_id: str) -> context.AnalysisResult | None:
        run = self._runs.get(run_id) or self._done.get(run_id)
        if run is None:
            doc = self.store.run(run_id)
            if doc is None:
                return None
            run = AnalysisRun.from_json(doc)
            if run.completed:
                self._done[run_id] = run
        phase: context.AnalysisPhase = run.phase
        return context.AnalysisResult(run_id=run_id, phase=phase, message=run.message)

    def forget(self, rollout: str) -> None:
        """The rollout is deleted: cancel its runs' measurements and drop them."""
        for run_id in [r for r, run in self._runs.items() if run.rollout == rollout]:
            self._cancel(run_id)
            del self._runs[run_id]
        self._done = {k: v for k, v in self._done.items() if v.rollout != rollout}
        if self.sampler is not None:
            self.sampler.forget(rollout)
        self.store.delete_rollout(rollout)

    # --- what the loop calls ----------------------------------------------------------

    def step(self) -> None:
        """Sample the router (about once a second) and start every measurement now due."""
        now = self.clock.now()
        if self.sampler is not None and (
            self.sampler.last_at is None or now - self.sampler.last_at >= SAMPLE_SECONDS
        ):
            self.sampler.sample(now)
        for run in list(self._runs.values()):
            for metric in run.due(now):
                key = (run.id, metric.name)
                if key not in self._tasks and self._held.get(key, 0.0) <= now:
                    task = asyncio.create_task(
                        self._measure(run.id, metric), name=f"measure {run.id} {metric.name}"
                    )
                    self._tasks[key] = task
                    task.add_done_callback(self._forget_task(key))
        if len(self._done) > 500:  # observed runs are re-read from the store when needed
            self._done.clear()

    def _forget_task(self, key: tuple[str, str]) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self._tasks.pop(key, None)
            if not task.cancelled() and task.exception() is not None:
                # A measurement that could not even be recorded stays due: hold it back
                # for the error retry pause, or it is taken again on every tick.
                log.error("measuring %s failed", key, exc_info=task.exception())
                self._held[key] = self.clock.now() + spec_analysis.ERROR_RETRY_SECONDS
            else:
                self._held.pop(key, None)

        return done

    async def close(self) -> None:
        # A measurement already being cancelled (its run superseded) keeps its clean-up.
        await aio.cancel_and_wait_all(list(self._tasks.values()))

    # --- measuring ----------------------------------------------------------------------

    async def _measure(self, run_id: str, metric: templates.MetricSpec) -> None:
        run = self._runs.get(run_id)
        if run is None:
            return
        started = self.clock.now()
        measurement = await self._take(run, metric, started)
        run = self._runs.get(run_id)
        if run is None:  # stopped meanwhile
            return
        run = run.with_measurement(metric.name, measurement, now=self.clock.now())
        if run.completed:
            del self._runs[run_id]
            self._done[run_id] = run
            self._cancel(run_id, keep=(run_id, metric.name))
        else:
            self._runs[run_id] = run
        self._save(run)
        self._wake()

    async def _take(
        self, run: AnalysisRun, metric: templates.MetricSpec, started: float
    ) -> assess.Measurement:
        try:
            override = self._overrides.get(metric.provider)
            provider = override() if override else providers_base.create(metric.provider)
            result = await asyncio.wait_for(
                provider.measure(metric.config, args=run.args, context=self._context(run)),
                MEASURE_CAP_SECONDS,
            )
        except providers_base.ProviderError as exc:
            return self._error(str(exc), started)
        except TimeoutError:
            return self._error(f"no measurement within {MEASURE_CAP_SECONDS:g}s", started)
        except errors.ChangeoverError as exc:
            return self._error(str(exc), started)
        except Exception as exc:  # a provider's bug must not stop the run
            log.exception("provider %s failed", metric.provider)
            return self._error(f"provider {metric.provider} failed: {exc!r}", started)
        try:
            return self._judged(metric, result, started)
        except Exception as exc:  # a hostile value must not leave the metric unmeasured
            log.exception("judging metric %s failed", metric.name)
            return self._error(f"cannot judge the value: {type(exc).__name__}", started)

    def _judged(
        self, metric: templates.MetricSpec, result: providers_base.ProviderResult, started: float
    ) -> assess.Measurement:
        if result.phase is not None:
            phase, why = result.phase, result.message
        else:
            phase, judged = assess.judge(
                result.value,
                success=metric.success_condition,
                failure=metric.failure_condition,
            )
            why = judged or result.message
        return assess.Measurement(
            phase=phase,
            value=_bounded(result.value),
            message=why,
            started_at=started,
            finished_at=self.clock.now(),
            metadata=dict(result.metadata),
        )

    def _error(self, message: str, started: float) -> assess.Measurement:
        return assess.Measurement(
            phase="Error", message=message, started_at=started, finished_at=self.clock.now()
        )

    def _context(self, run: AnalysisRun) -> providers_base.MeasureContext:
        rollout, smp, platform = run.rollout, self.sampler, self._platform

        def window(revision: int, seconds: float) -> sampler.WindowStats:
            if smp is None:
                raise providers_base.ProviderError("the builtin router's metrics are off")
            return smp.window(rollout, revision, seconds, self.clock.now())

        def variant_window(
            revision: int, flag: str, variant: str, seconds: float
        ) -> sampler.WindowStats:
            if smp is None:
                raise providers_base.ProviderError("the builtin router's metrics are off")
            return smp.window(rollout, revision, seconds, self.clock.now(), variant=(flag, variant))

        def series(revision: int, metric: str, seconds: float) -> list[float]:
            if smp is None:
                return []
            if metric in shadow_comparisons.SERIES:  # per request, as compared (wall-time stamps)
                found = smp.shadows(rollout)
                return shadow_comparisons.latency_samples(
                    found, revision, now=time.time(), seconds=seconds
                )
            return smp.series(rollout, revision, metric, seconds)

        def shadows() -> dict[int, shadow_comparisons.ShadowData]:
            return smp.shadows(rollout) if smp is not None else {}

        def replicas(revision: int) -> list[providers_base.ReplicaProcess]:
            if platform is None:
                return []
            state = platform.observe(rollout).get(revision)
            if state is None:
                return []
            return [
                providers_base.ReplicaProcess(pid=r.pid, restarts=r.restarts)
                for r in state.replicas
                if r.state is not ReplicaState.TERMINATING
            ]

        return providers_base.MeasureContext(
            rollout=rollout,
            namespace=run.namespace,
            stable_revision=run.stable_revision,
            canary_revision=run.revision,
            now=self.clock.now(),
            series=series,
            window=window,
            replicas=replicas,
            shadows=shadows,
            variant_window=variant_window,
        )

    # --- plumbing -----------------------------------------------------------------------

    def _templates(self, namespace: str = "default") -> dict[str, spec_analysis.AnalysisTemplate]:
        """The stored templates of ``namespace``, by name (see ``analysis_store.scoped``)."""
        out = {}
        for key, doc in self.store.templates().items():
            name = unscoped(key, namespace)
            if name is None:
                continue
            with contextlib.suppress(ValueError):
                out[name] = spec_analysis.AnalysisTemplate.model_validate(doc)
        return out

    def _secret_of(self, namespace: str) -> templates.SecretFn:
        def read(name: str, key: str) -> str:
            if self._secret is None:
                raise templates.TemplateError(
                    f"valueFrom.secretKeyRef {name}/{key} reads a Kubernetes Secret; the local "
                    "platform has none: give the value with value: (or run on Kubernetes)",
                    "args",
                )
            return self._secret(namespace, name, key)

        return read

    def _cancel(self, run_id: str, keep: tuple[str, str] | None = None) -> None:
        self._held = {key: at for key, at in self._held.items() if key[0] != run_id}
        for key, task in list(self._tasks.items()):
            if key[0] == run_id and key != keep and not task.cancelling():
                task.cancel()

    def _save(self, run: AnalysisRun) -> None:
        try:
            self.store.put_run(run.to_json(), completed=run.completed)
        except errors.BackendError:
            log.exception("cannot store analysis run %s", run.id)


def _once(metric: templates.MetricSpec, after: float) -> templates.MetricSpec:
    """A metric as a check measures it: once, ``after`` seconds in; any failure, error or
    inconclusive measurement decides (``spec.analysis.Checks``)."""
    return dataclasses.replace(
        metric,
        interval=None,
        count=1,
        initial_delay=after,
        failure_limit=0,
        inconclusive_limit=0,
        consecutive_error_limit=0,
        consecutive_success_limit=0,
    )


def _bounded(value: Any) -> Any:
    """The value as measured, unless its JSON is too long or too deep to keep (or is not
    JSON at all): then a short preview."""
    if _depth(value) > _DEPTH_KEPT:
        return conditions_eval.show(value, 200)
    try:
        text = json.dumps(assess.finite(value))
    except (TypeError, ValueError, RecursionError):
        return conditions_eval.show(value, 200)
    return value if len(text) <= _VALUE_KEPT else conditions_eval.show(value, 200)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (without recursion; stops counting past the limit)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > _DEPTH_KEPT:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def latest(store: AnalysisStore, rollout: str) -> dict[str, Any]:
    """The status document's analysis fields: ``analysis`` (per metric, the latest result
    among the runs of the newest revision that has runs) and ``analysisRuns`` (those runs,
    oldest first)."""
    runs = store.runs(rollout)
    if runs:
        newest = max(r["revision"] for r in runs)
        runs = [r for r in runs if r["revision"] == newest]
    parsed = [AnalysisRun.from_json(doc) for doc in runs]
    results: dict[str, Any] = {}
    for run in parsed:
        results.update(run.summary())
    return {"analysis": results, "analysisRuns": [run.describe() for run in parsed]}


def detailed(store: AnalysisStore, rollout: str) -> list[dict[str, Any]]:
    """Every kept run of ``rollout``, oldest first, with its measurements and thresholds
    (``AnalysisRun.detail``)."""
    return [AnalysisRun.from_json(doc).detail() for doc in store.runs(rollout)]
