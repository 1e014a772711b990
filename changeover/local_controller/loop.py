"""The controller: the only loop that does I/O on behalf of the engine.

Each tick, for every rollout: observe the platform, hand the router the ready endpoints,
build a ``Context``, ask ``engine.plan`` for a plan, execute its actions, then persist the
new status and events in one transaction.

Why this order survives ``kill -9`` at any point: actions state desired state (see
``engine.actions``), so re-running a plan is harmless. The status is written only after
every action of a plan succeeded; a crash before that replays the same plan from the old
status on restart. A fresh router is first brought to the persisted ``status.traffic``
(``runners.router_actions``), so the data plane never disagrees with the status the engine
reasons from. The platform persists its own desired counts and replica PIDs and re-adopts
running replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from changeover import aio, errors
from changeover.analysis import sampler
from changeover.clock import Clock
from changeover.endpoints import Endpoint
from changeover.engine import actions, context
from changeover.engine import plan as engine_plan
from changeover.engine.status import RolloutStatus
from changeover.local_controller import local_executor
from changeover.local_controller.rollout_store import Store, StoredRollout
from changeover.platforms.base import HookState, Platform, Replica, ReplicaState, RevisionState
from changeover.runners import analysis_runner, router_actions
from changeover.runners.analysis_runner import AnalysisRunner
from changeover.runners.analysis_store import AnalysisStore
from changeover.runners.webhook_runner import WebhookRunner
from changeover.spec import models
from changeover.traffic.base import TrafficRouter

log = logging.getLogger(__name__)

# Failed readiness probes in a row of a replica that was never ready before an event says
# so: a service loading a model fails its first few probes as a matter of course.
STARTUP_PROBE_FAILURES = 10

# A factory that builds (but does not start) the router of one rollout.
RouterFactory = Callable[[models.Rollout], TrafficRouter]


@dataclass
class _Live:
    """What the controller keeps in memory about one rollout between ticks."""

    router: TrafficRouter
    backends: dict[int, tuple[Endpoint, ...]] = field(default_factory=dict)
    hook_ids: set[str] = field(default_factory=set)
    last_error: str = ""
    # Per replica id, the failure last told as an event (one event per new cause, not one
    # per restart of a crash loop).
    failures_told: dict[str, str] = field(default_factory=dict)


class Controller:
    def __init__(
        self,
        *,
        store: Store,
        platform: Platform,
        router_factory: RouterFactory,
        clock: Clock,
        tick_seconds: float = 0.1,
        metrics: sampler.Snapshotter | None = None,
    ) -> None:
        self.store = store
        self.platform = platform
        self._router_factory = router_factory
        self.clock = clock
        self._tick = tick_seconds
        self._live: dict[str, _Live] = {}
        # Errors of rollouts whose router could not start yet (a port in use): there is no
        # _Live to hold them, and they must still reach `status` and the events.
        self._start_errors: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # name → (generation, parsed spec): a spec is parsed once per generation, not per
        # tick (a 1.25 MB spec re-parsed every tick once starved everything else).
        self._specs: dict[str, tuple[int, models.Rollout]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Analysis runs and webhooks: started and stopped by the engine's actions, stepped
        # by this loop. ``metrics`` (the builtin router's registry) feeds the builtin
        # provider.
        self.analysis_store = AnalysisStore(store.path)
        self.analysis = AnalysisRunner(
            store=self.analysis_store,
            clock=clock,
            platform=platform,
            metrics=metrics,
            wake=self.wake,
        )
        self.webhooks = WebhookRunner(wake=self.wake)
        # More work each tick, beside the rollouts' (the flag rollouts of local_service).
        self.tickers: list[Callable[[], Awaitable[None]]] = []

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        await self.platform.start()
        self._task = asyncio.create_task(self._run(), name="changeover-controller")

    async def close(self, *, stop_routers: bool = True) -> None:
        """Stop the loop. Routers that run in processes of their own (they have
        ``detach``) keep serving unless ``stop_routers``; in-process ones always stop."""
        await aio.stop_loop(self._task)  # it may swallow one cancel (aio.stop_loop)
        for live in self._live.values():
            detach = getattr(live.router, "detach", None)
            with contextlib.suppress(errors.ChangeoverError, OSError):
                if detach is not None and not stop_routers:
                    await detach()
                else:
                    await live.router.close()
        self._live.clear()
        await self.analysis.close()
        await self.webhooks.close()
        self.analysis_store.close()

    def wake(self) -> None:
        """Run a tick now (a replica changed state, a user issued a command)."""
        self._wake.set()

    def lock(self, name: str) -> asyncio.Lock:
        """The lock that serializes a rollout's reconcile with user commands on it."""
        return self._locks.setdefault(name, asyncio.Lock())

    def router(self, name: str) -> TrafficRouter | None:
        live = self._live.get(name)
        return live.router if live is not None else None

    def last_error(self, name: str) -> str:
        live = self._live.get(name)
        return live.last_error if live is not None else self._start_errors.get(name, "")

    def routers(self) -> list[TrafficRouter]:
        return [live.router for live in self._live.values()]

    async def drain(self, endpoint: Endpoint, grace_seconds: float) -> None:
        """The platform's drainer: take ``endpoint`` out of every router that has it and
        wait, up to ``grace_seconds``, until its requests and streams in flight are done.

        Only this removes a terminating replica from a router (``_sync_backends`` keeps
        it until then): a router that has already forgotten an endpoint cannot wait for it.
        """
        lives = list(self._live.items())
        for _, live in lives:
            for revision, endpoints in list(live.backends.items()):
                if endpoint in endpoints:
                    live.backends[revision] = tuple(e for e in endpoints if e != endpoint)
        left = await asyncio.gather(
            *(live.router.drain(endpoint, grace_seconds) for _, live in lives)
        )
        for (name, _), cut in zip(lives, left, strict=True):
            if cut:
                self._tell_drain_timeout(name, endpoint, cut, grace_seconds)

    def _tell_drain_timeout(
        self, name: str, endpoint: Endpoint, cut: int, grace_seconds: float
    ) -> None:
        """A ``DrainTimedOut`` event: ``cut`` requests were still in flight on ``endpoint``
        when its grace period ended, so its SIGTERM cuts them."""
        replica, revision = f"at {endpoint}", None
        for rev, state in self.platform.observe(name).items():
            for r in state.replicas:
                if r.endpoint == endpoint:
                    replica, revision = f"{r.id} ({endpoint})", rev
        message = (
            f"replica {replica}: {cut} request(s) still in flight after the "
            f"{grace_seconds:g}s grace period; stopping it cuts them"
        )
        event = {"reason": "DrainTimedOut", "message": message, "revision": revision}
        with contextlib.suppress(errors.ChangeoverError):  # the rollout was deleted meanwhile
            self.store.add_events(name, [event], now=self.clock.now())

    def parsed(self, name: str) -> tuple[StoredRollout, models.Rollout] | None:
        """The stored rollout (without its spec document) and its parsed spec, parsed once
        per generation; None if there is no rollout ``name``."""
        head = self.store.get_rollout(name, spec=False)
        if head is None:
            self._specs.pop(name, None)
            return None
        cached = self._specs.get(name)
        if cached is None or cached[0] != head.generation:
            full = self.store.get_rollout(name)
            if full is None:
                return None
            cached = (full.generation, models.Rollout.model_validate(full.spec))
            self._specs[name] = cached
        return head, cached[1]

    async def forget(self, name: str) -> None:
        """Close the router of a deleted rollout."""
        self._locks.pop(name, None)
        self._specs.pop(name, None)
        self._start_errors.pop(name, None)
        self.analysis.forget(name)
        live = self._live.pop(name, None)
        if live is not None:
            forget = getattr(live.router, "forget", None)  # a router process: its files too
            await (forget() if forget is not None else live.router.close())

    # --- the loop -----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                self.analysis.step()
            except Exception:
                log.exception("analysis step failed")
            for ticker in self.tickers:
                try:
                    await ticker()
                except errors.ChangeoverError as exc:
                    log.warning("%s", exc)
                except Exception:
                    log.exception("tick of %s failed", ticker)
            for name in self.store.rollout_names():
                try:
                    await self.reconcile(name)
                except errors.ChangeoverError as exc:
                    self._note_error(name, str(exc))
                except Exception as exc:
                    log.exception("reconcile of %s failed", name)
                    self._note_error(name, f"internal error: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._tick)

    def _note_error(self, name: str, message: str) -> None:
        live = self._live.get(name)
        if self.last_error(name) != message:
            if live is not None:
                live.last_error = message
            else:
                self._start_errors[name] = message
            self.store.add_events(
                name,
                [{"reason": "ReconcileError", "message": message, "revision": None}],
                now=self.clock.now(),
            )

    async def reconcile(self, name: str) -> actions.Plan | None:
        """One observe → plan → act → persist pass over rollout ``name``."""
        found = self.parsed(name)
        if found is None:
            return None
        head, rollout = found
        try:
            live = await self._ensure_live(name, rollout, head.status)
        except errors.BackendError as exc:
            # A router that cannot bind (a port in use) must not freeze the rollout in
            # Progressing: the error goes to the status message and the deadline runs.
            self._note_error(name, str(exc))
            return await self._plan_blocked(name, rollout, str(exc))
        async with self.lock(name):
            # re-read: a command may have changed it
            stored = self.store.get_rollout(name, spec=False)
            if stored is None:
                return None
            status = RolloutStatus.model_validate(stored.status or {})
            await self._ensure_revisions(name, stored.revision, rollout, status)
            observed = self.platform.observe(name)
            await self._sync_backends(live, observed)
            self._tell_failures(name, live, observed)
            ctx = context.Context(
                rollout=rollout,
                revision=stored.revision,
                status=status,
                observations=self._with_runs(
                    self._observations(name, live.hook_ids, rollout, observed), status
                ),
                now=self.clock.now(),
            )
            plan = engine_plan.plan(ctx)
            runners = local_executor.Runners(
                analysis=self.analysis, webhooks=self.webhooks, spec=rollout
            )
            for action in plan.actions:
                if isinstance(action, actions.RunHook):
                    live.hook_ids.add(action.hook_id)
                await local_executor.execute(
                    action,
                    rollout=name,
                    platform=self.platform,
                    router=live.router,
                    runners=runners,
                )
            if plan.status != status or plan.events:
                events = [_event_json(e) for e in plan.events]
                self.store.put_status(
                    name,
                    plan.status.to_json_dict(),
                    events=events,
                    now=ctx.now,
                )
                if events:
                    self.webhooks.events(rollout, str(plan.status.phase), events)
                if plan.status.phase != status.phase and rollout.spec.notifications:
                    self.webhooks.phase_changed(
                        rollout,
                        previous=str(status.phase),
                        status=plan.status,
                        analysis=analysis_runner.latest(self.analysis_store, name)["analysis"],
                        now=ctx.now,
                    )
            live.last_error = ""
            return plan

    async def _ensure_live(self, name: str, rollout: models.Rollout, status: object) -> _Live:
        live = self._live.get(name)
        if live is not None:
            return live
        router = self._router_factory(rollout)
        start = getattr(router, "start", None)
        if start is not None:
            await start()
        if isinstance(status, dict):
            await router_actions.resync_router(router, RolloutStatus.model_validate(status).traffic)
        live = _Live(router=router)
        self._live[name] = live
        self._start_errors.pop(name, None)
        return live

    async def _ensure_revisions(
        self, name: str, target: int, rollout: models.Rollout, status: RolloutStatus
    ) -> None:
        """The platform must know the template of every revision the engine may scale."""
        wanted = {target, status.stable_revision, status.canary_revision}
        wanted |= {int(r) for r in status.traffic.weights}
        known = self.platform.observe(name)
        for revision in sorted(r for r in wanted if r is not None and r not in known):
            template = self.store.template(name, revision)
            if template is None:
                continue
            await self.platform.ensure_revision(
                rollout=name,
                revision=revision,
                template=models.ProcessTemplate.model_validate(template),
            )
        if target not in known:
            await self.platform.ensure_revision(
                rollout=name, revision=target, template=rollout.spec.process_template()
            )

    async def _sync_backends(self, live: _Live, observed: dict[int, RevisionState]) -> None:
        for revision, state in observed.items():
            had = live.backends.get(revision, ())
            ready = tuple(
                sorted(
                    r.endpoint
                    for r in state.replicas
                    if r.endpoint is not None
                    and (
                        r.state is ReplicaState.READY
                        # A replica on its way out stays until drain() takes it out.
                        or (r.state is ReplicaState.TERMINATING and r.endpoint in had)
                    )
                )
            )
            if live.backends.get(revision) != ready:
                await live.router.set_backends(revision, ready)
                live.backends[revision] = ready

    def _tell_failures(self, name: str, live: _Live, observed: dict[int, RevisionState]) -> None:
        """A ``ReplicaFailed`` event for each new crash cause, ``ReplicaUnhealthy`` for a
        readiness probe failing with a new message (3 times in a row once the replica was
        ready, ``STARTUP_PROBE_FAILURES`` while it starts): the reason reaches ``get`` and
        the events, not only serve's log. A crash loop with one cause is one event (the
        Degraded message counts the crashes)."""
        events: list[dict[str, object]] = []
        told: dict[str, str] = {}
        for revision, state in observed.items():
            for r in state.replicas:
                events += _failure_events(r, revision, live.failures_told, told)
        live.failures_told = told
        if events:
            self.store.add_events(name, events, now=self.clock.now())

    async def _plan_blocked(
        self, name: str, rollout: models.Rollout, reason: str
    ) -> actions.Plan | None:
        """Plan with ``Observations.blocked``: no action, only the message and the deadline."""
        async with self.lock(name):
            stored = self.store.get_rollout(name, spec=False)
            if stored is None:
                return None
            status = RolloutStatus.model_validate(stored.status or {})
            observed = self.platform.observe(name)
            observations = self._observations(name, set(), rollout, observed)
            ctx = context.Context(
                rollout=rollout,
                revision=stored.revision,
                status=status,
                observations=dataclasses.replace(observations, blocked=reason),
                now=self.clock.now(),
            )
            plan = engine_plan.plan(ctx)
            if plan.status != status or plan.events:
                events = [_event_json(e) for e in plan.events]
                self.store.put_status(name, plan.status.to_json_dict(), events=events, now=ctx.now)
            return plan

    def _observations(
        self,
        name: str,
        hook_ids: set[str],
        rollout: models.Rollout,
        observed: dict[int, RevisionState],
    ) -> context.Observations:
        now = self.clock.now()
        min_ready = rollout.spec.min_ready_seconds
        revisions = {}
        for revision, state in observed.items():
            ready = [r for r in state.replicas if r.state is ReplicaState.READY]
            available = [
                r for r in ready if r.ready_since is not None and now - r.ready_since >= min_ready
            ]
            revisions[revision] = context.RevisionObservation(
                revision=revision,
                desired=state.desired,
                ready=len(ready),
                available=len(available),
                restarts=sum(r.restarts for r in state.replicas),
                failures=max(
                    (r.failures for r in state.replicas if r.state is not ReplicaState.READY),
                    default=0,
                ),
                last_failure=_latest_failure(state),
                not_ready=next(
                    (
                        r.message
                        for r in state.replicas
                        if r.state is not ReplicaState.READY and r.message
                    ),
                    "",
                ),
                terminating=sum(r.state is ReplicaState.TERMINATING for r in state.replicas),
            )
        hooks = {}
        for hook_id in hook_ids:
            hook = self.platform.hook_status(rollout=name, hook_id=hook_id)
            if hook is not None:
                hooks[hook_id] = context.HookResult(
                    hook_id=hook_id,
                    state=_HOOK_STATES[hook.state],
                    message=hook.message,
                )
        return context.Observations(revisions=revisions, hooks=hooks)

    def _with_runs(
        self, observations: context.Observations, status: RolloutStatus
    ) -> context.Observations:
        """Add what the analysis and webhook runners say of the ids the status knows."""
        analysis = {
            rid: seen
            for rid in status.analysis_runs
            if (seen := self.analysis.observe(rid)) is not None
        }
        webhooks = {
            cid: call for cid in status.webhooks if (call := self.webhooks.observe(cid)) is not None
        }
        return dataclasses.replace(observations, analysis=analysis, webhooks=webhooks)


_HOOK_STATES: dict[HookState, context.HookStateName] = {
    HookState.RUNNING: "running",
    HookState.SUCCEEDED: "succeeded",
    HookState.FAILED: "failed",
}


def _failure_events(
    r: Replica, revision: int, before: dict[str, str], told: dict[str, str]
) -> list[dict[str, object]]:
    """The events replica ``r`` is owed, given what ``before`` says was told; records what
    is told now in ``told``."""
    events: list[dict[str, object]] = []
    crash_key, probe_key = f"{r.id}/crash", f"{r.id}/probe"
    told[crash_key] = r.last_failure
    if r.last_failure and before.get(crash_key) != r.last_failure:
        message = f"replica {r.id}: {r.last_failure} (restarts: {r.restarts})"
        events.append({"reason": "ReplicaFailed", "message": message, "revision": revision})
    # A replica still starting fails its first probes as a matter of course.
    enough = 3 if r.state is ReplicaState.NOT_READY else STARTUP_PROBE_FAILURES
    probing = r.probe_failures >= enough and r.message.startswith("readiness")
    told[probe_key] = r.message if probing else before.get(probe_key, "")
    if probing and before.get(probe_key) != r.message:
        message = f"replica {r.id}: {r.message}"
        events.append({"reason": "ReplicaUnhealthy", "message": message, "revision": revision})
    return events


def _latest_failure(state: RevisionState) -> str:
    """The newest crash among ``state``'s replicas, ``""`` if none crashed."""
    crashed = [r for r in state.replicas if r.last_failure]
    if not crashed:
        return ""
    return max(crashed, key=lambda r: r.last_failure_at or 0.0).last_failure


def _event_json(event: actions.Event) -> dict[str, object]:
    return {"reason": str(event.reason), "message": event.message, "revision": event.revision}
