"""A fake world for engine tests: observations, a clock, and a recording of every plan.

``FakeWorld`` plays the controller: it builds a ``Context``, calls ``engine.plan.plan``,
applies the actions to its observations (scaling is instant by default; with
``auto_ready=False`` replicas only become ready when the test says so), keeps the status,
and records actions, events and every phase change (checked against the phase table).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from changeover.engine import actions, phases
from changeover.engine import plan as engine_plan
from changeover.engine.context import (
    AnalysisResult,
    Context,
    HookResult,
    Observations,
    RevisionObservation,
    WebhookResult,
)
from changeover.engine.status import RolloutStatus
from changeover.spec import models

Phase = phases.Phase
Reason = actions.Reason


def rollout(strategy: dict[str, Any], **spec: Any) -> models.Rollout:
    """A Rollout from its camelCase strategy (and any other spec fields)."""
    return models.Rollout.model_validate(
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 4,
                "template": {"command": ["app", "--port", "$(PORT)"]},
                "service": {"port": 8080},
                "strategy": strategy,
                **spec,
            },
        }
    )


class FakeWorld:
    def __init__(
        self,
        spec: models.Rollout,
        *,
        revision: int = 1,
        auto_ready: bool = True,
        now: float = 1000.0,
    ) -> None:
        self.spec = spec
        self.revision = revision
        self.auto_ready = auto_ready
        self.now = now
        self.status = RolloutStatus()
        self.replicas: dict[int, RevisionObservation] = {}
        self.hooks: dict[str, HookResult] = {}
        self.analysis: dict[str, AnalysisResult] = {}
        self.webhooks: dict[str, WebhookResult] = {}
        self.actions: list[actions.Action] = []
        self.events: list[actions.Event] = []
        self.transitions: list[tuple[Phase, Phase]] = []
        self.last: actions.Plan | None = None

    # --- what the controller does ------------------------------------------------------

    def context(self) -> Context:
        observations = Observations(
            revisions=dict(self.replicas),
            hooks=dict(self.hooks),
            analysis=dict(self.analysis),
            webhooks=dict(self.webhooks),
        )
        return Context(
            rollout=self.spec,
            revision=self.revision,
            status=self.status,
            observations=observations,
            now=self.now,
        )

    def tick(self) -> actions.Plan:
        plan = engine_plan.plan(self.context())
        old, new = self.status.phase, plan.status.phase
        if old != new:
            assert phases.can_transition(old, new), f"illegal {old} → {new}"
            self.transitions.append((old, new))
        self.status = plan.status
        self.actions.extend(plan.actions)
        self.events.extend(plan.events)
        for action in plan.actions:
            self._apply(action)
        self.last = plan
        return plan

    def settle(self, max_ticks: int = 50) -> FakeWorld:
        """Tick until a plan asks for nothing; then check that one more tick is a no-op
        (idempotence: no new actions, no events, the same status)."""
        for _ in range(max_ticks):
            plan = self.tick()
            if not plan.actions and not plan.events:
                again = engine_plan.plan(self.context())
                assert again.actions == () and again.events == (), again
                assert again.status == self.status
                return self
        raise AssertionError(f"no quiescence after {max_ticks} ticks: {self.last}")

    def _apply(self, action: actions.Action) -> None:
        if isinstance(action, actions.ScaleRevision):
            seen = self.replicas.get(action.revision)
            ready = (
                action.replicas
                if self.auto_ready
                else min(seen.ready if seen else 0, action.replicas)
            )
            self.replicas[action.revision] = RevisionObservation(
                revision=action.revision, desired=action.replicas, ready=ready, available=ready
            )
        elif isinstance(action, actions.DeleteRevision):
            self.replicas.pop(action.revision, None)
        elif isinstance(action, actions.RunHook) and action.hook_id not in self.hooks:
            self.hooks[action.hook_id] = HookResult(hook_id=action.hook_id, state="running")
        elif isinstance(action, actions.StartAnalysis) and action.run_id not in self.analysis:
            self.analysis[action.run_id] = AnalysisResult(run_id=action.run_id, phase="Running")
        elif isinstance(action, actions.StopAnalysis):
            run = self.analysis.get(action.run_id)
            if run is not None and run.phase == "Running":  # a terminated run is Successful
                self.analysis[action.run_id] = AnalysisResult(
                    run_id=action.run_id, phase="Successful", message="terminated"
                )
        elif isinstance(action, actions.CallWebhook) and action.call_id not in self.webhooks:
            self.webhooks[action.call_id] = WebhookResult(call_id=action.call_id, state="waiting")
        elif isinstance(action, actions.StopWebhook):
            self.webhooks.pop(action.call_id, None)

    # --- what tests do -------------------------------------------------------------------

    def apply(self, spec: models.Rollout | None = None, *, revision: int) -> FakeWorld:
        """A new template (or an undo): the controller maps it to ``revision``."""
        if spec is not None:
            self.spec = spec
        self.revision = revision
        return self

    def advance(self, seconds: float) -> FakeWorld:
        self.now += seconds
        return self

    def ready(self, revision: int, count: int | None = None) -> FakeWorld:
        """Replicas of ``revision`` become ready and available (all desired by default)."""
        seen = self.replicas[revision]
        n = seen.desired if count is None else count
        self.replicas[revision] = RevisionObservation(
            revision=revision, desired=seen.desired, ready=n, available=n
        )
        return self

    def lose_replica(self, revision: int) -> FakeWorld:
        """The platform lost one replica and forgot it (desired drops too)."""
        seen = self.replicas[revision]
        n = max(seen.desired - 1, 0)
        self.replicas[revision] = RevisionObservation(
            revision=revision, desired=n, ready=min(seen.ready, n), available=min(seen.available, n)
        )
        return self

    def hook_result(
        self, point: str, state: Literal["succeeded", "failed"], message: str = ""
    ) -> FakeWorld:
        (hook_id,) = [
            h for h in self.hooks if f":{point}:" in h and self.hooks[h].state == "running"
        ]
        self.hooks[hook_id] = HookResult(hook_id=hook_id, state=state, message=message)
        return self

    def analysis_result(
        self,
        point: str,
        phase: Literal["Successful", "Failed", "Error", "Inconclusive"],
        message: str = "",
    ) -> FakeWorld:
        """The running analysis run at ``point`` (step2, background, ...) completes."""
        (run_id,) = [
            r
            for r, seen in self.analysis.items()
            if r.endswith(f"-{point}") and seen.phase == "Running"
        ]
        self.analysis[run_id] = AnalysisResult(run_id=run_id, phase=phase, message=message)
        return self

    def running_analysis(self) -> list[str]:
        return sorted(r for r, seen in self.analysis.items() if seen.phase == "Running")

    def webhook_result(
        self, kind: str, name: str, state: Literal["passed", "failed"], message: str = ""
    ) -> FakeWorld:
        """The webhook ``name`` of ``kind`` answers (a gate passes, a check fails...)."""
        (call_id,) = [
            c
            for c, seen in self.webhooks.items()
            if f"-{kind}" in c and c.endswith(f"-{name}") and seen.state == "waiting"
        ]
        self.webhooks[call_id] = WebhookResult(call_id=call_id, state=state, message=message)
        return self

    def command(self, fn: Callable[..., RolloutStatus], *args: Any, **kwargs: Any) -> FakeWorld:
        """A human runs promote/abort/... (engine.commands) on the stored status."""
        self.status = fn(self.status, *args, **kwargs)
        return self

    def clear(self) -> FakeWorld:
        """Forget recorded actions and events (the transcript starts here)."""
        self.actions.clear()
        self.events.clear()
        return self

    # --- what tests look at --------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.status.phase

    @property
    def weights(self) -> dict[int, int]:
        return {int(k): v for k, v in self.status.traffic.weights.items()}

    def desired(self, revision: int) -> int:
        seen = self.replicas.get(revision)
        return seen.desired if seen else 0

    def reasons(self) -> list[Reason]:
        return [e.reason for e in self.events]

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [a for a in self.actions if isinstance(a, kind)]
