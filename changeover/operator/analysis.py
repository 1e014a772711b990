"""Analysis runs and webhook gates for the operator, with the local controller's runners.

The engine asks for runs (``StartAnalysis``/``StopAnalysis``) and webhook calls
(``CallWebhook``/``StopWebhook``) on Kubernetes exactly as it does locally; this module
carries them out with ``controller.analysis_runner.AnalysisRunner`` and
``controller.webhook_runner.WebhookRunner`` and folds their verdicts into the
observations. Templates come from ``AnalysisTemplate`` resources (watched; validated with
the spec models, stored by name). Runs live in a SQLite file under the operator's state
directory (an ``emptyDir`` in the pod): a restarted replica goes on measuring them, a
failed-over one starts runs that were in flight again (the engine asks again; a run id is
started once per process). Prometheus, web and job providers measure as they do locally;
the builtin provider, which reads the builtin router's counters, has none on Kubernetes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from changeover.analysis.run import AnalysisRun
from changeover.controller.analysis_runner import AnalysisRunner
from changeover.controller.analysis_store import AnalysisStore, scoped
from changeover.controller.clock import SystemClock
from changeover.controller.webhook_runner import WebhookRunner
from changeover.engine import actions, context
from changeover.engine.status import RolloutStatus
from changeover.platforms.kubernetes import client as kube
from changeover.platforms.kubernetes import informer
from changeover.spec import analysis as spec_analysis
from changeover.spec import models

log = logging.getLogger(__name__)
JSON = dict[str, Any]
AnalysisAction = (
    actions.StartAnalysis | actions.StopAnalysis | actions.CallWebhook | actions.StopWebhook
)


class OperatorAnalysis:
    def __init__(
        self,
        client: kube.KubeClient,
        *,
        namespace: str | None,
        state_dir: Path | None,
        wake: Callable[[], None],
    ) -> None:
        directory = state_dir or Path(tempfile.mkdtemp(prefix="changeover-operator-"))
        self.store = AnalysisStore(directory / "analysis.db")
        self._wake = wake
        # Made on first use: the providers it loads cost ~75 MB, which an operator whose
        # rollouts have no analysis need not pay.
        self._runner: AnalysisRunner | None = None
        self.webhooks = WebhookRunner(wake=wake)
        self.templates = informer.Informer(
            client, kube.ANALYSIS_TEMPLATES, namespace=namespace, on_change=self._template
        )

    @property
    def runner(self) -> AnalysisRunner:
        if self._runner is None:
            self._runner = AnalysisRunner(store=self.store, clock=SystemClock(), wake=self._wake)
        return self._runner

    def _template(self, obj: JSON) -> None:
        meta = obj.get("metadata", {})
        if obj.get("metadata", {}).get("deletionTimestamp"):
            return
        try:
            template = spec_analysis.AnalysisTemplate.model_validate(
                {
                    "apiVersion": models.API_VERSION,
                    "kind": "AnalysisTemplate",
                    "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
                    "spec": obj.get("spec") or {},
                }
            )
        except ValueError as exc:
            log.warning("AnalysisTemplate %s is invalid: %s", meta.get("name"), exc)
            return
        key = scoped(template.name, str(meta.get("namespace") or "default"))
        self.store.put_template(key, template.to_json_dict(), now=SystemClock().now())

    def observe(self, status: RolloutStatus) -> tuple[JSON, JSON]:
        analysis: dict[str, context.AnalysisResult] = {}
        for run_id in status.analysis_runs if status.analysis_runs else ():
            seen = self.runner.observe(run_id)
            if seen is not None:
                analysis[run_id] = seen
        hooks: dict[str, context.WebhookResult] = {}
        for call_id in status.webhooks:
            call = self.webhooks.observe(call_id)
            if call is not None:
                hooks[call_id] = call
        return analysis, hooks

    def summary(self, rollout: str, namespace: str = "default") -> JSON:
        """Per metric, the latest result among the newest revision's runs (the status's
        ``analysis``, as the local status document has it)."""
        runs = self.store.runs(scoped(rollout, namespace))
        if not runs:
            return {}
        newest = max(r.get("revision", 0) for r in runs)
        out: JSON = {}
        for doc in runs:
            if doc.get("revision", 0) == newest:
                out.update(AnalysisRun.from_json(doc).summary())
        return out

    def execute(
        self, action: AnalysisAction, rollout: models.Rollout, hashes: Mapping[int, str]
    ) -> None:
        """``hashes``: each revision's pod-template hash (``podTemplateHashValue``)."""
        match action:
            case actions.StartAnalysis():
                self.runner.start(action, rollout=rollout, hashes=hashes)
            case actions.StopAnalysis(run_id=run_id):
                self.runner.stop(run_id)
            case actions.CallWebhook():
                self.webhooks.call(
                    action, rollout=rollout.name, namespace=rollout.metadata.namespace
                )
            case actions.StopWebhook(call_id=call_id):
                self.webhooks.stop(call_id)

    async def run(self) -> None:
        """Step the runner once a second (measurements that are due start)."""
        while True:
            try:
                if self._runner is None and self.store.active_runs():
                    self.runner.step()  # runs left by an earlier process: resume them
                elif self._runner is not None:
                    self._runner.step()
            except Exception:
                log.exception("analysis step failed")
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.close()
        with contextlib.suppress(Exception):
            await self.webhooks.close()
        self.store.close()
