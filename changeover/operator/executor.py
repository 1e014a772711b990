"""Carries out the engine's actions on Kubernetes: ReplicaSets (``KubePlatform``), hook
Jobs (``JobHooks``) and the rollout's router (``KubeRouter``). Every action states desired
state, so re-running a plan after a crash or a lost status write changes nothing twice.
Called only by ``operator.reconcile``.
"""

from __future__ import annotations

from typing import Any

from changeover.engine import actions
from changeover.platforms.kubernetes.hooks import JobHooks
from changeover.platforms.kubernetes.replicasets import KubePlatform
from changeover.spec import pod
from changeover.traffic.base import TrafficRouter

JSON = dict[str, Any]


async def execute(
    action: actions.Action,
    *,
    obj: JSON,
    template: pod.PodTemplate,
    platform: KubePlatform,
    hooks: JobHooks,
    router: TrafficRouter,
) -> None:
    match action:
        case actions.ScaleRevision(revision=revision, replicas=replicas):
            await platform.scale(obj, revision=revision, replicas=replicas)
        case actions.DeleteRevision(revision=revision):
            await platform.delete_revision(obj, revision=revision)
        case actions.SetWeight():
            await router.set_weight(action.as_dict())
        case actions.SetHeaderRoute(name=name, revision=revision, match=match):
            await router.set_header_route(name, revision, list(match))
        case actions.SetStickySplit(revision=revision, user_key=user_key, weight=weight):
            await router.set_sticky_split(revision, user_key, weight)
        case actions.SetMirror(name=name, revision=revision, percentage=pct, match=match):
            await router.set_mirror_route(name, revision, pct, list(match))
        case actions.SetPreview(revision=revision):
            await router.set_preview(revision)
        case actions.SetMaintenance(enabled=enabled, retry_after_seconds=retry_after):
            await router.set_maintenance(enabled, retry_after)
        case actions.RunHook(hook_id=hook_id, hook=hook):
            await hooks.start(obj, hook_id=hook_id, hook=hook, template=template)
        case actions.RemoveManagedRoutes():
            await router.remove_managed_routes()
