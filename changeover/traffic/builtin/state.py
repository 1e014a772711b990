"""The state one router's connections share: table, pool, metrics, mirror, settings.

``BuiltinRouter`` owns one ``ProxyState``; every client connection and exchange holds a
reference to it. The routing table is read through ``state.table`` once per request and
replaced by one assignment (see ``builtin.table``), which is what makes a weight change
atomic on a single-threaded event loop.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

from changeover.traffic.builtin import batch, compare, metrics, pool, table

if TYPE_CHECKING:
    from changeover.traffic.builtin import proxy, tunnel


@dataclasses.dataclass(frozen=True)
class Settings:
    connect_timeout: float = 5.0
    # Time to the response head, from when the whole request has been sent upstream (a
    # slow upload is the body timeout's business). LLM services may think for a while
    # before the first token, so this is generous; a started stream is never cut by it.
    response_timeout: float = 120.0
    # A whole request head, from its first byte (nginx client_header_timeout, HAProxy
    # timeout http-request): one header line every 50 s no longer holds a connection.
    header_timeout: float = 30.0
    # Longest pause between two reads of a request body (nginx client_body_timeout).
    body_timeout: float = 60.0
    # Longest time a client may leave a response unread (nginx send_timeout).
    send_timeout: float = 60.0
    # Open client connections per router process; past it new ones get a 503 and a log
    # line (each may also hold an upstream connection: mind the file descriptor limit).
    max_connections: int = 10_000
    # Idle keep-alive lifetimes, in seconds (checked by a 1-second sweep). Upstream idle
    # connections are closed before common server timeouts (gunicorn 2 s, uvicorn and
    # Node 5 s) so the proxy, not the server, closes them: fewer stale-connection races.
    upstream_idle: int = 2
    client_idle: int = 75
    # Idle connections kept per endpoint. It must cover the concurrency a busy endpoint
    # sees: with 64 and 256 busy client connections, every fifth response closed its
    # upstream connection and the next request paid a connect (a task, a timer, a socket
    # in TIME_WAIT): 60 us of CPU per request at c=256 instead of 36. Idle ones still close
    # after ``upstream_idle`` seconds, so a burst does not pin them.
    max_idle_per_endpoint: int = 1024
    # Requests whose head and body fit in this many bytes are replayed on a fresh
    # connection when a reused keep-alive connection turns out dead before any reply.
    replay_limit: int = 64 * 1024
    # Above this many bytes of request body buffered while no upstream is connected yet,
    # the client socket stops being read (backpressure instead of unbounded memory).
    buffer_limit: int = 256 * 1024
    drain_grace: float = 10.0
    # WebSocket (upgraded) connections on a revision that no longer gets new ones, or on
    # a replica being stopped, are closed by the router after this many seconds.
    upgrade_drain: float = 30.0
    # ... and after this many seconds without a byte either way (HAProxy's timeout tunnel;
    # Envoy's idle_timeout is 1 h too). A WebSocket's ping keeps it open.
    upgrade_idle: float = 3600.0


class MirrorSink(Protocol):
    def offer(
        self,
        revision: int,
        head: bytes,
        body: bytes,
        client_ip: bytes,
        fwd_head: bytes | None = None,
        pair: compare.Pair | None = None,
    ) -> None: ...


class ProxyState:
    __slots__ = (
        "batch",
        "comparer",
        "connections",
        "metrics",
        "mirror",
        "pool",
        "rev_headers",
        "settings",
        "slot",
        "table",
        "tunnels",
    )

    def __init__(
        self,
        *,
        rollout_metrics: metrics.RolloutMetrics,
        settings: Settings,
        mirror: MirrorSink | None = None,
    ) -> None:
        self.table = table.RoutingTable()
        self.slot = 0  # position on the weights wheel, 0..99
        self.pool = pool.Pool(max_idle_per_endpoint=settings.max_idle_per_endpoint)
        self.metrics = rollout_metrics
        self.settings = settings
        self.mirror = mirror
        # Pairs shadow answers with the primary's (``builtin.compare``); set with the mirror.
        self.comparer: compare.Comparer | None = None
        self.connections: set[proxy.ClientConnection] = set()
        self.tunnels: set[tunnel.Tunnel] = set()  # upgraded connections, relaying
        self.rev_headers: dict[int, bytes] = {}
        self.batch = batch.WriteBatch()  # every socket write of this router process

    def revision_header(self, revision: int) -> bytes:
        found = self.rev_headers.get(revision)
        if found is None:
            found = self.rev_headers[revision] = b"x-changeover-revision: %d\r\n" % revision
        return found
