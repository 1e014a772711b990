"""HAProxy configuration rendering for the haproxy data plane: pure text, no I/O.

``HAProxyRouter`` calls ``render`` when it starts HAProxy and again, with a grown ``Layout``,
in the rare case a reload is needed (a header or cookie name HAProxy has no rule for yet, or
more revisions or replicas than pre-allocated slots). Everything that changes during a
rollout is *data*, not configuration, and is changed over the runtime API without reload:

- the weights: a 100-entry map ``slot → backend`` (``wheel.map``) read at
  ``request counter mod 100`` (a stick-table counter, ``sc_inc_gpc0``), so every 100
  consecutive weighted requests carry exactly the set weights, spread like smooth weighted
  round-robin (the builtin router's wheel);
- revisions: pre-allocated backends ``b0..bN`` (``slots.map`` says which revision each
  serves, and the ``x-changeover-revision`` response header is read from it);
- replicas: pre-allocated ``server`` lines per backend, pointed at an endpoint with
  ``set server ... addr`` and switched with ``set server ... state``;
- header/cookie routes: one map per (header or cookie, match kind): value → backend;
- the sticky split: ``crc32(key) mod 100 → backend`` for the users' buckets below the weight
  (the same bucket function as the builtin router, so a user lands on the same side);
- maintenance: every wheel slot names the ``maintenance`` backend (and the route and sticky
  maps are empty), so a request pays no extra lookup for it; its Retry-After and the
  preview revision are keys in ``settings.map``;
- the share of requests timed from the log: an integer range in ``logsample.acl``
  (``rand(1000)`` below it is logged), changed with ``add acl`` like a map.

Per request HAProxy evaluates only what the rollout uses: the log-sampling test, then one
``use_backend`` for the weights (the counter is tracked once per client connection).
Header/cookie routes and the sticky split add a ``set-var`` each and one ``use_backend``
reading the variable, only when the layout has them; the wheel's counter is only
incremented by requests that reach it.

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
# ``haproxy.metrics.parse_log``: backend, status, active time, queue, connect and server
# response times (milliseconds; -1 when the step did not happen).
LOG_FORMAT = "%b %ST %Ta %Tw %Tc %Tr"

# The maps every configuration reads (besides one per route rule).
MAP_NAMES = ("slots", "wheel", "settings", "sticky")
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


def render(layout: Layout, paths: Paths, *, servers: Sequence[Sequence[Endpoint | None]]) -> str:
    """The whole configuration. ``servers[slot][i]`` is the endpoint of server ``i`` of
    backend ``slot`` or None (rendered ``disabled``: a free slot, or one being drained)."""
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
        "",
        "backend counter",
        "    stick-table type integer size 1 store gpc0",
        "",
        "frontend web",
        f"    bind {_addr(layout.host)}:{layout.port}",
        *_log_sampling(layout, paths),
    ]
    # The counter is tracked once per client connection (its requests inherit it: measured
    # 0.5k instructions a request cheaper than tracking per request) and only incremented
    # by the last ``use_backend``, which routed requests never reach: they take no wheel
    # slot. Integer keys are looked up as strings: ``map`` is a tree, ``map_int`` a list.
    out.append("    tcp-request session track-sc0 int(0) table counter")
    out += _route_rules(layout, paths)
    out += [
        f"    use_backend %[sc_inc_gpc0(0),mod(100),map({paths.map('wheel')})]",
        # Reached when the wheel names no backend (no weights yet).
        "    default_backend unrouted",
        "",
    ]
    if layout.preview_port is not None:
        out += [
            "frontend preview",
            f"    bind {_addr(layout.host)}:{layout.preview_port}",
            *_log_sampling(layout, paths),
            f"    use_backend %[str(preview),map({settings})] "
            f"if {{ str(preview),map({settings}) -m found }}",
            "    default_backend unrouted",
            "",
        ]
    out += [
        "backend maintenance",
        f'    http-request return status 503 content-type "text/html; charset=utf-8" '
        f'file {paths.maintenance_page} hdr retry-after "%[str(maintenance),map({settings})]"',
        "",
        "backend unrouted",
        '    http-request return status 503 content-type "text/plain" '
        'string "no revision is serving this service"',
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


def _route_rules(layout: Layout, paths: Paths) -> list[str]:
    """The sticky split and the header/cookie routes, only if the layout has any.

    Lowest precedence first, each overriding the one before (a lookup that finds nothing
    sets nothing): the sticky split, then the routes (the first-listed evaluated last, so
    it wins); one ``use_backend`` then takes whatever was found."""
    out: list[str] = []
    if layout.sticky is not None:
        source, name = layout.sticky
        fetch = f"req.fhdr({name},1)" if source == "hdr" else f"req.cook({name})"
        out.append(
            f"    http-request set-var(txn.be) {fetch},crc32,mod(100),map({paths.map('sticky')})"
        )
    for rule in reversed(layout.rules):
        out.append(
            f"    http-request set-var(txn.be) {rule.fetch()},map_{rule.kind}"
            f"({paths.rule_map(rule)})"
        )
    if out:
        out.append("    use_backend %[var(txn.be)] if { var(txn.be) -m found }")
    return out


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
