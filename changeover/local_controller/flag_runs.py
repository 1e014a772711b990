"""Analysis runs for flag rollouts on the local platform (``flags.flag_service.Runs``).

A flag rollout's analysis step judges the traffic of its ``target`` Rollout: the run is an
ordinary analysis run of that rollout (so it shows in its status too) against the revision
it serves, started on the controller's runner like a canary step's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from changeover.analysis.run import AnalysisRun
from changeover.engine import actions
from changeover.engine.status import RolloutStatus
from changeover.flags import progress
from changeover.local_controller.loop import Controller
from changeover.spec import analysis as spec_analysis

JSON = dict[str, Any]


class LocalFlagRuns:
    def __init__(self, controller: Controller) -> None:
        self._c = controller
        # (rollout, flag) → (the router object, the spec it was given): pushed again when
        # either changes (a router restarted or adopted is a new object).
        self._pushed: dict[tuple[str, str], tuple[int, JSON]] = {}

    async def route(self, wanted: dict[tuple[str, str], JSON]) -> None:
        """Give each rollout's router the flags it evaluates per request (``spec.router``)
        and take back the ones it no longer does."""
        for (rollout, name), (router_id, _) in list(self._pushed.items()):
            if (rollout, name) not in wanted:
                router = self._c.router(rollout)
                if router is not None and id(router) == router_id:
                    setter = getattr(router, "set_flag", None)
                    if setter is not None:
                        await setter(name, None)
                del self._pushed[rollout, name]
        for (rollout, name), spec in wanted.items():
            router = self._c.router(rollout)
            setter = getattr(router, "set_flag", None)
            if setter is None:
                continue  # not running yet, or a router that cannot (HAProxy)
            if self._pushed.get((rollout, name)) != (id(router), spec):
                await setter(name, spec)
                self._pushed[rollout, name] = (id(router), spec)

    def start(self, run_id: str, target: str, step: Any) -> None:
        found = self._c.parsed(target)
        if found is None:
            # Stored as an Error run, so the verdict outlives a restart of serve.
            refused = AnalysisRun.refused(
                run_id,
                target,
                f"the target rollout {target!r} does not exist",
                now=self._c.clock.now(),
                namespace="default",
            )
            self._c.analysis_store.put_run(refused.to_json(), completed=True)
            return
        stored, rollout = found
        status = RolloutStatus.model_validate(stored.status or {})
        revision = status.stable_revision or stored.revision
        action = actions.StartAnalysis(
            run_id=run_id,
            kind="step",
            analysis=step,
            revision=revision,
            stable_revision=revision,
        )
        self._c.analysis.start(action, rollout=rollout)

    def observe(self, run_id: str) -> tuple[str, str] | None:
        seen = self._c.analysis.observe(run_id)
        return (seen.phase, seen.message) if seen is not None else None

    # Webhooks: the controller's runner, as for rollouts (payload ``name`` is the flag's).

    def call_hook(self, call: progress.HookCall, *, flag: str, phase: str, revision: int) -> None:
        action = actions.CallWebhook(
            call_id=call.call_id, webhook=call.webhook, phase=phase, revision=revision
        )
        self._c.webhooks.call(action, rollout=flag, namespace="default")

    def stop_hook(self, call_id: str) -> None:
        self._c.webhooks.stop(call_id)

    def observe_hook(self, call_id: str) -> tuple[str, str] | None:
        seen = self._c.webhooks.observe(call_id)
        return (seen.state, seen.message) if seen is not None else None

    def post_events(
        self,
        hooks: Sequence[spec_analysis.Webhook],
        *,
        flag: str,
        phase: str,
        revision: int,
        events: Sequence[tuple[str, str]],
    ) -> None:
        said = [{"reason": r, "message": m, "revision": revision} for r, m in events]
        self._c.webhooks.post_events(
            hooks, name=flag, namespace="default", phase=phase, events=said
        )
