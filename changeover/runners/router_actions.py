"""The engine's router actions on a ``TrafficRouter``, carried out the same way by both
controllers: ``apply`` one action of a plan; ``resync_router`` to bring a fresh router (after
a restart, or a rollout adopted) back to what the status says before the first plan runs.
"""

from __future__ import annotations

from changeover.engine import actions
from changeover.engine.status import TrafficState
from changeover.traffic.base import TrafficRouter


async def apply(router: TrafficRouter, action: actions.Action) -> bool:
    """Carry out ``action`` if it is a router action (True); False for any other kind."""
    match action:
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
        case actions.RemoveManagedRoutes():
            await router.remove_managed_routes()
        case _:
            return False
    return True


async def resync_router(router: TrafficRouter, traffic: TrafficState) -> None:
    """Re-apply a persisted ``TrafficState`` to a fresh router (after a restart), so the
    data plane says what the status says before the first plan runs."""
    if traffic.weights:
        await router.set_weight({int(k): v for k, v in traffic.weights.items()})
    for name, route in traffic.header_routes.items():
        await router.set_header_route(name, route.revision, route.match)
    if traffic.sticky is not None:
        await router.set_sticky_split(
            traffic.sticky.revision, traffic.sticky.user_key, traffic.sticky.weight
        )
    for name, mirror in traffic.mirrors.items():
        await router.set_mirror_route(name, mirror.revision, mirror.percentage, mirror.match)
    await router.set_preview(traffic.preview_revision)
    await router.set_maintenance(traffic.maintenance, 5)
