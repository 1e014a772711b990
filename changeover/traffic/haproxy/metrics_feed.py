"""HAProxy's numbers fed into changeover's per-revision metrics (``builtin.metrics``).

The analysis ``builtin`` provider, ``/metrics`` and the CLI read one ``Registry`` whatever
the router, so the haproxy data plane writes into the same ``RevisionMetrics`` the builtin
proxy bumps:

- ``StatsTranslator`` turns ``show stat`` (polled about once a second by the router) into
  counters: each backend slot's counters grow monotonically; the growth since the last poll
  is added to the revision the slot serves now (requests by status class, connect errors,
  retries, bad responses, client aborts; in-flight is the slot's current sessions). A reload
  starts HAProxy's counters at zero again, which is seen as a restart, not as a decrease.
- ``LogReader`` receives one datagram per (sampled) request from HAProxy's ``log`` line
  (``config.LOG_FORMAT``) and fills the latency and time-to-first-byte histograms. HAProxy
  2.6 times requests in whole milliseconds, so sub-millisecond latencies land in the first
  bucket. Under load only one request in N is logged (the router adapts N to the request
  rate, see ``HAProxyRouter``), and each logged request then counts N times.

    >>> from changeover.traffic.builtin.metrics import RolloutMetrics
    >>> rm = RolloutMetrics("web")
    >>> tr = StatsTranslator(rm)
    >>> row = {"pxname": "b0", "svname": "BACKEND", "hrsp_2xx": "7", "hrsp_5xx": "1", "scur": "2"}
    >>> tr.update([row], {"b0": 3})
    >>> rm.revision(3).codes[2], rm.revision(3).codes[5], rm.revision(3).in_flight
    (7, 1, 2)
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from changeover.traffic.builtin import metrics as metrics_mod
from changeover.traffic.haproxy import config

log = logging.getLogger(__name__)

# (HAProxy stat field, RevisionMetrics attribute) for counters that only grow.
_COUNTERS = (
    ("econ", "connect_errors"),
    ("wretr", "retries"),
    ("wredis", "retries"),
    ("eresp", "bad_responses"),
    ("cli_abrt", "client_aborts"),
)
_CODES = (("hrsp_1xx", 1), ("hrsp_2xx", 2), ("hrsp_3xx", 3), ("hrsp_4xx", 4), ("hrsp_5xx", 5))


def _int(row: Mapping[str, str], field: str) -> int:
    try:
        return int(row.get(field) or 0)
    except ValueError:
        return 0


class StatsTranslator:
    def __init__(self, rollout_metrics: metrics_mod.RolloutMetrics) -> None:
        self.metrics = rollout_metrics
        self._last: dict[tuple[str, str], int] = {}

    def _delta(self, proxy: str, field: str, value: int) -> int:
        before = self._last.get((proxy, field), 0)
        self._last[(proxy, field)] = value
        return value - before if value >= before else value  # smaller: HAProxy restarted

    def update(self, rows: Sequence[Mapping[str, str]], revision_of: Mapping[str, int]) -> None:
        """Add the growth since the last call; ``revision_of`` maps backend name → revision.

        Weighted requests are counted on the server lines of backend ``w`` (``b1s0`` is
        replica 0 of slot ``b1``), routed ones on the slot's own backend: a revision's
        numbers are the sum of both."""
        m = self.metrics
        in_flight: dict[int, int] = {}
        for row in rows:
            proxy, sv = row.get("pxname", ""), row.get("svname", "")
            if sv == "FRONTEND" and proxy == "web":
                m.bad_requests += self._delta(proxy, "ereq", _int(row, "ereq"))
                continue
            slot = proxy
            if proxy == config.WEIGHTED:
                if sv in ("BACKEND", "FRONTEND", "fallback"):
                    continue
                proxy, slot = f"{proxy}/{sv}", config.slot_of_server(sv)
            elif sv != "BACKEND":
                continue
            if proxy in ("maintenance", "unrouted"):
                grown = self._delta(proxy, "hrsp_5xx", _int(row, "hrsp_5xx"))
                if proxy == "maintenance":
                    m.maintenance += grown
                else:
                    m.unrouted += grown
                continue
            deltas = {f: self._delta(proxy, f, _int(row, f)) for f, _ in (*_COUNTERS, *_CODES)}
            rev = revision_of.get(slot)
            if rev is None:
                continue  # a free slot: what it served belongs to no live revision
            rm = m.revision(rev)
            for field, index in _CODES:
                rm.codes[index] += deltas[field]
            for field, attr in _COUNTERS:
                setattr(rm, attr, getattr(rm, attr) + deltas[field])
            in_flight[rev] = in_flight.get(rev, 0) + _int(row, "scur")
        for rev, n in in_flight.items():
            m.revision(rev).in_flight = n

    def forget_in_flight(self, revision_of: Mapping[str, int]) -> None:
        for rev in revision_of.values():
            self.metrics.revision(rev).in_flight = 0


def _observe(h: metrics_mod.Histogram, value: float, times: int) -> None:
    """``h.observe(value)`` ``times`` times, in one step (a sampled request stands for N)."""
    h.counts[bisect.bisect_left(h.bounds, value)] += times
    h.sum += value * times
    h.count += times


def parse_log(line: bytes) -> tuple[str, int, float, float | None] | None:
    """``b'w:b0s0 200 3 0 0 2'`` → (where, status, seconds, seconds to first byte or None);
    ``where`` is ``backend:server`` (``config.LOG_FORMAT``).

    >>> parse_log(b"w:b1s0 200 12 0 1 10\\n")
    ('w:b1s0', 200, 0.012, 0.011)
    >>> parse_log(b"b1 503 3 0 -1 -1"), parse_log(b"garbage")
    (('b1', 503, 0.003, None), None)
    """
    parts = line.split()
    if len(parts) < 6:
        return None
    try:
        status, active, wait, connect, response = (int(p) for p in parts[1:6])
    except ValueError:
        return None
    ttfb = (wait + connect + response) / 1000 if min(wait, connect, response) >= 0 else None
    return parts[0].decode("ascii", "replace"), status, max(active, 0) / 1000, ttfb


class LogReader:
    """A Unix datagram socket HAProxy logs to; each line becomes histogram observations.

    Read from the event loop with ``add_reader`` (works on asyncio and uvloop). Datagrams
    that arrive faster than they are read are dropped by the kernel, never blocking HAProxy.
    """

    def __init__(
        self,
        path: Path,
        rollout_metrics: metrics_mod.RolloutMetrics,
        revision_of: Callable[[str], int | None],
        *,
        weight: int = 1,
    ) -> None:
        self.path = path
        self.metrics = rollout_metrics
        self.revision_of = revision_of
        self.weight = max(1, weight)
        self.sock: socket.socket | None = None

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        # A deep queue absorbs bursts while the event loop is busy; past it the kernel drops
        # datagrams (HAProxy never blocks on its log). FORCE lifts rmem_max where allowed.
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, 8 << 20)
                    break
                except OSError:
                    continue
        sock.setblocking(False)
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        for _ in range(512):  # bounded, so a flood cannot starve the event loop
            try:
                data = sock.recv(512)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.observe(data)

    def observe(self, data: bytes) -> None:
        parsed = parse_log(data)
        if parsed is None:
            return
        backend, _status, seconds, ttfb = parsed
        rev = self.revision_of(backend)
        if rev is None:
            return
        rm = self.metrics.revision(rev)
        _observe(rm.latency, seconds, self.weight)
        if ttfb is not None:
            _observe(rm.ttfb, ttfb, self.weight)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        self.path.unlink(missing_ok=True)
