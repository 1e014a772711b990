"""Carries out the engine's actions against a platform and a router, idempotently.

Every action states desired state, so executing one that already holds changes nothing;
that is why the controller can re-run a whole plan after a crash. Called only by
``local_controller.loop``.
"""

from __future__ import annotations

from dataclasses import dataclass

from changeover import errors
from changeover.engine import actions
from changeover.platforms.base import Platform
from changeover.runners import router_actions
from changeover.runners.analysis_runner import AnalysisRunner
from changeover.runners.webhook_runner import WebhookRunner
from changeover.spec import models
from changeover.traffic.base import TrafficRouter


@dataclass(frozen=True)
class Runners:
    """Where analysis and webhook actions go, and the spec they are about."""

    analysis: AnalysisRunner
    webhooks: WebhookRunner
    spec: models.Rollout


async def execute(
    action: actions.Action,
    *,
    rollout: str,
    platform: Platform,
    router: TrafficRouter,
    runners: Runners | None = None,
) -> None:
    """Apply one action. Raises ``errors.BackendError`` if the backend refuses it."""
    if isinstance(
        action,
        actions.StartAnalysis | actions.StopAnalysis | actions.CallWebhook | actions.StopWebhook,
    ):
        if runners is None:
            raise errors.PermanentBackendError("this controller runs no analysis or webhooks")
        _run(action, runners)
        return
    if await router_actions.apply(router, action):
        return
    match action:
        case actions.ScaleRevision(revision=revision, replicas=replicas):
            await platform.scale(rollout=rollout, revision=revision, replicas=replicas)
        case actions.DeleteRevision(revision=revision):
            await platform.delete_revision(rollout=rollout, revision=revision)
        case actions.RunHook(hook_id=hook_id, hook=hook):
            await platform.start_hook(rollout=rollout, hook_id=hook_id, hook=hook)


def _run(
    action: actions.StartAnalysis
    | actions.StopAnalysis
    | actions.CallWebhook
    | actions.StopWebhook,
    runners: Runners,
) -> None:
    spec = runners.spec
    match action:
        case actions.StartAnalysis():
            runners.analysis.start(action, rollout=spec)
        case actions.StopAnalysis(run_id=run_id):
            runners.analysis.stop(run_id)
        case actions.CallWebhook():
            runners.webhooks.call(action, rollout=spec.name, namespace=spec.metadata.namespace)
        case actions.StopWebhook(call_id=call_id):
            runners.webhooks.stop(call_id)
