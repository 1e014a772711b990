"""HAProxy configuration rendering for the haproxy data plane: pure text, no I/O.

``HAProxyRouter`` calls ``render`` when it starts HAProxy and again, with a grown ``Layout``,
in the rare case a reload is needed (a header or cookie name HAProxy has no rule for yet, or
more revisions or replicas than pre-allocated slots). Everything that changes during a
rollout is *data*, not configuration, and is changed over the runtime API without reload:

- the weights: HAProxy's own weighted round-robin (``balance roundrobin``) in one backend,
  ``w``, holding a server line for every (revision slot, replica), each given its share with
  ``set server w/... weight``: a revision's weight is split over its ready replicas (see
  ``desired.server_weights``), so every 100 consecutive weighted requests carry the set weights
  exactly once a change has taken effect (the round in progress when weights change may
  be one request off);
- revisions: pre-allocated backends ``b0..bN`` for routed and preview traffic
  (``slots.map`` says which revision each serves); the ``x-changeover-revision`` response
  header of weighted requests is read from ``servers.map`` (server id → revision);
- replicas: pre-allocated ``server`` lines per backend (and in ``w``), pointed at an
  endpoint with ``set server ... addr`` and switched with ``set server ... state``;
- header/cookie routes: one map per (header or cookie, match kind): value → backend;
- the sticky split: ``crc32(key) mod 100 → backend`` for the users' buckets below the weight
  (the same bucket function as the builtin router, so a user lands on the same side);
- maintenance, and no weights yet: every server of ``w`` has weight 0 (and the route and
  sticky maps are empty), so ``w``'s backup server takes the request to the ``fallback``
  frontend on a Unix socket, which answers the maintenance page or "no revision is
  serving": a request pays nothing for this while a revision is serving; the Retry-After
  and the preview revision are keys in ``settings.map``;
- the share of requests timed from the log: an integer range in ``logsample.acl``
  (``rand(1000)`` below it is logged), changed with ``add acl`` like a map.

Per request HAProxy evaluates only what the rollout uses: the log-sampling test, then, only
when the layout has header/cookie routes or a sticky split, one ``use_backend`` per rule
guarded by the header's (or cookie's) presence, and HAProxy's round-robin over ``w``.
Measured with callgrind (user-space instructions per request, c=1, the benchmark's job):
within 3% of hand-configured HAProxy doing the same job.

    >>> paths = Paths.under("/run/x")
    >>> text = render(Layout(host="127.0.0.1", port=8080, slots=2, servers=1), paths,
    ...               servers=[[None], [None]])
    >>> "bind 127.0.0.1:8080" in text and "option http-no-delay" in text
    True
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from changeover.endpoints import Endpoint

Source = Literal["hdr", "cook"]
Kind = Literal["str", "beg", "reg"]

MAINTENANCE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Down for maintenance</title></head>
<body style="font-family:sans-serif;margin:4em auto;max-width:32em">
<h1>Down for maintenance</h1>
<p>This service is being updated and will be back shortly. Please try again in a moment.</p>
</body></html>
"""

# The log line each (sampled) request sends to the router's datagram socket, parsed by
# ``haproxy.metrics_feed.parse_log``: backend:server, status, active time, queue, connect and
# server response times (milliseconds; -1 when the step did not happen).
LOG_FORMAT = "%b:%s %ST %Ta %Tw %Tc %Tr"

# The backend of weighted traffic (HAProxy's weighted round-robin over every replica).
WEIGHTED = "w"

# The maps every configuration reads (besides one per route rule).
MAP_NAMES = ("slots", "servers", "settings", "sticky")
# ``w``'s backup server: its id is never a key of ``servers.map`` (no revision header).
FALLBACK_ID = 999999

# The pattern files (``-f``, changed over the runtime API like maps) it reads.
ACL_NAMES = ("logsample",)

# Log one request in N, N from this ladder (each divides 1000: see ``_log_sampling``).
SAMPLE_LADDER = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an HTTP token (header or cookie name)


@dataclasses.dataclass(frozen=True, order=True)
class MatchRule:
    """One rule HAProxy evaluates: a header or cookie looked up in a map of one kind."""

    source: Source
    name: str  # lower-cased header name, or the cookie name as written
    kind: Kind  # exact (``map_str``), prefix (``map_beg``), regex (``map_reg``)

    def fetch(self) -> str:
        # req.fhdr: the full value, not split at commas; the first occurrence, as builtin.
        return f"req.fhdr({self.name},1)" if self.source == "hdr" else f"req.cook({self.name})"


@dataclasses.dataclass(frozen=True)
class Layout:
    """What the configuration pre-allocates; changing it means a reload."""

    host: str
    port: int
    preview_port: int | None = None
    slots: int = 4  # backends, one per live revision
    servers: int = 16  # server lines per backend, one per replica
    rules: tuple[MatchRule, ...] = ()  # header/cookie route rules, in evaluation order
    sticky: tuple[Source, str] | None = None  # where the sticky split reads the user key
    nbthread: int | None = None  # None: HAProxy's default (one per CPU)
    cpu: int | None = None  # pin HAProxy's threads to this CPU (benchmarks)
    log: bool = True  # send request logs (latency histograms) to the router

    def covers(self, other: Layout) -> bool:
        """True if this layout already has every slot, server and rule ``other`` needs."""
        return (
            self.slots >= other.slots
            and self.servers >= other.servers
            and set(other.rules) <= set(self.rules)
            and (other.sticky is None or other.sticky == self.sticky)
        )


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where one managed HAProxy keeps its files (a short directory: socket paths ≤ 107)."""

    root: Path

    @classmethod
    def under(cls, root: str | Path) -> Paths:
        return cls(Path(root))

    @property
    def config(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def admin_socket(self) -> Path:
        return self.root / "admin.sock"

    @property
    def master_socket(self) -> Path:
        return self.root / "master.sock"

    @property
    def log_socket(self) -> Path:
        return self.root / "log.sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "haproxy.pid"

    @property
    def output(self) -> Path:
        return self.root / "haproxy.out"

    @property
    def fallback_socket(self) -> Path:
        return self.root / "fallback.sock"

    @property
    def maintenance_page(self) -> Path:
        return self.root / "maintenance.http"

    def map(self, name: str) -> Path:
        return self.root / f"{name}.map"

    def acl(self, name: str) -> Path:
        return self.root / f"{name}.acl"

    def rule_map(self, rule: MatchRule) -> Path:
        return self.map(rule_map_name(rule))


def rule_map_name(rule: MatchRule) -> str:
    """A file name for a rule's map that any header or cookie name maps to safely."""
    safe = re.sub(r"[^A-Za-z0-9_-]", lambda m: f"%{ord(m.group()):02x}", rule.name)
    return f"route-{rule.source}-{safe}-{rule.kind}"


def backend(slot: int) -> str:
    return f"b{slot}"


def weighted_server(slot: int, i: int) -> str:
    """The name, in backend ``w``, of the line of server ``i`` of backend ``slot``."""
    return f"b{slot}s{i}"


def server_id(layout: Layout, slot: int, i: int) -> int:
    """The ``id`` of that line (``srv_id``, the key of ``servers.map``)."""
    return slot * layout.servers + i + 1


def slot_of_server(name: str) -> str:
    """The backend slot a ``w`` server line belongs to: ``"b1s3"`` → ``"b1"``."""
    return name.partition("s")[0]


def valid_name(name: str) -> bool:
    """Header and cookie names are rendered into the configuration: tokens only."""
    return bool(_NAME.match(name))


def plain_token(value: str) -> bool:
    """True if ``value`` can be a map key as written: HAProxy splits map lines at the first
    whitespace (no escaping) and skips lines starting with ``#``. Other values are matched
    through a regex map instead (see ``haproxy.routes``).

    >>> plain_token("beta"), plain_token("two words"), plain_token("#x"), plain_token("")
    (True, False, False, False)
    """
    return bool(value) and not value.startswith("#") and not any(c.isspace() for c in value)


def map_text(entries: Sequence[tuple[str, str]]) -> str:
    """A map file's (or a runtime payload's) lines: ``key value``; keys are plain tokens."""
    return "".join(f"{k} {v}\n" for k, v in entries)


def render(
    layout: Layout,
    paths: Paths,
    *,
    servers: Sequence[Sequence[Endpoint | None]],
    weights: Sequence[Sequence[int]] = (),
) -> str:
    """The whole configuration. ``servers[slot][i]`` is the endpoint of server ``i`` of
    backend ``slot`` or None (rendered ``disabled``: a free slot, or one being drained);
    ``weights[slot][i]`` its weight in ``w`` (0 when missing: no weighted traffic)."""
    settings = paths.map("settings")
    out = [
        "# Rendered by changeover (traffic.haproxy.config); changes are made at runtime.",
        "global",
        f"    stats socket {paths.admin_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        "    hard-stop-after 30s",
    ]
    if layout.nbthread is not None:
        out.append(f"    nbthread {layout.nbthread}")
    if layout.cpu is not None:
        out.append(f"    cpu-map auto:1/1-{layout.nbthread or 1} {layout.cpu}")
    if layout.log:
        out.append(f"    log {paths.log_socket} len 256 format raw local0 info")
    out += [
        "",
        "defaults",
        "    mode http",
        "    log global",
        f'    log-format "{LOG_FORMAT}"',
        "    option dontlognull",
        # Forward each chunk as it arrives: without this HAProxy 2.6 held a 20-chunk
        # stream back and delivered it at once (LLM token streams must not be buffered).
        "    option http-no-delay",
        "    option forwardfor",
        # On a reload the old worker answers the next request of each idle keep-alive
        # connection (with ``connection: close``) instead of closing it under the client.
        "    option idle-close-on-response",
        # Failed connects are retried on another server of the revision. Not
        # ``retry-on empty-response``: L7 retries keep a copy of every request, which
        # measured (valgrind) as twice the instructions per request of a plain HAProxy.
        "    option redispatch 1",
        "    retries 3",
        "    timeout connect 5s",
        "    timeout client 75s",
        "    timeout http-keep-alive 75s",
        "    timeout http-request 30s",
        "    timeout server 120s",
        "    timeout queue 10s",
        # After an upgrade (WebSocket) the connection is a tunnel: without this the
        # client and server timeouts above would cut a quiet one after 75 s.
        "    timeout tunnel 1h",
        "",
        "frontend web",
        f"    bind {_addr(layout.host)}:{layout.port}",
        *_log_sampling(layout, paths),
        *TRUST_RULES,
        *_route_rules(layout, paths),
        f"    default_backend {WEIGHTED}",
        "",
    ]
    if layout.preview_port is not None:
        out += [
            "frontend preview",
            f"    bind {_addr(layout.host)}:{layout.preview_port}",
            *_log_sampling(layout, paths),
            *TRUST_RULES,
            f"    use_backend %[str(preview),map({settings})] "
            f"if {{ str(preview),map({settings}) -m found }}",
            "    default_backend unrouted",
            "",
        ]
    out += [
        # Where ``w``'s backup server sends requests while no replica has a weight: the
        # maintenance page or "no revision is serving" (logged and counted once, by ``w``).
        "frontend fallback",
        f"    bind unix@{paths.fallback_socket}",
        "    no log",
        f"    use_backend maintenance if {{ str(maintenance),map({settings}) -m found }}",
        "    default_backend unrouted",
        "",
        "backend maintenance",
        f'    http-request return status 503 content-type "text/html; charset=utf-8" '
        f'file {paths.maintenance_page} hdr retry-after "%[str(maintenance),map({settings})]"',
        "",
        "backend unrouted",
        '    http-request return status 503 content-type "text/plain" '
        'string "no revision is serving this service"',
        "",
        f"backend {WEIGHTED}",
        "    balance roundrobin",
        # Integer keys in a short list (``map_int``): only lines with a replica are listed.
        "    http-response add-header x-changeover-revision "
        f"%[srv_id,map_int({paths.map('servers')})]",
    ]
    for slot in range(layout.slots):
        row = servers[slot] if slot < len(servers) else []
        row_weights = weights[slot] if slot < len(weights) else []
        for i in range(layout.servers):
            ep = row[i] if i < len(row) else None
            weight = row_weights[i] if i < len(row_weights) else 0
            name, sid = weighted_server(slot, i), server_id(layout, slot, i)
            if ep is None:
                out.append(f"    server {name} 127.0.0.1:1 id {sid} weight 0 disabled")
            else:
                out.append(f"    server {name} {_addr(ep.host)}:{ep.port} id {sid} weight {weight}")
    out += [
        # No idle connection kept to ``fallback``: HAProxy's keep-alive connection to its
        # own frontend held each soft stop for as long as it could, a close() for its whole
        # grace (10 s) and a reload's old worker for hard-stop-after (30 s).
        f"    server fallback unix@{paths.fallback_socket} id {FALLBACK_ID} backup pool-max-conn 0",
        "",
    ]
    for slot in range(layout.slots):
        name = backend(slot)
        out += [
            f"backend {name}",
            "    balance roundrobin",
            "    http-response add-header x-changeover-revision "
            f"%[str({name}),map({paths.map('slots')})]",
        ]
        row = servers[slot] if slot < len(servers) else []
        for i in range(layout.servers):
            ep = row[i] if i < len(row) else None
            if ep is None:
                out.append(f"    server s{i} 127.0.0.1:1 disabled")
            else:
                out.append(f"    server s{i} {_addr(ep.host)}:{ep.port}")
        out.append("")
    return "\n".join(out)


# Fields only the router may set, as the builtin router treats them: a client's shadow
# mark is dropped (it would tell a service that a real request is a mirror copy) and
# X-Forwarded-Proto is the scheme HAProxy was reached by, not the client's claim.
TRUST_RULES = (
    "    http-request del-header x-changeover-shadow",
    "    http-request set-header x-forwarded-proto http",
)


def _route_rules(layout: Layout, paths: Paths) -> list[str]:
    """The header/cookie routes, then the sticky split, only if the layout has any.

    First match wins: the routes in their listed order, then the sticky split. Each is one
    ``use_backend`` naming the backend its map finds, guarded by the header's (or cookie's)
    presence, so a request without it pays one header lookup (as a hand-written
    ``use_backend x if { req.hdr(...) -m str ... }`` does); a value its map does not hold
    names no backend and the rule is skipped."""
    out: list[str] = []
    for rule in layout.rules:
        out.append(
            f"    use_backend %[{rule.fetch()},map_{rule.kind}({paths.rule_map(rule)})] "
            f"if {{ {_present(rule.source, rule.name)} }}"
        )
    if layout.sticky is not None:
        source, name = layout.sticky
        fetch = f"req.fhdr({name},1)" if source == "hdr" else f"req.cook({name})"
        out.append(
            f"    use_backend %[{fetch},crc32,mod(100),map({paths.map('sticky')})] "
            f"if {{ {_present(source, name)} }}"
        )
    return out


def _present(source: Source, name: str) -> str:
    return f"req.hdr({name}) -m found" if source == "hdr" else f"req.cook({name}) -m found"


def _log_sampling(layout: Layout, paths: Paths) -> list[str]:
    # Time one request in N: ``logsample.acl`` holds the range 0..1000/N-1 of rand(1000)
    # (an integer match against one range: no string conversion, no map lookup). The
    # router picks N from the request rate, so a quiet service has every request timed
    # and a busy one sends a bounded number of log lines per second.
    if not layout.log:
        return ["    no log"]
    return [
        "    http-request set-log-level silent "
        f"unless {{ rand(1000) -m int -f {paths.acl('logsample')} }}"
    ]


def sample_range(log_every: int) -> str:
    """The ``logsample.acl`` pattern that logs one request in ``log_every``.

    >>> sample_range(1), sample_range(200)
    ('0:999', '0:4')
    """
    return f"0:{1000 // max(1, log_every) - 1}"


def maintenance_http() -> str:
    """The maintenance page as HAProxy's ``return ... file`` serves it (body only)."""
    return MAINTENANCE_PAGE


def _addr(host: str) -> str:
    return f"[{host}]" if ":" in host else host
