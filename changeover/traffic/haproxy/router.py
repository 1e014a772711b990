"""``HAProxyRouter``: a managed HAProxy as the data plane of one rollout (a ``TrafficRouter``).

Selected by ``traffic: {haproxy: {}}`` in a Rollout; the controller builds it through the
registry in ``changeover.traffic`` exactly as it builds the builtin router, awaits
``start()``, then drives it with the Protocol's setters. changeover is not on the request
path: HAProxy serves ``service.port`` (and the preview port), and every setter changes
HAProxy's state over its runtime API without a reload (``haproxy.config`` says how each
feature is data, not configuration). A reload happens only when the configuration must grow:
the first route on a header or cookie name HAProxy has no rule for, a sticky key on a new
name, or more revisions or replicas than the pre-allocated slots.

    router = HAProxyRouter("web", port=8080, preview_port=None, metrics=registry)
    await router.start()                       # renders haproxy.cfg, starts HAProxy
    await router.set_backends(1, [Endpoint("127.0.0.1", 9001)])
    await router.set_weight({1: 90, 2: 10})    # set server w/b0s0 weight 90, ...

Weights are exact: HAProxy's weighted round-robin over one backend of every replica, each
weighted with its share of its revision's weight, so every 100 consecutive weighted
requests carry exactly the set weights, spread evenly (requests taken by a header route or
the sticky split are not counted); only the round in progress when the weights change
may be off by one request. Mirroring is not offered: HAProxy 2.6 has
no native request mirroring, so ``capabilities`` omits it and validation says so at lint time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from changeover import aio, errors
from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic import base
from changeover.traffic.builtin import metrics as metrics_mod
from changeover.traffic.haproxy import config, desired, haproxy_process, metrics_feed

log = logging.getLogger(__name__)

CAPABILITIES = base.SHIPPED["haproxy"].capabilities

# How long close() waits for the metrics poll to stop, and for the last stats read (s).
CLOSE_WAIT = 5.0


def default_state_dir(rollout: str, host: str, port: int) -> Path:
    """A short, per-(rollout, address) directory: Unix socket paths must stay under 108
    bytes, and a fixed place lets a restarted changeover find and stop a stale HAProxy."""
    key = hashlib.sha1(f"{rollout}\0{host}\0{port}".encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"changeover-haproxy-{os.getuid()}" / key


class HAProxyRouter:
    name = "haproxy"
    capabilities: frozenset[base.Capability] = CAPABILITIES

    def __init__(
        self,
        rollout: str,
        *,
        host: str = "127.0.0.1",
        port: int,
        preview_port: int | None = None,
        metrics: metrics_mod.Registry | None = None,
        state_dir: str | Path | None = None,
        binary: str | None = None,
        nbthread: int | None = None,
        cpu: int | None = None,
        timed_per_second: int = 200,
        slots: int = 4,
        servers: int = 16,
        stats_interval: float = 1.0,
        sample_memory: float = 60.0,
    ) -> None:
        self.rollout = rollout
        self.host = host
        self.port = port  # the bound port after start() (a free one is picked for 0)
        self.preview_port = preview_port
        self.metrics_registry = metrics or metrics_mod.Registry()
        self.metrics = self.metrics_registry.rollout(rollout)
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._binary = binary
        self.layout = config.Layout(
            host=host,
            port=port,
            preview_port=preview_port,
            slots=max(1, slots),
            servers=max(1, servers),
            nbthread=nbthread,
            cpu=cpu,
            log=timed_per_second > 0,
        )
        self.desired = desired.Desired()
        self._applied: desired.Runtime | None = None
        self._be_rev: dict[str, int] = {}  # backend name → revision, per ``applied``
        self.reloads = 0
        self.stats_interval = stats_interval
        # Latency histograms come from request logs; above this many requests per second
        # only one in N is logged (and counted N times), to bound changeover's CPU.
        self.timed_per_second = timed_per_second
        # The share timed is lowered only once the rate has fitted for this long (seconds):
        # a busy service that pauses between bursts keeps its sample, instead of having
        # every request of the next burst's first second logged (a datagram each, parsed by
        # changeover: measured 2-3x the controller's CPU per request after a 12 s pause).
        self.sample_memory = sample_memory
        self._rates: collections.deque[tuple[float, int]] = collections.deque()
        self.process: haproxy_process.HAProxyProcess | None = None
        self._paths: config.Paths | None = None
        self._lock = asyncio.Lock()
        self._translator = metrics_feed.StatsTranslator(self.metrics)
        self._logs: metrics_feed.LogReader | None = None
        self._poller: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def paths(self) -> config.Paths:
        if self._paths is None:
            raise errors.PermanentBackendError("haproxy router: start() was not called")
        return self._paths

    async def start(self) -> None:
        """Render the configuration, start HAProxy, wait until it answers."""
        if self.port == 0:
            self.port = _free_port(self.host)
        if self.preview_port == 0:
            self.preview_port = _free_port(self.host)
        self.layout = self.desired.needed_layout(  # what was set before start() fits
            dataclasses.replace(self.layout, port=self.port, preview_port=self.preview_port)
        )
        root = self._state_dir or default_state_dir(self.rollout, self.host, self.port)
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True, mode=0o700)
        self._paths = paths = config.Paths(root)
        self.process = haproxy_process.HAProxyProcess(paths, binary=self._binary)
        if self.layout.log:
            self._logs = metrics_feed.LogReader(
                paths.log_socket, self.metrics, self._revision_of_log
            )
            self._logs.start()
        runtime = self.desired.plan(self.layout)
        try:
            await self.process.start(await self._write(runtime))
        except BaseException:
            if self._logs is not None:
                self._logs.close()
            raise
        self.applied = _as_rendered(runtime)
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def close(self) -> None:
        """Stop HAProxy softly: it stops listening and in-flight requests finish.

        Every wait is bounded: the metrics poll and the last stats read ``CLOSE_WAIT``
        seconds each, HAProxy's soft stop its grace (then SIGTERM, SIGKILL). A cancelled
        ``close()`` stays cancelled and still stops HAProxy, hard.
        """
        self._closing = True
        try:
            poller, self._poller = self._poller, None
            try:
                # stop_loop cancels again while the poll runs on; the timeout is for a poll
                # that never ends: close() goes on to stop HAProxy without it.
                async with asyncio.timeout(CLOSE_WAIT):
                    await aio.stop_loop(poller)
            except TimeoutError:
                log.warning(
                    "haproxy router %s: the metrics poll did not stop within %.1fs",
                    self.rollout,
                    CLOSE_WAIT,
                )
            if self.process is not None:
                with contextlib.suppress(errors.BackendError, TimeoutError):
                    async with asyncio.timeout(CLOSE_WAIT):
                        await self._read_stats()
                await self.process.stop(grace=10.0)
        finally:
            if self.process is not None:
                self.process.terminate()  # cancelled before the soft stop ended
            self.process = None
            if self.applied is not None:
                self._translator.forget_in_flight(self._backend_revisions())
            if self._logs is not None:
                self._logs.close()
                self._logs = None
        if self._state_dir is None and self._paths is not None:
            # The default directory only matters after a crash (to find a stale HAProxy).
            await asyncio.to_thread(shutil.rmtree, self._paths.root, True)

    async def _write(self, runtime: desired.Runtime) -> str:
        """Write the map files and the page, return the configuration text (not written)."""
        paths = self.paths

        def write() -> None:
            paths.maintenance_page.write_text(config.maintenance_http())
            names = set(config.MAP_NAMES)
            names |= {config.rule_map_name(r) for r in self.layout.rules}
            for name in names:
                paths.map(name).write_text(config.map_text(runtime.maps.get(name, ())))
            for name in config.ACL_NAMES:
                paths.acl(name).write_text("".join(f"{p}\n" for p in runtime.acls.get(name, ())))

        await asyncio.to_thread(write)
        return config.render(
            self.layout, paths, servers=desired.backends_of(runtime), weights=runtime.weights
        )

    # -- pushing desired state -------------------------------------------------------------

    async def _sync(self) -> None:
        """Bring HAProxy to ``self.desired``: runtime API commands, or a reload if needed."""
        if self.process is None or self.applied is None:
            return  # not started: start() renders whatever was set before
        needed = self.desired.needed_layout(self.layout)
        if needed != self.layout:  # it only grows
            await self._reload(needed)
            return
        runtime = self.desired.plan(self.layout)
        await self._push(self.applied, runtime)

    async def _reload(self, layout: config.Layout) -> None:
        assert self.process is not None
        log.info("haproxy router %s: reloading HAProxy for a larger layout", self.rollout)
        with contextlib.suppress(errors.BackendError):
            await self._read_stats()  # count what the old worker served
        self.layout = layout
        runtime = self.desired.plan(layout)
        await self.process.reload(await self._write(runtime))
        self.applied = _as_rendered(runtime)
        self.reloads += 1
        await self._push(self.applied, runtime)  # draining servers, rendered as disabled

    async def _push(self, old: desired.Runtime, new: desired.Runtime) -> None:
        assert self.process is not None
        api = self.process.api
        paths = self.paths
        ready_first: list[tuple[int, int, desired.ServerSlot]] = []
        later: list[tuple[int, int, desired.ServerSlot]] = []
        for slot, row in enumerate(new.servers):
            for i, want in enumerate(row):
                have = old.servers[slot][i]
                if want != have:
                    (ready_first if want.state == "ready" else later).append((slot, i, want))
        # Order keeps every request served: name the new slots and bring new servers up,
        # then switch the maps (routes, revision headers...) and the weights, then take old
        # servers out.
        if new.maps["slots"] != old.maps.get("slots"):
            await api.replace_map(paths.map("slots"), new.maps["slots"])
        for slot, i, want in ready_first:
            assert want.endpoint is not None
            have = old.servers[slot][i]
            for be, sv in _lines(slot, i):
                if have.endpoint != want.endpoint:
                    if have.state != "maint":
                        await api.set_server_state(be, sv, "maint")
                    await api.set_server_addr(be, sv, want.endpoint.host, want.endpoint.port)
                await api.set_server_state(be, sv, "ready")
        for name, entries in new.maps.items():
            if name != "slots" and entries != old.maps.get(name):
                await api.replace_map(paths.map(name), entries)
        for name, patterns in new.acls.items():
            if patterns != old.acls.get(name):
                await api.replace_acl(paths.acl(name), patterns)
        await self._push_weights(old, new)
        for slot, i, want in later:
            have = old.servers[slot][i]
            for be, sv in _lines(slot, i):
                if want.endpoint is not None and have.endpoint != want.endpoint:
                    await api.set_server_addr(be, sv, want.endpoint.host, want.endpoint.port)
                await api.set_server_state(be, sv, want.state)
        self.applied = new

    async def _push_weights(self, old: desired.Runtime, new: desired.Runtime) -> None:
        """Raised weights first, then lowered ones: the round-robin never passes through a
        state with no weight at all (measured: from there HAProxy's round-robin restarted
        badly, with no canary request for the next 1,200)."""
        assert self.process is not None
        changes = [
            (slot, i, weight)
            for slot, row in enumerate(new.weights)
            for i, weight in enumerate(row)
            if weight != _weight(old, slot, i)
        ]
        changes.sort(key=lambda c: c[2] < _weight(old, c[0], c[1]))
        for slot, i, weight in changes:
            await self.process.api.set_server_weight(
                config.WEIGHTED, config.weighted_server(slot, i), weight
            )

    # -- TrafficRouter ------------------------------------------------------------------

    async def set_weight(self, weights: Mapping[int, int]) -> None:
        if any(w < 0 for w in weights.values()) or sum(weights.values()) not in (0, 100):
            raise errors.PermanentBackendError(
                f"weights must be 0..100 and sum to 100, got {dict(weights)}"
            )
        async with self._lock:
            self.desired.weights = {r: w for r, w in weights.items() if w > 0}
            await self._sync()

    async def verify_weight(self, weights: Mapping[int, int]) -> bool:
        """Read the weights map back from HAProxy and compare slot counts."""
        if self.process is None:
            return False
        if self.desired.maintenance is not None:
            # Every server of ``w`` has weight 0 (its backup answers the maintenance
            # page): the weights that will apply once it ends are the desired ones.
            return self.desired.weights == {r: w for r, w in weights.items() if w > 0}
        async with self._lock:
            rows = await self.process.api.show_stat(proxy=config.WEIGHTED)
            revision_of = self._backend_revisions()
        counts: dict[int, int] = {}
        for row in rows:
            if row.get("svname") in ("BACKEND", "fallback"):
                continue
            weight = int(row.get("weight") or 0)
            if weight:
                rev = revision_of.get(config.slot_of_server(row.get("svname", "")))
                if rev is None:
                    return False
                counts[rev] = counts.get(rev, 0) + weight
        total = sum(counts.values())
        wanted = {r: w for r, w in weights.items() if w > 0}
        return counts.keys() == wanted.keys() and all(
            counts[r] * 100 == w * total for r, w in wanted.items()
        )

    def weights(self) -> dict[int, int]:
        return dict(self.desired.weights)

    async def set_header_route(
        self, name: str, revision: int | None, match: Sequence[models.RouteMatch]
    ) -> None:
        async with self._lock:
            routes = self.desired.routes
            index = next((i for i, r in enumerate(routes) if r.name == name), None)
            if index is not None:
                routes.pop(index)
            if revision is not None and match:
                entries = tuple(desired.compile_match(m) for m in match)
                route = desired.Route(name, revision, entries)
                routes.insert(len(routes) if index is None else index, route)
            await self._sync()

    async def set_sticky_split(
        self, revision: int | None, user_key: models.UserKey | None, weight: int
    ) -> None:
        sticky = None
        if revision is not None and user_key is not None:
            source: config.Source = "hdr" if user_key.header else "cook"
            key = (user_key.header or "").lower() if user_key.header else user_key.cookie or ""
            if not config.valid_name(key):
                raise errors.PermanentBackendError(f"haproxy router: {key!r} is not a valid name")
            sticky = desired.Sticky(revision, source, key, max(0, min(100, weight)))
        async with self._lock:
            self.desired.sticky = sticky
            await self._sync()

    async def set_mirror_route(
        self,
        name: str,
        revision: int | None,
        percentage: int,
        match: Sequence[models.RouteMatch],
        compare: models.MirrorCompare | None = None,
    ) -> None:
        if revision is None or percentage <= 0:
            return  # removing a mirror that cannot exist
        raise errors.PermanentBackendError(
            "the haproxy router cannot mirror traffic (HAProxy 2.6 has no native mirroring); "
            "use traffic: {builtin: {}} for setMirrorRoute and shadow"
        )

    async def set_preview(self, revision: int | None) -> None:
        async with self._lock:
            self.desired.preview = revision
            await self._sync()

    async def set_maintenance(self, enabled: bool, retry_after_seconds: int) -> None:
        async with self._lock:
            self.desired.maintenance = max(0, int(retry_after_seconds)) if enabled else None
            await self._sync()

    async def remove_managed_routes(self) -> None:
        async with self._lock:
            self.desired.routes = []
            self.desired.sticky = None
            await self._sync()

    async def set_backends(self, revision: int, endpoints: Sequence[Endpoint]) -> None:
        async with self._lock:
            if endpoints:
                self.desired.backends[revision] = list(dict.fromkeys(endpoints))
            else:
                self.desired.backends.pop(revision, None)
            await self._sync()

    async def drain(self, endpoint: Endpoint, grace_seconds: float) -> int:
        """Stop sending ``endpoint`` new requests (``state drain``) and wait, up to
        ``grace_seconds``, until its current sessions end; how many were left then."""
        async with self._lock:
            if endpoint not in self.desired.server_of:
                return 0
            self.desired.draining.add(endpoint)
            await self._sync()
            where = self.desired.server_of.get(endpoint)
        if where is None or self.process is None:
            return 0
        lines = set(_lines(*where))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while True:
            rows = await self.process.api.show_stat()
            busy = sum(
                int(r.get("scur") or 0) for r in rows if (r.get("pxname"), r.get("svname")) in lines
            )
            if busy == 0:
                return 0
            if loop.time() >= deadline:
                log.warning(
                    "haproxy router %s: %s still had %d sessions after %.1fs of drain",
                    self.rollout,
                    endpoint,
                    busy,
                    grace_seconds,
                )
                return busy
            await asyncio.sleep(0.05)

    # -- metrics ------------------------------------------------------------------------

    @property
    def applied(self) -> desired.Runtime | None:
        """What HAProxy holds now (as far as the router has told it)."""
        return self._applied

    @applied.setter
    def applied(self, runtime: desired.Runtime | None) -> None:
        self._applied = runtime
        # Updated in place: the log reader holds this dict's ``get`` (read per log line).
        self._be_rev.clear()
        if runtime is not None:
            self._be_rev.update({config.backend(s): r for r, s in runtime.slot_of.items()})

    def _backend_revisions(self) -> dict[str, int]:
        return dict(self._be_rev)

    def _revision_of_log(self, where: str) -> int | None:
        """A log line's ``backend:server`` → the revision that served it."""
        be, _, sv = where.partition(":")
        return self._be_rev.get(config.slot_of_server(sv) if be == config.WEIGHTED else be)

    async def refresh_metrics(self) -> None:
        """Read ``show stat`` now, add what grew into the metrics registry, and adapt the
        share of requests that are timed to the request rate."""
        async with self._lock:
            rows = await self._read_stats()
            rate = sum(
                int(r.get("req_rate") or 0)
                for r in rows
                if r.get("svname") == "FRONTEND" and r.get("pxname") in ("web", "preview")
            )
            await self._adapt_sampling(rate)

    async def _read_stats(self) -> list[dict[str, str]]:
        if self.process is None or not self.process.running():
            return []
        rows = await self.process.api.show_stat(servers=False)
        # Weighted requests are counted on ``w``'s server lines, one per (slot, replica).
        weighted = await self.process.api.show_stat(proxy=config.WEIGHTED)
        self._translator.update([*rows, *weighted], self._backend_revisions())
        return rows

    async def _adapt_sampling(self, rate: int) -> None:
        """Log one request in N, N the smallest step keeping the log under
        ``timed_per_second`` lines a second. Raised as soon as the rate needs it; lowered
        only once the highest rate of the last ``sample_memory`` seconds fits twice over,
        so a rate near a step does not flip N on every poll, and a pause between bursts
        does not drop it to 1.

        At 50,000 requests/s and 200 timed a second, N = 500 (250 a second)."""
        if self._logs is None:
            return
        target, current = self.timed_per_second, self.desired.log_every
        now = asyncio.get_running_loop().time()
        rates = self._rates
        rates.append((now, rate))
        while rates[0][0] < now - self.sample_memory:
            rates.popleft()
        peak = max(r for _, r in rates)

        def smallest(of: int, margin: int) -> int:
            ladder = config.SAMPLE_LADDER
            return next((n for n in ladder if of * margin <= target * n), ladder[-1])

        if rate > target * current:
            wanted = smallest(rate, 1)
        elif smallest(peak, 2) < current:
            wanted = smallest(peak, 2)
        else:
            return
        self.desired.log_every = wanted
        await self._sync()
        self._logs.weight = wanted

    async def _poll(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.stats_interval)
            try:
                await self.refresh_metrics()
            except errors.BackendError as exc:
                log.debug("haproxy router %s: stats poll failed: %s", self.rollout, exc)

    # -- introspection ------------------------------------------------------------------

    def backends(self) -> dict[int, list[Endpoint]]:
        return {rev: list(eps) for rev, eps in sorted(self.desired.backends.items())}

    async def worker_pid(self) -> int:
        if self.process is None:
            raise errors.PermanentBackendError("haproxy router: not started")
        return await self.process.worker_pid()


def _lines(slot: int, i: int) -> tuple[tuple[str, str], tuple[str, str]]:
    """The two server lines of one replica: in its revision's backend and in ``w``."""
    return (config.backend(slot), f"s{i}"), (config.WEIGHTED, config.weighted_server(slot, i))


def _weight(runtime: desired.Runtime, slot: int, i: int) -> int:
    try:
        return runtime.weights[slot][i]
    except IndexError:
        return 0


def _as_rendered(runtime: desired.Runtime) -> desired.Runtime:
    """What HAProxy holds right after loading a configuration rendered from ``runtime``:
    the same maps; ready servers up, and every other slot ``disabled`` (maintenance)."""
    servers = tuple(
        tuple(s if s.state == "ready" else desired.ServerSlot() for s in row)
        for row in runtime.servers
    )
    return dataclasses.replace(runtime, servers=servers)


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def factory(rollout: str, **kwargs: object) -> HAProxyRouter:
    """The registry's factory: ``factory("web", port=8080, preview_port=None, metrics=r)``."""
    return HAProxyRouter(rollout, **kwargs)  # type: ignore[arg-type]
