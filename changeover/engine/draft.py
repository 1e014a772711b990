"""A plan under construction: the scratchpad ``engine.plan`` and the strategies write to.

One ``Draft`` lives for one ``plan(ctx)`` call. Every helper compares the desired state with
what ``status.traffic`` and the observations already say, and records an action (with its
event) only when they differ. That is what makes planning level-triggered: planning again
with the resulting status and the updated observations asks for nothing new.

Scaling is collected per revision and emitted by ``finish``: scale-ups first, then traffic
and hook actions in the order they were asked for, then scale-downs, so that executing the
actions in order never sends traffic to replicas that are going away.
"""

from __future__ import annotations

from typing import Any, Literal

from changeover.engine import actions, phases
from changeover.engine.context import Context, RevisionObservation
from changeover.engine.status import (
    HeaderRouteState,
    MirrorState,
    PauseState,
    RolloutStatus,
    StickyState,
)
from changeover.spec import models

Phase = phases.Phase
Reason = actions.Reason
HookOutcome = Literal["pending", "passed", "failed"]


def describe_weights(weights: dict[int, int]) -> str:
    """'revision 1 80%, revision 2 20%'."""
    return ", ".join(f"revision {rev} {pct}%" for rev, pct in sorted(weights.items()))


class Draft:
    """The status being built, plus the actions and events recorded so far."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.status: RolloutStatus = ctx.status
        # Set by a strategy that waits on purpose (an A/B test's duration, a running hook):
        # such a wait is not a lack of progress.
        self.deliberate_wait = False
        # Analysis runs and webhook gates some strategy asked about in this plan; the others
        # are stopped and forgotten (``engine.runs.sweep``) unless ``keep_runs``.
        self.touched_runs: set[str] = set()
        self.touched_webhooks: set[str] = set()
        self.keep_runs = False
        self._actions: list[actions.Action] = []
        self._events: list[actions.Event] = []
        self._scales: dict[int, int] = {}

    # --- reading -----------------------------------------------------------------------

    @property
    def spec(self) -> models.RolloutSpec:
        return self.ctx.spec

    @property
    def now(self) -> float:
        return self.ctx.now

    @property
    def replicas(self) -> int:
        return self.ctx.spec.replicas

    @property
    def target(self) -> int:
        """The revision being rolled out (set by ``engine.plan`` before strategies run)."""
        return self.status.target_revision if self.status.target_revision is not None else 0

    @property
    def stable(self) -> int | None:
        return self.status.stable_revision

    def obs(self, revision: int) -> RevisionObservation:
        return self.ctx.observations.of(revision)

    def available(self, revision: int) -> int:
        return self.obs(revision).available

    def weights(self) -> dict[int, int]:
        return {int(rev): pct for rev, pct in self.status.traffic.weights.items()}

    # --- status and events ---------------------------------------------------------------

    def update(self, **changes: Any) -> None:
        self.status = self.status.model_copy(update=changes)

    def event(self, reason: actions.Reason, message: str, revision: int | None = None) -> None:
        self._events.append(actions.Event(reason=reason, message=message, revision=revision))

    def move_to(self, phase: Phase, message: str) -> None:
        """Change phase through the table (raises on an illegal edge) and set the message."""
        new = phases.transition(self.status.phase, phase)
        changes: dict[str, Any] = {"phase": new, "message": message}
        if new != Phase.DEGRADED:
            changes["deadline_exceeded"] = False
        self.update(**changes)

    def note(self, message: str) -> None:
        """A progress message; only while Progressing, so it never hides why a rollout is
        Paused, Aborted or Degraded."""
        if self.status.phase == Phase.PROGRESSING:
            self.update(message=message)

    def leave_pause(self, message: str) -> None:
        """Drop a step or promotion pause and go back to Progressing."""
        if self.status.pause is not None and self.status.pause.reason != "user":
            self.update(pause=None)
        if self.status.phase == Phase.PAUSED and self.status.pause is None:
            self.move_to(Phase.PROGRESSING, message)

    def pause_for(
        self, reason: Literal["step", "promotion", "inconclusive"], until: float | None, msg: str
    ) -> None:
        self.update(pause=PauseState(reason=reason, started_at=self.now, until=until))
        self.move_to(Phase.PAUSED, msg)
        self.event(Reason.PAUSED, msg, self.target)

    def take_promote(self) -> Literal["step", "full"] | None:
        """Consume a promote request (from ``engine.commands.promote``)."""
        request = self.status.promote
        if request is not None:
            self.update(promote=None)
            what = "fully promoted" if request == "full" else "promoted"
            self.event(Reason.PROMOTED, f"Rollout {what} by user", self.target)
        return request

    # --- replicas ------------------------------------------------------------------------

    def scale(self, revision: int, replicas: int) -> None:
        self._scales[revision] = replicas

    def act(self, action: actions.Action) -> None:
        """Record an action that changes no traffic or replicas (analysis, webhooks)."""
        self._actions.append(action)

    def delete(self, revision: int) -> None:
        self._actions.append(actions.DeleteRevision(revision=revision))

    def schedule_scale_down(self, revision: int, at: float) -> None:
        if str(revision) not in self.status.scale_down_at:
            self.update(scale_down_at={**self.status.scale_down_at, str(revision): at})

    def cancel_scale_down(self, revision: int) -> None:
        if str(revision) in self.status.scale_down_at:
            rest = {k: v for k, v in self.status.scale_down_at.items() if k != str(revision)}
            self.update(scale_down_at=rest)

    # --- traffic -------------------------------------------------------------------------

    def _traffic(self, action: actions.Action, message: str, **changes: Any) -> None:
        self._actions.append(action)
        self.update(traffic=self.status.traffic.model_copy(update=changes))
        reason = Reason.WEIGHT if isinstance(action, actions.SetWeight) else Reason.ROUTES
        self.event(reason, message)

    def set_weights(self, weights: dict[int, int]) -> None:
        wanted = {rev: pct for rev, pct in weights.items() if pct > 0}
        if wanted != self.weights():
            self._traffic(
                actions.SetWeight.of(wanted),
                f"traffic weights: {describe_weights(wanted)}",
                weights={str(rev): pct for rev, pct in sorted(wanted.items())},
            )

    def header_route(self, name: str, revision: int | None, match: list[models.RouteMatch]) -> None:
        routes = dict(self.status.traffic.header_routes)
        if revision is None or not match:
            if name in routes:
                del routes[name]
                action = actions.SetHeaderRoute(name=name, revision=None)
                self._traffic(action, f"header route {name} removed", header_routes=routes)
            return
        state = HeaderRouteState(revision=revision, match=list(match))
        if routes.get(name) != state:
            routes[name] = state
            action = actions.SetHeaderRoute(name=name, revision=revision, match=tuple(match))
            msg = f"header route {name}: matching requests go to revision {revision}"
            self._traffic(action, msg, header_routes=routes)

    def sticky(self, revision: int, user_key: models.UserKey, weight: int) -> None:
        state = StickyState(revision=revision, user_key=user_key, weight=weight)
        if self.status.traffic.sticky != state:
            action = actions.SetStickySplit(revision=revision, user_key=user_key, weight=weight)
            msg = f"sticky split: {weight}% of users go to revision {revision}"
            self._traffic(action, msg, sticky=state)

    def mirror(
        self,
        name: str,
        revision: int | None,
        percentage: int,
        match: list[models.RouteMatch],
        compare: models.MirrorCompare | None = None,
    ) -> None:
        mirrors = dict(self.status.traffic.mirrors)
        if revision is None or percentage <= 0:
            if name in mirrors:
                del mirrors[name]
                action = actions.SetMirror(name=name, revision=None)
                self._traffic(action, f"mirror {name} removed", mirrors=mirrors)
            return
        state = MirrorState(
            revision=revision, percentage=percentage, match=list(match), compare=compare
        )
        if mirrors.get(name) != state:
            mirrors[name] = state
            action = actions.SetMirror(
                name=name,
                revision=revision,
                percentage=percentage,
                match=tuple(match),
                compare=compare,
            )
            msg = f"mirror {name}: {percentage}% of requests copied to revision {revision}"
            self._traffic(action, msg, mirrors=mirrors)

    def remove_managed_routes(self) -> None:
        traffic = self.status.traffic
        if traffic.header_routes or traffic.sticky is not None or traffic.mirrors:
            self._traffic(
                actions.RemoveManagedRoutes(),
                "header routes, sticky split and mirrors removed",
                header_routes={},
                sticky=None,
                mirrors={},
            )

    def preview(self, revision: int | None) -> None:
        if self.status.traffic.preview_revision != revision:
            self._actions.append(actions.SetPreview(revision=revision))
            traffic = self.status.traffic.model_copy(update={"preview_revision": revision})
            self.update(traffic=traffic)
            where = f"revision {revision}" if revision is not None else "nothing"
            self.event(Reason.SWITCHED, f"preview service now serves {where}", revision)

    def maintenance(self, enabled: bool) -> None:
        if self.status.traffic.maintenance != enabled:
            self._actions.append(actions.SetMaintenance(enabled=enabled))
            self.update(traffic=self.status.traffic.model_copy(update={"maintenance": enabled}))

    # --- hooks ---------------------------------------------------------------------------

    def hook_id(self, point: str, revision: int) -> str:
        return f"{self.ctx.rollout.name}:{revision}:{point}:{self.status.attempt}"

    def hook(self, point: str, hook: models.Hook, revision: int) -> tuple[HookOutcome, str]:
        """Run ``hook`` once and report where it is: pending, passed (succeeded, or failed
        under ``failurePolicy: Ignore``) or failed; plus the hook's message."""
        hook_id = self.hook_id(point, revision)
        recorded = self.status.hooks.get(hook_id)
        result = self.ctx.observations.hooks.get(hook_id)
        message = result.message if result is not None else ""
        if recorded in ("succeeded", "failed"):
            return _outcome(recorded, hook), message
        if result is None or result.state == "running":
            if result is None:
                # Re-asking is harmless (the executor runs an id once) and survives a crash
                # between persisting the status and starting the hook.
                self._actions.append(actions.RunHook(hook_id=hook_id, hook=hook, revision=revision))
            if recorded is None:
                self.update(hooks={**self.status.hooks, hook_id: "running"})
                self.event(Reason.HOOK_STARTED, f"{point} hook started", revision)
            return "pending", message
        self.update(hooks={**self.status.hooks, hook_id: result.state})
        if result.state == "succeeded":
            self.event(Reason.HOOK_SUCCEEDED, f"{point} hook succeeded", revision)
        else:
            policy = "ignored (failurePolicy: Ignore)" if hook.failure_policy == "Ignore" else ""
            text = f"{point} hook failed: {result.message or 'no message'}"
            self.event(Reason.HOOK_FAILED, f"{text}; {policy}" if policy else text, revision)
        return _outcome(result.state, hook), message

    # --- the result ----------------------------------------------------------------------

    def finish(self) -> actions.Plan:
        ups: list[actions.Action] = []
        downs: list[actions.Action] = []
        scale_events: list[actions.Event] = []
        for revision, replicas in self._scales.items():
            current = self.obs(revision).desired
            if current == replicas:
                continue
            action = actions.ScaleRevision(revision=revision, replicas=replicas)
            (ups if replicas > current else downs).append(action)
            verb = "up" if replicas > current else "down"
            msg = f"scaled {verb} revision {revision} from {current} to {replicas}"
            scale_events.append(actions.Event(reason=Reason.SCALED, message=msg, revision=revision))
        return actions.Plan(
            status=self.status,
            actions=(*ups, *self._actions, *downs),
            events=(*self._events, *scale_events),
        )


def _outcome(state: str, hook: models.Hook) -> HookOutcome:
    if state == "succeeded" or hook.failure_policy == "Ignore":
        return "passed"
    return "failed"
