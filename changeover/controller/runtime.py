"""``changeover serve``'s process: store, local platform, routers, controller and API.

``run_server`` wires the pieces and runs until SIGINT/SIGTERM. ``serve`` is the sync entry
point the CLI calls: it picks uvloop when installed (the router's speed depends on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from changeover import statedir, traffic
from changeover.api import server as api_server
from changeover.controller.clock import SystemClock
from changeover.controller.local import LocalService
from changeover.controller.loop import Controller, RouterFactory
from changeover.controller.store import Store
from changeover.endpoints import Endpoint
from changeover.platforms.local import LocalPlatform
from changeover.spec import models, traffic_settings
from changeover.traffic import builtin
from changeover.traffic.base import TrafficRouter

log = logging.getLogger(__name__)


def router_factory(registry: builtin.Registry, *, router_workers: int = 1) -> RouterFactory:
    """Routers for rollouts, all reporting into one metrics ``registry`` (``/metrics``).

    ``router_workers`` > 1 runs each builtin router as that many processes on its port
    (``SO_REUSEPORT``, merged metrics; ``builtin.workers``). A rollout with a preview port
    keeps one process: the preview listener is not shared between workers.
    """

    def build(rollout: models.Rollout) -> TrafficRouter:
        name = rollout.spec.traffic.router
        factory = traffic.base.factory_of(name)
        blue_green = rollout.spec.strategy.blue_green
        preview_port = blue_green.preview_port if blue_green is not None else None
        settings = rollout.spec.traffic.settings
        # The rollout's own traffic.builtin.workers beats serve --router-workers.
        workers = (
            settings.workers if isinstance(settings, traffic_settings.BuiltinSettings) else None
        ) or router_workers
        extra = _settings_kwargs(settings, exclude={"workers"})
        if name == "builtin" and workers > 1:
            if preview_port is None:
                extra["workers"] = workers
            else:
                log.warning(
                    "rollout %s has a preview port: its router runs as one process, not %d",
                    rollout.name,
                    workers,
                )
        return factory(
            rollout.name,
            host=rollout.spec.service.host,
            port=rollout.spec.service.port,
            preview_port=preview_port,
            metrics=registry,
            **extra,
        )

    return build


def _settings_kwargs(settings: BaseModel | None, *, exclude: set[str]) -> dict[str, object]:
    """``spec.traffic.<router>`` as keyword arguments of the router's factory (the
    settings models in ``spec.traffic_settings`` use the factories' parameter names), but
    for the ``exclude`` fields, which the caller decides."""
    if settings is None:
        return {}
    return settings.model_dump(exclude_none=True, exclude=exclude)


async def run_server(
    *,
    state_dir: Path,
    host: str,
    port: int,
    token: str,
    on_ready: Callable[[str], None] | None = None,
    stop_replicas_on_exit: bool = True,
    router_workers: int = 1,
) -> None:
    """Run until SIGINT or SIGTERM. ``on_ready`` gets the API URL once it is listening;
    ``router_workers``: processes per builtin router (see ``router_factory``)."""
    # Private (0700/0600, umask 077) before the database, logs or routers write anything.
    await asyncio.to_thread(statedir.secure, state_dir)
    store = Store(state_dir / "changeover.db")
    controller: Controller | None = None

    async def drain(endpoint: Endpoint, grace_seconds: float) -> None:
        if controller is not None:
            await controller.drain(endpoint, grace_seconds)

    def wake() -> None:
        if controller is not None:
            controller.wake()

    platform = LocalPlatform(state_dir, drainer=drain, on_change=wake)
    registry = builtin.Registry()
    controller = Controller(
        store=store,
        platform=platform,
        router_factory=router_factory(registry, router_workers=router_workers),
        clock=SystemClock(),
        metrics=registry,
    )
    service = LocalService(controller, metrics=registry)
    await controller.start()
    api = await api_server.start_api(service, host, port, token)
    # api.url, not host:port: a --listen port of 0 is the port the kernel picked.
    url = api.url
    if on_ready is not None:
        on_ready(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await api.close()
        await controller.close()
        await platform.close(stop_replicas=stop_replicas_on_exit)
        store.close()


def serve(**kwargs: object) -> None:
    """Run ``run_server`` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but optional in spirit
        asyncio.run(run_server(**kwargs))  # type: ignore[arg-type]
        return
    uvloop.run(run_server(**kwargs))  # type: ignore[arg-type]
