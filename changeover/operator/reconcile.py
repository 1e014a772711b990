"""One reconcile of one Rollout resource: observe → ``engine.plan`` → act → write status.

    1. parse the spec with the spec models (an invalid one: status says why, Warning event)
    2. the template's pod-template hash names the target revision: an existing ReplicaSet
       with that hash keeps its number, a new template gets ``lastRevision + 1`` and a
       ReplicaSet with 0 replicas
    3. observations: ready/available counts from the ReplicaSets, hook Jobs' states
    4. ``engine.plan`` (the same engine as the local platform, unchanged)
    5. the actions, in order (``operator.executor``)
    6. the new status, with the resourceVersion read in step 1: a user's promote or abort
       written meanwhile makes it fail (409) and the rollout is planned again from what the
       user wrote, so no command is lost; events are recorded only once the status is in.

A crash anywhere re-runs the same plan from the last written status: actions are desired
state, so nothing happens twice. Called by ``operator.runtime.Operator``, which hands each
reconcile what it may use as one ``ReconcileDeps`` (caches, clients, bookkeeping).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic

from changeover import errors
from changeover.engine import context
from changeover.engine import plan as engine_plan
from changeover.engine.phases import Phase
from changeover.engine.status import RolloutStatus
from changeover.kube import client as kube
from changeover.kube import names
from changeover.operator import documents, executor, operator_analysis
from changeover.operator.trace import SpecTrace
from changeover.platforms.kubernetes import informer
from changeover.platforms.kubernetes.events import EventRecorder
from changeover.platforms.kubernetes.hooks import JobHooks
from changeover.platforms.kubernetes.replicasets import KubePlatform
from changeover.runners import router_actions
from changeover.spec import models, pod
from changeover.traffic import kubernetes as kube_routers
from changeover.traffic.kubernetes import services as kube_services
from changeover.traffic.kubernetes.base import RouterContext
from changeover.traffic.kubernetes.router import KubeRouter

log = logging.getLogger(__name__)
JSON = dict[str, Any]
Key = tuple[str, str]


@dataclass
class LiveRouter:
    fingerprint: str
    router: KubeRouter


def _fingerprint(rollout: models.Rollout, uid: str) -> str:
    spec = rollout.spec
    return json.dumps(
        [
            uid,
            spec.router,
            spec.traffic.config,
            spec.service.to_json_dict(),
            spec.strategy.name,
            spec.strategy.blue_green.to_json_dict() if spec.strategy.blue_green else None,
        ],
        sort_keys=True,
    )


@dataclass(frozen=True)
class Parsed:
    """A rollout's spec as the models read it, with its pod template and hash: kept while
    the resource's generation, labels and annotations stay (status writes and watch echoes
    do not change them, so most reconciles skip the validation)."""

    uid: str
    generation: int
    metadata: tuple[JSON, JSON]
    rollout: models.Rollout
    template: pod.PodTemplate
    pod_hash: str
    router_fingerprint: str


def _parse(deps: ReconcileDeps, key: tuple[str, str], obj: JSON) -> Parsed:
    meta = obj["metadata"]
    uid, generation = str(meta.get("uid", "")), meta.get("generation")
    metadata = (meta.get("labels") or {}, meta.get("annotations") or {})
    cached = deps.parsed.get(key)
    if (
        cached is not None
        and generation is not None
        and (cached.uid, cached.generation, cached.metadata) == (uid, generation, metadata)
    ):
        return cached
    rollout = documents.parse_rollout(obj)
    template = rollout.spec.pod_template()
    parsed = Parsed(
        uid=uid,
        generation=int(generation or 0),
        metadata=metadata,
        rollout=rollout,
        template=template,
        pod_hash=names.template_hash(template.to_json_dict()),
        router_fingerprint=_fingerprint(rollout, uid),
    )
    if generation is not None:
        deps.parsed[key] = parsed
    return parsed


@dataclass
class Stats:
    reconciles: int = 0
    actions: int = 0
    errors: int = 0


@dataclass
class ReconcileDeps:
    """Everything a reconcile reads or writes besides the engine: the operator builds one
    and passes it to every ``reconcile``; nothing else of the operator is reachable."""

    client: kube.KubeClient
    rollouts: informer.Informer  # the Rollouts' cache; told of every status written
    platform: KubePlatform  # ReplicaSets: revisions, scaling, ready counts
    hooks: JobHooks  # recreate hooks as Jobs
    analysis: operator_analysis.OperatorAnalysis
    recorder: EventRecorder
    trace: SpecTrace
    clock: Callable[[], float]
    stats: Stats = field(default_factory=Stats)
    routers: dict[Key, LiveRouter] = field(default_factory=dict)  # kept while the config is
    parsed: dict[Key, Parsed] = field(default_factory=dict)  # kept while the generation is

    def forget(self, key: Key) -> None:
        """Drop what is kept for a deleted rollout."""
        self.routers.pop(key, None)
        self.parsed.pop(key, None)


async def reconcile(deps: ReconcileDeps, namespace: str, name: str) -> float | None:
    """Reconcile one rollout; the seconds after which to look again (None: on change only)."""
    obj = deps.rollouts.get(namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        deps.forget((namespace, name))
        await kube_services.release(deps.client, namespace, name)
        return None
    key, generation = (namespace, name), int(obj["metadata"].get("generation") or 0)
    try:
        parsed = _parse(deps, key, obj)
    except (pydantic.ValidationError, errors.SpecError) as exc:
        await _invalid(deps, obj, exc)
        return None
    rollout, template, pod_hash = parsed.rollout, parsed.template, parsed.pod_hash
    raw_status = obj.get("status") or {}
    status = RolloutStatus.model_validate(raw_status)
    revision = deps.platform.revision_of_hash(obj, pod_hash)
    known = deps.platform.revisions(obj)
    last = max([int(raw_status.get("lastRevision") or 0), *known])
    if revision is None:
        revision = last + 1
        await deps.platform.ensure_revision(
            obj,
            revision=revision,
            template=template,
            pod_hash=pod_hash,
            min_ready_seconds=rollout.spec.min_ready_seconds,
        )
        deps.trace.mark(key, "acted", generation=generation)
    last = max(last, revision)
    counts = deps.platform.observe(obj)
    hooks = {}
    for hook_id, state in status.hooks.items():
        if state == "running":
            found = deps.hooks.status(obj, hook_id)
            if found is not None:
                hooks[hook_id] = context.HookResult(
                    hook_id=hook_id, state=found[0], message=found[1]
                )
    analysis, webhooks = deps.analysis.observe(status)
    ctx = context.Context(
        rollout=rollout,
        revision=revision,
        status=status,
        observations=context.Observations(
            analysis=analysis,
            webhooks=webhooks,
            revisions={
                rev: context.RevisionObservation(
                    revision=rev, desired=c.desired, ready=c.ready, available=c.available
                )
                for rev, c in counts.items()
            },
            hooks=hooks,
        ),
        now=deps.clock(),
    )
    plan = engine_plan.plan(ctx)
    deps.trace.mark(key, "planned", generation=generation)
    router = await _router(deps, obj, parsed, status)
    for action in plan.actions:
        if isinstance(action, operator_analysis.AnalysisAction):
            await deps.analysis.prepare(action, rollout)
            deps.analysis.execute(action, rollout, {rev: c.pod_hash for rev, c in counts.items()})
            continue
        await executor.execute(
            action,
            obj=obj,
            template=template,
            platform=deps.platform,
            hooks=deps.hooks,
            router=router,
        )
        deps.trace.mark(key, "acted", generation=generation)
    body = documents.status_body(
        rollout=rollout,
        status=plan.status,
        counts=deps.platform.observe(obj),
        generation=int(obj["metadata"].get("generation") or 0),
        last_revision=last,
    )
    summary = deps.analysis.summary(rollout.name, rollout.metadata.namespace)
    if summary:
        body["analysis"] = summary
    if body != raw_status:
        await _write_status(deps, obj, body)
    deps.trace.close(key, generation)
    for event in plan.events:
        await deps.recorder.record(obj, str(event.reason), event.message)
    deps.stats.reconciles += 1
    deps.stats.actions += len(plan.actions)
    return _next_look(rollout, plan.status, deps.clock())


# How often an A/B test or shadow experiment with a duration is looked at (its end is
# ``step_started_at + duration``, which only the strategy knows).
EXPERIMENT_LOOK = 5.0
# A look at every rollout this often even when nothing is due: a safety net under the
# watches, like client-go's resync. Not shorter: at 1,000 rollouts a 5-second look at
# every waiting rollout was 200 plans a second, most of the operator's CPU.
RESYNC = 30.0


def _next_look(rollout: models.Rollout, status: RolloutStatus, now: float) -> float:
    """When the clock alone may change the plan: a timed pause, a scheduled scale-down,
    the progress deadline, an experiment's end. Watches wake us for everything else
    (ReplicaSets, hook Jobs, the rollout itself; analysis and webhooks call back)."""
    due = [status.pause.until] if status.pause is not None and status.pause.until else []
    due += list(status.scale_down_at.values())
    if status.phase == Phase.PROGRESSING and status.progress_at is not None:
        due.append(status.progress_at + rollout.spec.progress_deadline_seconds + 0.05)
    # Spread: rollouts created or changed together would otherwise all look at once.
    idle = RESYNC * random.uniform(0.8, 1.2)
    if status.phase == Phase.PROGRESSING and rollout.spec.strategy.name in ("abTest", "shadow"):
        idle = EXPERIMENT_LOOK
    soonest = min((t - now for t in due), default=None)
    return max(0.05, min(soonest, idle)) if soonest is not None else idle


async def _write_status(deps: ReconcileDeps, obj: JSON, body: JSON) -> None:
    deps.rollouts.remember(await deps.client.replace_status(kube.ROLLOUTS, obj, body))


async def _router(
    deps: ReconcileDeps, obj: JSON, parsed: Parsed, status: RolloutStatus
) -> KubeRouter:
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    fingerprint = parsed.router_fingerprint
    live = deps.routers.get(key)
    if live is not None and live.fingerprint == fingerprint:
        live.router.ctx.rollout.update(obj)
        return live.router
    rollout = parsed.rollout
    router = build_router(deps, obj, rollout)
    # A fresh router (operator start, or a changed router config) first says what the
    # status says, so the cluster's objects and the engine agree before the first plan.
    await router_actions.resync_router(router, status.traffic)
    deps.routers[key] = LiveRouter(fingerprint=fingerprint, router=router)
    return router


def build_router(deps: ReconcileDeps, obj: JSON, rollout: models.Rollout) -> KubeRouter:
    spec = rollout.spec
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    module = kube_routers.ROUTERS.get(spec.router)
    if module is None:
        raise errors.PermanentBackendError(
            f"router {spec.router!r} does not run on Kubernetes "
            f"(choose one of {', '.join(kube_routers.ROUTERS)})"
        )
    bg = spec.strategy.blue_green
    stable = names.stable_service(name, spec.service.name)
    if bg is not None and bg.active_service:
        stable = bg.active_service
    mesh = spec.traffic.chosen is not None
    template = spec.pod_template()

    def hash_of(revision: int) -> str | None:
        current = deps.rollouts.get(namespace, name) or obj
        rs = deps.platform.revisions(current).get(revision)
        return None if rs is None else rs["metadata"]["labels"].get(names.HASH_LABEL)

    def revision_of_hash(pod_hash: str) -> int | None:
        return deps.platform.revision_of_hash(deps.rollouts.get(namespace, name) or obj, pod_hash)

    ctx = RouterContext(
        client=deps.client,
        rollout=dict(obj),
        config=spec.traffic.config,
        stable_service=stable,
        canary_service=names.canary_service(name, spec.service.canary_name),
        preview_service=names.preview_service(name, bg.preview_service) if bg else "",
        port=spec.service.port,
        target_port=spec.service.target_port or template.container_port() or spec.service.port,
        hash_of=hash_of,
        revision_of_hash=revision_of_hash,
        split=mesh or spec.strategy.name in ("blueGreen", "abTest", "shadow"),
        with_canary_service=spec.strategy.name in ("canary", "abTest", "shadow"),
        manage_services=spec.service.managed,
    )
    router: KubeRouter = module.factory(ctx)
    return router


async def _invalid(deps: ReconcileDeps, obj: JSON, exc: Exception) -> None:
    if isinstance(exc, pydantic.ValidationError):
        lines = [
            f"spec.{'.'.join(str(p) for p in e['loc'][1:] if '[' not in str(p))}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        message = "invalid spec: " + "; ".join(lines)
    else:
        message = f"invalid spec: {exc}"
    raw = obj.get("status") or {}
    if raw.get("message") == message:
        return
    # The phase is the engine's alone: an invalid spec is reported beside it (``error``)
    # and the rollout carries on from where it was once the spec is fixed.
    body = {**raw, "message": message, "error": message}
    await _write_status(deps, obj, body)
    await deps.recorder.record(obj, "InvalidSpec", message)


def now() -> float:
    return time.time()
