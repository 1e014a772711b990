"""``BuiltinRouter``: the embedded data plane for one rollout (a ``TrafficRouter``).

The controller of ``changeover serve`` builds one per rollout (through the registry in
``changeover.traffic``), ``await router.start()``, then drives it with the Protocol's
setters. Each setter builds a new routing table and swaps it in with one assignment, so
it is atomic for new requests and idempotent. The listener(s) serve
``proxy.ClientConnection``; a 1-second sweep closes idle keep-alive connections.

Upgraded (WebSocket) connections stay on the revision chosen when they opened. When a
table swap leaves their revision without any way to receive new connections (no weight,
header route, sticky split or preview), or ``drain`` is stopping their replica, each gets
``Settings.upgrade_drain`` seconds (on a replica: no more than its own grace) to close on
its own; the sweep then closes it, a WebSocket with a close frame each way (1001 Going
Away, ``tunnel.Tunnel.close``). A revision given traffic again before that keeps them.
The sweep also closes an upgraded connection idle for ``Settings.upgrade_idle`` seconds.

    router = BuiltinRouter("web", port=8080, preview_port=8081, metrics=registry)
    await router.start()
    await router.set_backends(1, [Endpoint("127.0.0.1", 9001)])
    await router.set_weight({1: 100})
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Mapping, Sequence

from changeover import aio, errors
from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic import base
from changeover.traffic.builtin import compare, mirror, proxy, table, tunnel
from changeover.traffic.builtin import metrics as metrics_mod
from changeover.traffic.builtin import state as state_mod
from changeover.traffic.builtin import workers as workers_mod
from changeover.traffic.comparison import comparators

log = logging.getLogger(__name__)

CAPABILITIES = base.SHIPPED["builtin"].capabilities


class BuiltinRouter:
    name = "builtin"
    capabilities: frozenset[base.Capability] = CAPABILITIES

    def __init__(
        self,
        rollout: str,
        *,
        host: str = "127.0.0.1",
        port: int,
        preview_port: int | None = None,
        metrics: metrics_mod.Registry | None = None,
        settings: state_mod.Settings | None = None,
        workers: int = 1,
        reuse_port: bool = False,
    ) -> None:
        self.rollout = rollout
        self.host = host
        self.port = port  # the bound port after start() (useful with port 0)
        self.preview_port = preview_port
        self.metrics_registry = metrics or metrics_mod.Registry()
        self.metrics = self.metrics_registry.rollout(rollout)
        self.settings = settings or state_mod.Settings()
        self.state = state_mod.ProxyState(rollout_metrics=self.metrics, settings=self.settings)
        self.mirror: mirror.Mirror | None = None
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None
        # workers > 1: the listener runs in N processes (builtin.workers); this object keeps
        # the routing state, forwards every setter, and merges the workers' metrics.
        self.workers_n = max(1, workers)
        self.reuse_port = reuse_port
        self._workers: list[workers_mod.Worker] = []
        self._reserved: socket.socket | None = None
        self._preset: list[tuple[str, tuple[object, ...]]] = []
        # Upgraded connections being drained: when the router closes each, and whether
        # that is fixed (its replica is stopping) or lifted if its revision is routed again.
        self._tunnel_deadlines: dict[tunnel.Tunnel, tuple[float, bool]] = {}
        # Listening sockets handed over by the router process this one replaces ("main",
        # "preview"): start() serves on them instead of binding, so no connection is refused.
        self.inherited: dict[str, socket.socket] = {}

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listener (and the preview listener). Raises PermanentBackendError."""
        loop = asyncio.get_running_loop()
        st = self.state
        if self.workers_n > 1:
            await self._start_workers()
            return
        self.mirror = mirror.Mirror(st)
        st.mirror = self.mirror
        st.comparer = compare.Comparer(
            self.metrics, room=self.mirror.has_room, charge=self.mirror.charge
        )
        self.port = await self._listen(self.port, preview=False)
        if self.preview_port is not None:
            self.preview_port = await self._listen(self.preview_port, preview=True)
        self.mirror.start()
        self._sweeper = loop.create_task(self._sweep())

    async def _start_workers(self) -> None:
        if self.preview_port is not None:
            raise errors.PermanentBackendError("a preview port needs workers=1")
        try:
            self._reserved = workers_mod.reserve_port(self.host, self.port)
        except OSError as exc:
            raise errors.PermanentBackendError(
                f"builtin router for {self.rollout!r} cannot listen on "
                f"{self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        self.port = int(self._reserved.getsockname()[1])
        self._workers = await workers_mod.start(
            self.rollout,
            self.host,
            self.port,
            self.settings,
            self.workers_n,
            self._preset,
            router_class=BuiltinRouter,
        )
        self._preset = []
        self._sweeper = asyncio.get_running_loop().create_task(self._merge_metrics())

    async def _merge_metrics(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.collect_metrics()
            except (ConnectionError, RuntimeError, TimeoutError) as exc:
                log.warning("builtin router %s: worker metrics: %s", self.rollout, exc)

    async def collect_metrics(self) -> None:
        """With workers: sum their metrics into ``self.metrics`` now (else a no-op)."""
        if self._workers:
            await workers_mod.collect(self._workers, self.metrics)

    async def _forward(self, method: str, *args: object) -> None:
        if self._workers:
            await workers_mod.broadcast(self._workers, method, *args)
        elif self.workers_n > 1 and method != "drain":
            # Set before start(): the workers apply these before they listen, so a router
            # process restarted from its stored routing serves it from the first request.
            self._preset.append((method, args))

    async def _listen(self, port: int, *, preview: bool) -> int:
        loop = asyncio.get_running_loop()
        st = self.state
        inherited = self.inherited.get("preview" if preview else "main")
        try:
            if inherited is not None:
                server = await loop.create_server(
                    lambda: proxy.ClientConnection(st, preview=preview),
                    sock=inherited,
                    backlog=1024,
                )
            else:
                server = await loop.create_server(
                    lambda: proxy.ClientConnection(st, preview=preview),
                    self.host,
                    port,
                    reuse_address=True,
                    reuse_port=self.reuse_port or None,
                    backlog=1024,
                )
        except OSError as exc:
            await self.close()
            what = "preview port" if preview else "port"
            raise errors.PermanentBackendError(
                f"builtin router for {self.rollout!r} cannot listen on "
                f"{self.host}:{port} ({what} {port}): {exc.strerror or exc}"
            ) from exc
        self._servers.append(server)
        sock: socket.socket = server.sockets[0]
        return int(sock.getsockname()[1])

    def listening_fds(self) -> dict[str, int]:
        """The listeners' descriptors (``main``, ``preview``) a successor can take over;
        empty with workers (their successor binds beside them with ``SO_REUSEPORT``)."""
        out: dict[str, int] = {}
        for server in self._servers[:2]:
            sock = server.sockets[0]
            port = int(sock.getsockname()[1])
            out["main" if port == self.port else "preview"] = sock.fileno()
        return out

    async def close(self) -> None:
        """Stop listening; in-flight requests finish (bounded by the drain grace)."""
        if self._workers or self._reserved is not None:
            if self._sweeper is not None:
                await aio.cancel_and_wait(self._sweeper)
                self._sweeper = None
            with contextlib.suppress(Exception):
                await self.collect_metrics()
            workers, self._workers = self._workers, []
            await workers_mod.stop(workers)
            if self._reserved is not None:
                self._reserved.close()
                self._reserved = None
            return
        for server in self._servers:
            server.close()
        for t in list(self.state.tunnels):  # WebSockets: 1001 Going Away, then closed
            t.close(b"router stopping", drained=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_grace
        # Polling is fine here: close() runs once, and a 20 ms step is invisible.
        while any(not c.idle() for c in self.state.connections) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        for conn in list(self.state.connections):
            conn.close(linger=False)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers = []
        if self._sweeper is not None:
            await aio.cancel_and_wait(self._sweeper)
            self._sweeper = None
        if self.mirror is not None:
            await self.mirror.close()
        if self.state.comparer is not None:
            self.state.comparer.close()
        self.state.pool.close()

    async def _sweep(self) -> None:
        """Response timeouts (checked every ``tick``), and once a second: idle keep-alive
        connections, upstream and client, closed after their idle lifetimes."""
        st = self.state
        loop = asyncio.get_running_loop()
        se = st.settings
        shortest = min(se.response_timeout, se.header_timeout, se.body_timeout, se.send_timeout)
        tick = min(1.0, max(0.01, shortest / 4))
        next_idle = loop.time() + 1.0
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for client in list(st.connections):
                client.check_timeouts(now)
            if st.tunnels:
                self._drain_tunnels(now)
            if self.mirror is not None:
                self.mirror.sweep(now)
            if st.comparer is not None:
                st.comparer.sweep(now)
            if now < next_idle:
                continue
            next_idle = now + 1.0
            for ep in st.pool.all_states():
                for conn in list(ep.idle):
                    conn.idle_ticks += 1
                    if conn.idle_ticks >= st.settings.upstream_idle:
                        ep.forget(conn)
                        conn.close()
            for t in list(st.tunnels):
                t.tick(se.upgrade_idle)
            for client in list(st.connections):
                if client.idle():
                    client.idle_ticks += 1
                    if client.idle_ticks >= st.settings.client_idle:
                        client.close()

    # -- TrafficRouter ------------------------------------------------------------------

    def _swap(self, new: table.RoutingTable) -> None:
        self.state.table = new  # the one assignment that makes every setter atomic
        if self.state.tunnels:
            self._drain_tunnels(asyncio.get_running_loop().time())

    def _drain_tunnels(self, now: float) -> None:
        """Start, lift or end the drain of each upgraded connection (module docstring)."""
        tbl = self.state.table
        routed = {rev for rev, _ in tbl.weights} | {r.revision for r in tbl.header_routes}
        if tbl.sticky is not None and tbl.sticky.weight > 0:
            routed.add(tbl.sticky.revision)
        if tbl.preview is not None and self.preview_port is not None:
            routed.add(tbl.preview)
        deadlines = self._tunnel_deadlines
        grace = self.settings.upgrade_drain
        for t in list(self.state.tunnels):
            found = deadlines.get(t)
            if found is None:
                if t.revision not in routed:
                    deadlines[t] = (now + grace, False)
                    if grace <= 0:
                        t.close()
            elif now >= found[0]:
                t.close()
            elif not found[1] and t.revision in routed:
                del deadlines[t]  # its revision takes new connections again
        for t in [t for t in deadlines if t.done]:
            del deadlines[t]

    def _drain_endpoint_tunnels(self, endpoint: Endpoint, grace_seconds: float) -> None:
        """A replica is stopping: its upgraded connections close within the shorter of
        the upgrade drain and the replica's grace (before its SIGTERM would cut them)."""
        loop = asyncio.get_running_loop()
        at = loop.time() + min(self.settings.upgrade_drain, grace_seconds)
        for t in list(self.state.tunnels):
            ep = t.ep
            if ep is None or ep.endpoint != endpoint:
                continue
            found = self._tunnel_deadlines.get(t)
            self._tunnel_deadlines[t] = (min(at, found[0]) if found else at, True)
        self._drain_tunnels(loop.time())

    async def set_weight(self, weights: Mapping[int, int]) -> None:
        if any(w < 0 for w in weights.values()) or sum(weights.values()) not in (0, 100):
            # A caller bug (the engine's weight arithmetic), not something to retry.
            raise errors.PermanentBackendError(
                f"weights must be 0..100 and sum to 100, got {dict(weights)}"
            )
        self._swap(self.state.table.with_weights(weights))
        await self._forward("set_weight", dict(weights))

    async def verify_weight(self, weights: Mapping[int, int]) -> bool:
        want = tuple(sorted((r, w) for r, w in weights.items() if w > 0))
        return self.state.table.weights == want

    def weights(self) -> dict[int, int]:
        return dict(self.state.table.weights)

    async def set_header_route(
        self, name: str, revision: int | None, match: Sequence[models.RouteMatch]
    ) -> None:
        tbl = self.state.table
        routes = [r for r in tbl.header_routes if r.name != name]
        if revision is not None and match:
            new = table.HeaderRoute(name, revision, table.compile_matchers(match))
            # Keep the route's place when it is updated, so order stays as first set.
            old_index = next((i for i, r in enumerate(tbl.header_routes) if r.name == name), None)
            routes.insert(len(routes) if old_index is None else old_index, new)
        self._swap(tbl.replace(header_routes=tuple(routes)))
        await self._forward("set_header_route", name, revision, list(match))

    async def set_sticky_split(
        self, revision: int | None, user_key: models.UserKey | None, weight: int
    ) -> None:
        sticky = None
        if revision is not None and user_key is not None:
            sticky = table.StickySplit(
                revision=revision,
                header=user_key.header.lower().encode() if user_key.header else None,
                cookie=user_key.cookie.encode() if user_key.cookie else None,
                weight=max(0, min(100, weight)),
            )
        self._swap(self.state.table.replace(sticky=sticky))
        await self._forward("set_sticky_split", revision, user_key, weight)

    async def set_mirror_route(
        self,
        name: str,
        revision: int | None,
        percentage: int,
        match: Sequence[models.RouteMatch],
        compare: models.MirrorCompare | None = None,
    ) -> None:
        tbl = self.state.table
        mirrors = [m for m in tbl.mirrors if m.name != name]
        if revision is not None and percentage > 0:
            mirrors.append(
                table.MirrorRoute(
                    name=name,
                    revision=revision,
                    percentage=min(100, percentage),
                    matchers=table.compile_matchers(match),
                    compare=_route_compare(self.rollout, name, compare),
                )
            )
        self._swap(tbl.replace(mirrors=tuple(mirrors)))
        await self._forward("set_mirror_route", name, revision, percentage, list(match), compare)

    async def set_flag(self, name: str, spec: dict[str, object] | None) -> None:
        """Evaluate flag ``name`` (its served spec, camelCase, with ``router``) on every
        request and pass the variant upstream in ``router.header``; None stops. A spec the
        model refuses is a PermanentBackendError, and the table is left as it was."""
        flags = [f for f in self.state.table.flags if f.name != name]
        if spec is not None:
            flags.append(_flag_route(name, spec))
        self._swap(self.state.table.replace(flags=tuple(flags)))
        await self._forward("set_flag", name, spec)

    async def set_preview(self, revision: int | None) -> None:
        """Without a preview port the revision is only remembered (nothing listens)."""
        self._swap(self.state.table.replace(preview=revision))
        await self._forward("set_preview", revision)

    async def set_maintenance(self, enabled: bool, retry_after_seconds: int) -> None:
        retry = max(0, int(retry_after_seconds)) if enabled else None
        self._swap(self.state.table.replace(maintenance_retry_after=retry))
        await self._forward("set_maintenance", enabled, retry_after_seconds)

    async def remove_managed_routes(self) -> None:
        self._swap(self.state.table.replace(header_routes=(), sticky=None, mirrors=()))
        await self._forward("remove_managed_routes")

    async def set_backends(self, revision: int, endpoints: Sequence[Endpoint]) -> None:
        self.state.pool.set_backends(revision, endpoints)
        await self._forward("set_backends", revision, list(endpoints))

    async def drain(self, endpoint: Endpoint, grace_seconds: float) -> int:
        """Take ``endpoint`` out and wait up to ``grace_seconds`` for its requests in flight
        (those begun before an earlier ``set_backends`` removed it too); how many were still
        in flight when the grace period ended (summed over workers)."""
        if self._workers:
            cut = await workers_mod.broadcast(
                self._workers,
                "drain",
                endpoint,
                grace_seconds,
                limit=grace_seconds + workers_mod.CALL_TIMEOUT,
            )
            for revision, rp in list(self.state.pool.revisions.items()):
                kept = [ep.endpoint for ep in rp.endpoints if ep.endpoint != endpoint]
                self.state.pool.set_backends(revision, kept)
            left = sum(int(n or 0) for n in cut)
        else:
            self._drain_endpoint_tunnels(endpoint, grace_seconds)
            left = await self.state.pool.drain(endpoint, grace_seconds)
        if left:
            log.warning(
                "builtin router %s: %s still had %d request(s) in flight after %.1fs of drain",
                self.rollout,
                endpoint,
                left,
                grace_seconds,
            )
        return left

    # -- introspection ------------------------------------------------------------------

    def backends(self) -> dict[int, list[Endpoint]]:
        return {
            rev: [ep.endpoint for ep in rp.endpoints]
            for rev, rp in sorted(self.state.pool.revisions.items())
        }

    async def mirror_idle(self) -> None:
        """Wait until queued mirror copies have been sent and compared (for tests)."""
        if self.mirror is not None:
            await self.mirror.idle()
        if self.state.comparer is not None:
            await self.state.comparer.idle()


def _route_compare(
    rollout: str, name: str, spec: models.MirrorCompare | None
) -> compare.RouteCompare | None:
    """The router's side of a ``compare`` block; a comparator that cannot be loaded is
    a permanent error naming it (retrying would not make the module appear)."""
    if spec is None:
        return None
    try:
        return compare.RouteCompare(spec)
    except comparators.ComparatorError as exc:
        raise errors.PermanentBackendError(
            f"builtin router for {rollout!r}, mirror {name!r}: {exc}"
        ) from None


# ``spec.traffic.builtin`` fields (``traffic_settings.BuiltinSettings``) → ``Settings``.
SPEC_SETTINGS = {
    "connect_timeout_seconds": "connect_timeout",
    "response_timeout_seconds": "response_timeout",
    "header_timeout_seconds": "header_timeout",
    "body_timeout_seconds": "body_timeout",
    "send_timeout_seconds": "send_timeout",
    "max_connections": "max_connections",
    "websocket_drain_seconds": "upgrade_drain",
    "websocket_idle_timeout_seconds": "upgrade_idle",
}


def factory(rollout: str, **kwargs: object) -> BuiltinRouter:
    """The registry's factory: ``factory("web", port=8080, preview_port=None, metrics=r)``;
    the ``SPEC_SETTINGS`` keywords (from ``spec.traffic.builtin``) become its ``Settings``."""
    tuned = {field: kwargs.pop(key) for key, field in SPEC_SETTINGS.items() if key in kwargs}
    if tuned:
        kwargs["settings"] = state_mod.Settings(**tuned)  # type: ignore[arg-type]
    return BuiltinRouter(rollout, **kwargs)  # type: ignore[arg-type]


def _flag_route(name: str, spec: dict[str, object]) -> table.FlagRoute:
    from changeover.flags import evaluate  # plain Python, kept out of the compiled modules
    from changeover.spec import flag as spec_flag

    try:
        parsed = spec_flag.FlagSpec.model_validate(spec)
    except ValueError as exc:
        raise errors.PermanentBackendError(f"flag {name!r}: {exc}") from None
    if parsed.router is None:
        raise errors.PermanentBackendError(f"flag {name!r} has no router.header to set")
    context = tuple(
        (
            attribute,
            key.header.lower().encode() if key.header else None,
            key.cookie.encode() if key.cookie else None,
        )
        for attribute, key in parsed.request_context.items()
    )
    return table.FlagRoute(
        name=name,
        header=parsed.router.header.lower().encode(),
        flag=evaluate.compile_flag(parsed),
        context=context,
    )
