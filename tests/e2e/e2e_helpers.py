"""The basics behind the end-to-end tests: paths, free ports, polling with deadlines, plain
HTTP, the API client and /metrics parsing. The rest lives beside it: ``e2e_serve`` (a real
``changeover serve`` and the real CLI), ``e2e_specs`` (Rollout YAMLs derived from examples/)
and ``e2e_load`` (steady background load).

Everything here runs real processes. Two rules keep a failing test from leaving a mess:

- every process a test starts carries ``CHANGEOVER_E2E_MARK=<unique id>`` in its environment
  (``serve`` itself, and through the Rollout templates and hooks its replicas and hooks), so
  teardown kills exactly the processes this test started, found by that mark, and nothing
  else on a shared machine;
- every wait polls with a deadline; nothing sleeps a fixed time to "let things settle".
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]


EXAMPLES = REPO / "examples"


APP = EXAMPLES / "app.py"


MARK_VAR = "CHANGEOVER_E2E_MARK"


T = TypeVar("T")


JSON = dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(
    probe: Callable[[], T | None], *, within: float, what: str, interval: float = 0.1
) -> T:
    """Poll ``probe`` until it returns something truthy; AssertionError after ``within`` s."""
    deadline = time.monotonic() + within
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


# HTTP with the stdlib only: a poll must cost little CPU on a 2-core box.
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 5) -> Reply:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


class Client:
    """Sequential GETs over one keep-alive connection (reconnecting if the peer closes it):
    for tests that need each response matched to its request, unlike the load generator."""

    def __init__(self, url: str, *, timeout: float = 10) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str = "/", headers: Mapping[str, str] | None = None) -> Reply:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request("GET", path, headers=dict(headers or {}))
                response = self._conn.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed between requests: retry once.
                self.close()
                if attempt == 2:
                    raise
                continue
            reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
            if response.will_close:
                self.close()
            return reply
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text → {(name, labels): value}; enough for counters and gauges."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: set[tuple[str, str]] = set()
        for part in rest.rstrip("}").split(","):
            if "=" in part:
                key, _, val = part.partition("=")
                labels.add((key, val.strip('"')))
        samples[(name, frozenset(labels))] = float(value)
    return samples


def metric_sum(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of ``name`` over every sample whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)
