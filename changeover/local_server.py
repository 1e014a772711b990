"""``changeover serve``'s process: store, local platform, routers, controller and API.

``run_server`` wires the pieces and runs until SIGINT/SIGTERM. ``serve`` is the sync entry
point the CLI calls: it picks uvloop when installed (the router's speed depends on it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from changeover import aio, statedir, traffic
from changeover.api import server as api_server
from changeover.clock import SystemClock
from changeover.dataplane.remote import RemoteRouter
from changeover.endpoints import Endpoint
from changeover.local_controller.local_service import LocalService
from changeover.local_controller.loop import Controller, RouterFactory
from changeover.local_controller.rollout_store import Store
from changeover.loop_watchdog import LoopWatchdog
from changeover.platforms.local import LocalPlatform
from changeover.spec import models, traffic_settings
from changeover.statelock import StateDirLock
from changeover.traffic import builtin
from changeover.traffic.base import TrafficRouter

log = logging.getLogger(__name__)


# Routers that run in a router process of their own (``changeover.dataplane``) and so keep
# serving while ``serve`` is down or restarting; the Kubernetes ones live in the cluster.
PROCESS_ROUTERS = frozenset({"builtin", "haproxy"})


def router_config(rollout: models.Rollout, *, router_workers: int = 1) -> dict[str, object]:
    """The factory arguments of ``rollout``'s router (JSON-able: a router process gets them).

    ``router_workers`` > 1 runs each builtin router as that many processes on its port
    (``SO_REUSEPORT``, merged metrics; ``builtin.workers``). A rollout with a preview port
    keeps one process: the preview listener is not shared between workers.
    """
    name = rollout.spec.traffic.router
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
    return {
        "host": rollout.spec.service.host,
        "port": rollout.spec.service.port,
        "preview_port": preview_port,
        **extra,
    }


def router_factory(registry: builtin.Registry, *, router_workers: int = 1) -> RouterFactory:
    """Routers for rollouts, built in this process, all reporting into one metrics
    ``registry`` (``/metrics``); ``router_config`` says with what."""

    def build(rollout: models.Rollout) -> TrafficRouter:
        factory = traffic.base.factory_of(rollout.spec.traffic.router)
        kwargs = router_config(rollout, router_workers=router_workers)
        return factory(rollout.name, metrics=registry, **kwargs)

    return build


def process_router_factory(
    state_dir: Path, registry: builtin.Registry, *, router_workers: int = 1
) -> RouterFactory:
    """``router_factory``, but builtin and HAProxy routers run in router processes of their
    own (``dataplane.remote.RemoteRouter``) that outlive ``serve``."""
    local = router_factory(registry, router_workers=router_workers)

    def build(rollout: models.Rollout) -> TrafficRouter:
        name = rollout.spec.traffic.router
        if name not in PROCESS_ROUTERS:
            return local(rollout)
        return RemoteRouter(
            rollout.name,
            router=name,
            state_dir=state_dir,
            kwargs=router_config(rollout, router_workers=router_workers),
            metrics=registry,
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
    on_stopped: Callable[[str], None] | None = None,
    down_on_exit: bool = False,
    router_workers: int = 1,
    process_routers: bool = True,
) -> None:
    """Run until SIGINT or SIGTERM. ``on_ready`` gets the API URL once it is listening,
    ``on_stopped`` a sentence saying what was left running. Routers (in processes of their
    own unless ``process_routers`` is false) and replicas keep serving after ``serve``
    stops, unless ``down_on_exit``; ``router_workers``: processes per builtin router."""
    # Private (0700/0600, umask 077) before the database, logs or routers write anything.
    await asyncio.to_thread(statedir.secure, state_dir)
    lock = StateDirLock.acquire(state_dir)  # StateError if another serve has this state dir
    try:
        await _run_locked(
            lock,
            state_dir=state_dir,
            host=host,
            port=port,
            token=token,
            on_ready=on_ready,
            on_stopped=on_stopped,
            down_on_exit=down_on_exit,
            router_workers=router_workers,
            process_routers=process_routers,
        )
    finally:
        lock.release()


async def _run_locked(
    lock: StateDirLock,
    *,
    state_dir: Path,
    host: str,
    port: int,
    token: str,
    on_ready: Callable[[str], None] | None,
    on_stopped: Callable[[str], None] | None,
    down_on_exit: bool,
    router_workers: int,
    process_routers: bool,
) -> None:
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
    factory = (
        process_router_factory(state_dir, registry, router_workers=router_workers)
        if process_routers
        else router_factory(registry, router_workers=router_workers)
    )
    controller = Controller(
        store=store,
        platform=platform,
        router_factory=factory,
        clock=SystemClock(),
        metrics=registry,
    )
    service = LocalService(controller, metrics=registry)
    await controller.start()
    api = await api_server.start_api(service, host, port, token)
    # api.url, not host:port: a --listen port of 0 is the port the kernel picked.
    url = api.url
    lock.record(url=url)
    if on_ready is not None:
        on_ready(url)
    stop = aio.stop_on_signals()
    try:
        with LoopWatchdog(name="serve's event loop"):
            await stop.wait()
    finally:
        await api.close()
        routers = len(controller.routers())
        await controller.close(stop_routers=down_on_exit)
        replicas = platform.running_replicas()
        await platform.close(stop_replicas=down_on_exit)
        store.close()
        if on_stopped is not None:
            on_stopped(_stopped_message(routers, replicas, down_on_exit))


def _stopped_message(routers: int, replicas: int, down: bool) -> str:
    what = f"{routers} router(s) and {replicas} replica(s)"
    if down:
        return f"serve stopped, and with it {what} (--down-on-exit)"
    return (
        f"serve stopped; {what} keep serving (a new `changeover serve` on this state dir "
        "adopts them; `changeover down` stops them)"
    )


def serve(**kwargs: object) -> None:
    """Run ``run_server`` on uvloop when it is installed, else on asyncio's loop."""
    aio.run_fast(run_server(**kwargs))  # type: ignore[arg-type]
