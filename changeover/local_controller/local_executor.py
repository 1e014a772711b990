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
    match action:
        case actions.ScaleRevision(revision=revision, replicas=replicas):
            await platform.scale(rollout=rollout, revision=revision, replicas=replicas)
        case actions.DeleteRevision(revision=revision):
            await platform.delete_revision(rollout=rollout, revision=revision)
        case actions.SetWeight():
            await router.set_weight(action.as_dict())
        case actions.SetHeaderRoute(name=name, revision=revision, match=match):
            await router.set_header_route(name, revision, list(match))
        case actions.SetStickySplit(revision=revision, user_key=user_key, weight=weight):
            await router.set_sticky_split(revision, user_key, weight)
        case actions.SetMirror(name=name, revision=revision, percentage=pct, match=match):
            if action.compare is None:
                await router.set_mirror_route(name, revision, pct, list(match))
            else:
                await router.set_mirror_route(name, revision, pct, list(match), action.compare)
        case actions.SetPreview(revision=revision):
            await router.set_preview(revision)
        case actions.SetMaintenance(enabled=enabled, retry_after_seconds=retry_after):
            await router.set_maintenance(enabled, retry_after)
        case actions.RunHook(hook_id=hook_id, hook=hook):
            await platform.start_hook(rollout=rollout, hook_id=hook_id, hook=hook)
        case actions.RemoveManagedRoutes():
            await router.remove_managed_routes()


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
