"""Bringing a fresh router back to what a rollout's status says, after a restart.

Both the local controller and the operator build new router objects when they start (or
adopt a rollout) and call ``resync_router`` before the first plan runs.
"""

from __future__ import annotations

from changeover.engine.status import TrafficState
from changeover.traffic.base import TrafficRouter


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
