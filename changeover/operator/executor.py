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
from changeover.runners import router_actions
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
    if await router_actions.apply(router, action):
        return
    match action:
        case actions.ScaleRevision(revision=revision, replicas=replicas):
            await platform.scale(obj, revision=revision, replicas=replicas)
        case actions.DeleteRevision(revision=revision):
            await platform.delete_revision(obj, revision=revision)
        case actions.RunHook(hook_id=hook_id, hook=hook):
            await hooks.start(obj, hook_id=hook_id, hook=hook, template=template)
