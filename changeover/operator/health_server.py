"""The operator's own HTTP endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

Read-only and unauthenticated, like kube-controller-manager's: they change nothing, so the
Deployment's probes and a Prometheus scrape reach them without a token. Bound to
127.0.0.1 unless ``--metrics-bind`` says otherwise (the install manifests bind all
addresses inside the pod).

- ``/healthz``: 200 while the process's event loop answers (liveness).
- ``/readyz``: 200 once this replica is either leading with its caches synced, or standing
  by for the lease (both are healthy replicas); 503 while a leader is still syncing.
- ``/metrics``: Prometheus text: the operator's counters, whether it leads, its queue, and
  per Rollout (from the informer's cache, so scrapes cost no API call) the phase, the step
  and the weight per revision (the names ``changeover serve`` exports locally, with a
  ``namespace`` label).

Requests are bounded like the control API's: a head of at most 8 KiB read within 5 s,
GET or HEAD only, one request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from changeover.engine.phases import Phase

log = logging.getLogger(__name__)
JSON = dict[str, Any]
HEAD_LIMIT = 8192
HEAD_TIMEOUT = 5.0
PHASES = tuple(p.value for p in Phase)


@dataclass
class OperatorView:
    """What the endpoints read from the running operator, as plain callables (no import of
    the operator itself: it starts this server, not the other way round)."""

    leading: Callable[[], bool]
    ready: Callable[[], bool]
    counters: Callable[[], dict[str, int]]
    queue_depth: Callable[[], int]
    rollouts: Callable[[], Iterable[JSON]]


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _mapping(value: object) -> JSON:
    return value if isinstance(value, dict) else {}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def rollout_lines(rollouts: Iterable[JSON]) -> list[str]:
    """Per-rollout series from Rollout objects' ``status`` (hostile values are skipped)."""
    phase_lines: list[str] = []
    step_lines: list[str] = []
    weight_lines: list[str] = []
    for obj in rollouts:
        meta = _mapping(obj.get("metadata"))
        status = _mapping(obj.get("status"))
        ident = {"namespace": meta.get("namespace", ""), "rollout": meta.get("name", "")}
        phase = status.get("phase")
        for name in PHASES:
            flag = 1 if phase == name else 0
            phase_lines.append(f"changeover_rollout_phase{_labels(**ident, phase=name)} {flag}")
        step = _number(status.get("currentStepIndex"))
        if step is not None:
            step_lines.append(f"changeover_rollout_step{_labels(**ident)} {step:g}")
        weights = _mapping(_mapping(status.get("traffic")).get("weights"))
        for revision, weight in sorted(weights.items(), key=lambda kv: str(kv[0])):
            value = _number(weight)
            if value is not None:
                labels = _labels(**ident, revision=revision)
                weight_lines.append(f"changeover_rollout_weight_percent{labels} {value:g}")
    return [
        "# HELP changeover_rollout_phase 1 for the Rollout's current phase, 0 for the others.",
        "# TYPE changeover_rollout_phase gauge",
        *phase_lines,
        "# HELP changeover_rollout_step Index of the step the Rollout is at (0-based).",
        "# TYPE changeover_rollout_step gauge",
        *step_lines,
        "# HELP changeover_rollout_weight_percent Percent of traffic sent to a revision.",
        "# TYPE changeover_rollout_weight_percent gauge",
        *weight_lines,
    ]


def metrics_text(view: OperatorView) -> str:
    lines = []
    for name, value in sorted(view.counters().items()):
        lines += [f"# TYPE changeover_operator_{name}_total counter"]
        lines += [f"changeover_operator_{name}_total {value}"]
    lines += [
        "# HELP changeover_operator_leader 1 while this replica holds the leader lease.",
        "# TYPE changeover_operator_leader gauge",
        f"changeover_operator_leader {1 if view.leading() else 0}",
        "# TYPE changeover_operator_queue_depth gauge",
        f"changeover_operator_queue_depth {view.queue_depth()}",
    ]
    lines += rollout_lines(view.rollouts() if view.leading() else ())
    return "\n".join(lines) + "\n"


class HealthServer:
    """Serves the three endpoints for ``view`` on ``host:port`` (port 0 picks one)."""

    def __init__(self, view: OperatorView, host: str = "127.0.0.1", port: int = 8090) -> None:
        self.view, self.host, self.port = view, host, port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=HEAD_LIMIT
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = b""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            method = head.split(b" ", 1)[0]
            status, ctype, body = self._answer(head)
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError):
            status, ctype, body = "400 Bad Request", "text/plain", b"bad request\n"
        except ConnectionError:
            writer.close()
            return
        out = (
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        writer.write(out if method == b"HEAD" else out + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def _answer(self, head: bytes) -> tuple[str, str, bytes]:
        if len(head) > HEAD_LIMIT:
            return "431 Request Header Fields Too Large", "text/plain", b"head too large\n"
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return "400 Bad Request", "text/plain", b"bad request line\n"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", "text/plain", b"GET or HEAD only\n"
        if target == b"/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if target == b"/readyz":
            if self.view.ready() or not self.view.leading():
                role = b"leader" if self.view.leading() else b"standby"
                return "200 OK", "text/plain", b"ready: " + role + b"\n"
            return "503 Service Unavailable", "text/plain", b"leader syncing caches\n"
        if target == b"/metrics":
            text = metrics_text(self.view).encode()
            return "200 OK", "text/plain; version=0.0.4; charset=utf-8", text
        return "404 Not Found", "text/plain", b"not found\n"
