"""Analysis runs and webhook gates for the operator, with the local controller's runners.

The engine asks for runs (``StartAnalysis``/``StopAnalysis``) and webhook calls
(``CallWebhook``/``StopWebhook``) on Kubernetes exactly as it does locally; this module
carries them out with ``runners.analysis_runner.AnalysisRunner`` and
``runners.webhook_runner.WebhookRunner`` and folds their verdicts into the
observations. Templates come from ``AnalysisTemplate`` resources (watched; validated with
the spec models, stored by name). Runs live in a SQLite file under the operator's state
directory (an ``emptyDir`` in the pod): a restarted replica goes on measuring them, a
failed-over one starts runs that were in flight again (the engine asks again; a run id is
started once per process). Prometheus and web providers measure as they do locally; the
job provider runs each measurement as a Kubernetes Job in the rollout's namespace
(``operator.analysis_job``), never inside the operator's pod; the builtin provider, which
reads the builtin router's counters, has none on Kubernetes. An argument's
``valueFrom.secretKeyRef`` is read from the Secret in the rollout's namespace just
before its run starts.

With ``--argo-rollouts`` Argo Rollouts' own AnalysisTemplates (argoproj.io, in the
watched namespaces) and ClusterAnalysisTemplates are watched too and converted as
``changeover import`` converts them. A changeover AnalysisTemplate of the same name in the
same namespace wins over an Argo one. A reference with ``clusterScope: true`` reads the
ClusterAnalysisTemplate of that name (stored for the run's namespace under
``ClusterAnalysisTemplate:NAME``, a name no namespaced template can have).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from changeover import errors, importers
from changeover.analysis import templates
from changeover.analysis.run import AnalysisRun
from changeover.clock import SystemClock
from changeover.engine import actions, context
from changeover.engine.status import RolloutStatus
from changeover.kube import client as kube
from changeover.operator import analysis_job
from changeover.operator.analysis_job import KubeJobProvider
from changeover.platforms.kubernetes import informer
from changeover.runners.analysis_runner import AnalysisRunner
from changeover.runners.analysis_store import AnalysisStore, scoped
from changeover.runners.webhook_runner import WebhookRunner
from changeover.spec import analysis as spec_analysis
from changeover.spec import models

log = logging.getLogger(__name__)
JSON = dict[str, Any]
# The store key prefix of a ClusterAnalysisTemplate's copy (':' is in no Kubernetes name).
CLUSTER_PREFIX = "ClusterAnalysisTemplate:"
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
        argo_rollouts: bool = False,
    ) -> None:
        directory = state_dir or Path(tempfile.mkdtemp(prefix="changeover-operator-"))
        self.store = AnalysisStore(directory / "analysis.db")
        self.client = client
        self.namespace = namespace
        # (namespace, Secret, key) → value, read just before a run that names it starts.
        self._secrets: dict[tuple[str, str, str], str] = {}
        self._wake = wake
        # Made on first use: the providers it loads cost ~75 MB, which an operator whose
        # rollouts have no analysis need not pay.
        self._runner: AnalysisRunner | None = None
        self.webhooks = WebhookRunner(wake=wake)
        self.templates = informer.Informer(
            client, kube.ANALYSIS_TEMPLATES, namespace=namespace, on_change=self._template
        )
        # Argo Rollouts' own templates (``--argo-rollouts``): namespaced and cluster-wide.
        self.argo_templates: list[informer.Informer] = []
        self._cluster: dict[str, JSON] = {}
        if argo_rollouts:
            self.argo_templates = [
                informer.Informer(
                    client,
                    kube.ARGO_ANALYSIS_TEMPLATES,
                    namespace=namespace,
                    on_change=self._argo_template,
                    on_delete=self._argo_template_deleted,
                ),
                informer.Informer(
                    client,
                    kube.ARGO_CLUSTER_ANALYSIS_TEMPLATES,
                    on_change=self._argo_template,
                    on_delete=self._argo_template_deleted,
                ),
            ]

    @property
    def runner(self) -> AnalysisRunner:
        if self._runner is None:
            client = self.client
            self._runner = AnalysisRunner(
                store=self.store,
                clock=SystemClock(),
                wake=self._wake,
                secret=self._secret,
                # A job runs as a Kubernetes Job in the rollout's namespace, never in here.
                provider_overrides={"job": lambda: KubeJobProvider(client)},
            )
        return self._runner

    def _secret(self, namespace: str, name: str, key: str) -> str:
        value = self._secrets.get((namespace, name, key))
        if value is None:
            raise templates.TemplateError(
                f"valueFrom.secretKeyRef: Secret {namespace}/{name} has no key {key!r} "
                "(or could not be read)",
                "args",
            )
        return value

    async def prepare(self, action: AnalysisAction, rollout: models.Rollout) -> None:
        """Read the Secrets a run about to start names in ``secretKeyRef`` arguments (the
        runner starts runs synchronously; it finds the values here)."""
        if not isinstance(action, actions.StartAnalysis):
            return
        namespace = rollout.metadata.namespace
        args = list(action.analysis.args)
        stored = self.store.templates()
        for ref in action.analysis.templates:
            doc = stored.get(scoped(ref.template_name, namespace))
            if ref.cluster_scope and ref.template_name in self._cluster:
                doc = self._cluster[ref.template_name]
            with contextlib.suppress(ValueError):
                if doc is not None:
                    args += spec_analysis.AnalysisTemplate.model_validate(doc).spec.args
        for arg in args:
            ref_ = arg.value_from.secret_key_ref if arg.value_from is not None else None
            if ref_ is None:
                continue
            try:
                secret = await self.client.get_or_none(kube.SECRETS, ref_.name, namespace=namespace)
            except errors.ChangeoverError as exc:
                log.warning("cannot read Secret %s/%s: %s", namespace, ref_.name, exc)
                continue
            data = (secret or {}).get("data") or {}
            if ref_.key in data:
                raw = base64.b64decode(str(data[ref_.key]))
                self._secrets[(namespace, ref_.name, ref_.key)] = raw.decode(errors="replace")

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

    def _argo_template(self, obj: JSON) -> None:
        meta = obj.get("metadata", {})
        if meta.get("deletionTimestamp"):
            return
        kind, name = str(obj.get("kind")), str(meta.get("name"))
        try:
            converted = importers.argo.analysis_template(obj, f"argoproj.io {kind}/{name}")
            template = spec_analysis.AnalysisTemplate.model_validate(
                {**converted.documents[0], "metadata": {"name": name}}
            )
        except (ValueError, TypeError, KeyError, AttributeError, errors.SpecError) as exc:
            log.warning("argoproj.io %s %s cannot be read: %s", kind, name, exc)
            return
        doc = template.to_json_dict()
        if kind == "ClusterAnalysisTemplate":
            self._cluster[name] = doc
            return
        namespace = str(meta.get("namespace") or "default")
        if self.templates.get(namespace, name) is not None:
            return  # changeover's own template of that name wins
        self.store.put_template(scoped(name, namespace), doc, now=SystemClock().now())

    def _argo_template_deleted(self, obj: JSON) -> None:
        meta = obj.get("metadata", {})
        name = str(meta.get("name"))
        if obj.get("kind") == "ClusterAnalysisTemplate":
            self._cluster.pop(name, None)
            return
        namespace = str(meta.get("namespace") or "default")
        if self.templates.get(namespace, name) is None:
            self.store.delete_template(scoped(name, namespace))

    def _cluster_scoped(self, analysis: spec_analysis.RolloutAnalysis, namespace: str) -> Any:
        """``analysis`` with each ``clusterScope`` reference pointed at the stored copy of
        that ClusterAnalysisTemplate; without one, the namespace's AnalysisTemplate of that
        name is used (``changeover import`` writes a ClusterAnalysisTemplate as one)."""
        refs = []
        for ref in analysis.templates:
            if ref.cluster_scope:
                key = f"{CLUSTER_PREFIX}{ref.template_name}"
                doc = self._cluster.get(ref.template_name)
                if doc is not None:
                    self.store.put_template(scoped(key, namespace), doc, now=SystemClock().now())
                    ref = ref.model_copy(update={"template_name": key})
            refs.append(ref)
        return analysis.model_copy(update={"templates": refs})

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
                if any(ref.cluster_scope for ref in action.analysis.templates):
                    analysis = self._cluster_scoped(action.analysis, rollout.metadata.namespace)
                    action = dataclasses.replace(action, analysis=analysis)
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
        """Step the runner once a second (measurements that are due start), after deleting
        the analysis Jobs an earlier operator process left (its measurements start again)."""
        await self._delete_leftover_jobs()
        while True:
            try:
                if self._runner is None and self.store.active_runs():
                    self.runner.step()  # runs left by an earlier process: resume them
                elif self._runner is not None:
                    self._runner.step()
            except Exception:
                log.exception("analysis step failed")
            await asyncio.sleep(1.0)

    async def _delete_leftover_jobs(self) -> None:
        try:
            doc = await self.client.list(
                kube.JOBS, namespace=self.namespace, label_selector=analysis_job.ROLLOUT_LABEL
            )
            for job in doc.get("items", []):
                meta = job["metadata"]
                await self.client.delete(
                    kube.JOBS, meta["name"], namespace=meta["namespace"], propagation="Background"
                )
                log.info(
                    "deleted analysis Job %s/%s left by an earlier operator",
                    meta["namespace"],
                    meta["name"],
                )
        except errors.ChangeoverError as exc:
            log.warning("cannot delete leftover analysis Jobs: %s", exc)

    async def close(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.close()
        with contextlib.suppress(Exception):
            await self.webhooks.close()
        self.store.close()
