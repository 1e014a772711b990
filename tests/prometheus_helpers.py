"""A real Prometheus (Debian's package) for tests, and what it scrapes.

``running(tmp, scrape_port)`` starts one on a free loopback port scraping
``127.0.0.1:scrape_port`` every second, yields its URL and stops it; with
``basic_auth=AUTH`` its API wants that user (as a secured Prometheus would).
``wait_for_scrapes`` waits until a series has been scraped enough times for ``rate()`` or
a range query. ``serve_exposition(render)`` serves a text exposition on a free port;
``Exporter`` serves counters that grow at rates the test sets (per series), so ``rate()``
over them is what the test says.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import process_helpers


@dataclass(frozen=True)
class BasicAuth:
    user: str
    password: str
    # Prometheus' web config accepts only bcrypt hashes of the password.
    bcrypt_hash: str

    @property
    def pair(self) -> tuple[str, str]:
        return self.user, self.password


# bcrypt cost 4 keeps each authenticated request cheap.
AUTH = BasicAuth(
    "changeover", "canary-secret", "$2b$04$CgKdOdU8Pj5zpL9.6tL61ONuolrBcS0hUt.BFEq6FwIG76LgcVwI2"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(tmp: Path, scrape_port: int, *, basic_auth: BasicAuth | None = None) -> Iterator[str]:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail("prometheus is not on PATH: run `make deps-prometheus` (Debian package)")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: test\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{scrape_port}']}}]\n"
    )
    argv = [exe, f"--config.file={tmp / 'prometheus.yml'}"]
    if basic_auth is not None:
        (tmp / "web.yml").write_text(
            f"basic_auth_users:\n  {basic_auth.user}: '{basic_auth.bcrypt_hash}'\n"
        )
        argv.append(f"--web.config.file={tmp / 'web.yml'}")
    auth = basic_auth.pair if basic_auth is not None else None
    log = (tmp / "prometheus.log").open("wb")
    proc: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(3):  # the free port can be taken between probe and bind
            port = _free_port()
            proc = subprocess.Popen(
                [
                    *argv,
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if httpx.get(f"{url}/-/ready", auth=auth).status_code == 200:
                        yield url
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            process_helpers.stop(proc)
        pytest.fail("prometheus did not start:\n" + (tmp / "prometheus.log").read_text()[-2000:])
    finally:
        if proc is not None:
            process_helpers.stop(proc)
        log.close()


def wait_for_scrapes(
    url: str,
    query: str,
    *,
    at_least: float = 3,
    basic_auth: BasicAuth | None = None,
    within: float = 60,
) -> None:
    """Poll ``query`` (a ``count_over_time(...)`` of the series a test needs) until its first
    value reaches ``at_least``: rate() and range queries need several scrapes."""
    auth = basic_auth.pair if basic_auth is not None else None
    deadline = time.monotonic() + within
    while True:
        got = httpx.get(f"{url}/api/v1/query", params={"query": query}, auth=auth)
        result = got.json()["data"]["result"]
        if result and float(result[0]["value"][1]) >= at_least:
            return
        assert time.monotonic() < deadline, f"prometheus never scraped enough: {result}"
        time.sleep(0.2)


def serve_exposition(render: Callable[[], str]) -> http.server.ThreadingHTTPServer:
    """A server on a free loopback port answering every GET with ``render()`` as a
    Prometheus text exposition; ``shutdown()`` and ``server_close()`` stop it."""
    handler = type("Handler", (_Handler,), {"render": staticmethod(render)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Exporter:
    """Counters ``name{labels}`` growing at ``rate`` per second from when they are set."""

    def __init__(self) -> None:
        self._series: dict[str, tuple[float, float, float]] = {}  # line → (base, rate, since)
        self._lock = threading.Lock()
        self.server = serve_exposition(self.render)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def rate(self, series: str, per_second: float) -> None:
        """``series`` (``name{label="x"}``) grows at ``per_second`` from now on."""
        with self._lock:
            now = time.time()
            self._series[series] = (self._value(series, now), per_second, now)

    def _value(self, series: str, now: float) -> float:
        base, rate, since = self._series.get(series, (0.0, 0.0, now))
        return base + rate * (now - since)

    def render(self) -> str:
        with self._lock:
            now = time.time()
            return "".join(f"{s} {self._value(s, now)}\n" for s in self._series)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    render: Callable[[], str]

    def do_GET(self) -> None:
        body = self.render().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
