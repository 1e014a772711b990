"""The pieces behind the end-to-end tests: a real ``changeover serve``, the real CLI, Rollout
YAMLs derived from examples/, steady background load, and polling with deadlines.

Everything here runs real processes. Two rules keep a failing test from leaving a mess:

- every process a test starts carries ``CHANGEOVER_E2E_MARK=<unique id>`` in its environment
  (``serve`` itself, and through the Rollout templates and hooks its replicas and hooks), so
  teardown kills exactly the processes this test started, found by that mark, and nothing
  else on a shared machine;
- every wait polls with a deadline; nothing sleeps a fixed time to "let things settle".
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import yaml

from changeover.loadgen import LoadGenerator, LoadReport

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


# --- HTTP (stdlib only: a poll must cost little CPU on a 2-core box) --------------------------


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


# --- processes ------------------------------------------------------------------------------


def marked_processes(mark: str) -> list[psutil.Process]:
    """Live processes (of this user) whose environment carries ``MARK_VAR=mark``."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(MARK_VAR) == mark:
                found.append(proc)
    return found


def kill_marked(mark: str) -> list[int]:
    """SIGKILL every process carrying ``mark`` (only ours: the mark is unique per test)."""
    killed = []
    for proc in marked_processes(mark):
        with contextlib.suppress(psutil.Error):
            proc.kill()
            killed.append(proc)
    psutil.wait_procs(killed, timeout=5)
    return [p.pid for p in killed]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str
    argv: list[str]

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"not JSON from {self.argv}: {self.stdout!r}\n{self.stderr}"
            ) from exc

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)}\nexit {self.code}\n{self.stdout}\n{self.stderr}"


class Serve:
    """One ``changeover serve`` subprocess on a free loopback port with its own state dir and
    its own servers.json; ``cli(...)`` runs the CLI against it as a user would (no flags: the
    CLI finds the server and token through CHANGEOVER_CONFIG)."""

    def __init__(self, root: Path, *, mark: str | None = None) -> None:
        self.root = root
        self.mark = mark or uuid.uuid4().hex
        self.state_dir = root / "state"
        self.config = root / "config" / "servers.json"
        self.log_path = root / "serve.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.serve_args: list[str] = []  # more `serve` options, e.g. ["--down-on-exit"]
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CHANGEOVER_SERVER", "CHANGEOVER_TOKEN", "CHANGEOVER_DEBUG")
        }
        self.env.update(
            {
                "CHANGEOVER_CONFIG": str(self.config),
                "CHANGEOVER_STATE_DIR": str(self.state_dir),
                MARK_VAR: self.mark,
                "CHANGEOVER_PASS_ENV": MARK_VAR,  # replicas get only a base environment
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
                "COLUMNS": "200",
            }
        )

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, *, within: float = 30) -> Serve:
        argv = [
            sys.executable,
            "-m",
            "changeover.cli.main",
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            *self.serve_args,
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return http_get(self.url + "/healthz", timeout=1).status == 200
            except OSError:
                return False

        wait_until(healthy, within=within, what=f"serve /healthz on {self.url}")
        return self

    def kill9(self) -> None:
        """``kill -9`` serve: no cleanup, replicas keep running (the crash under test)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, *, within: float = 30) -> None:
        """SIGTERM (routers and replicas keep running), then SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def cleanup(self) -> list[int]:
        """After ``stop`` and ``changeover down`` (serve leaves routers and replicas
        running): kill whatever this test started that is still alive: replicas in the
        platform state, router processes, and anything else carrying this test's mark.
        The PIDs killed."""
        self.stop()
        self.cli("down")
        leftover = []
        for doc in self.router_processes():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(doc["pid"])
                if proc.environ().get(MARK_VAR) == self.mark:
                    proc.kill()
                    leftover.append(proc.pid)
        for pid in self.replica_pids():
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).environ().get(MARK_VAR) == self.mark:
                    leftover.append(pid)
        return sorted(set(leftover) | set(kill_marked(self.mark)))

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    # --- the CLI ---------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 60, check: bool = False) -> CliResult:
        argv = [sys.executable, "-m", "changeover.cli.main", *args]
        done = subprocess.run(
            argv,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        result = CliResult(done.returncode, done.stdout, done.stderr, ["changeover", *args])
        if check and result.code != 0:
            raise AssertionError(f"CLI failed:\n{result}\n--- serve log ---\n{self.log()}")
        return result

    def cli_popen(self, *args: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "changeover.cli.main", *args]
        return subprocess.Popen(
            argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    def apply(self, path: Path, *extra: str) -> CliResult:
        return self.cli("apply", "-f", str(path), *extra)

    def status(self, name: str) -> JSON:
        """``changeover status NAME -o json`` through the real CLI."""
        result = self.cli("status", name, "-o", "json", check=True)
        doc: JSON = result.json
        return doc

    def history(self, name: str) -> list[JSON]:
        doc: list[JSON] = self.cli("history", name, "-o", "json", check=True).json
        return doc

    # --- cheap reads for polling (the API the CLI itself calls) ------------------------------

    def api_status(self, name: str) -> JSON:
        reply = http_get(f"{self.url}/api/v1/rollouts/{name}")
        if reply.status != 200:
            raise AssertionError(f"GET status {name}: {reply.status} {reply.body[:300]!r}")
        doc: JSON = reply.json()
        return doc

    def wait_status(
        self, name: str, predicate: Callable[[JSON], bool], *, within: float = 60, what: str = ""
    ) -> JSON:
        last: list[JSON] = []

        def probe() -> JSON | None:
            doc = self.api_status(name)
            last[:] = [doc]
            return doc if predicate(doc) else None

        try:
            return wait_until(probe, within=within, what=what or f"{name} to match", interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- serve log ---\n{self.log()}") from None

    def wait_phase(self, name: str, *phases: str, within: float = 60, **fields: Any) -> JSON:
        def ok(doc: JSON) -> bool:
            return doc.get("phase") in phases and all(doc.get(k) == v for k, v in fields.items())

        return self.wait_status(name, ok, within=within, what=f"{name} phase in {phases} {fields}")

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return parse_metrics(http_get(self.url + "/metrics").body.decode())

    # --- the platform's own record of replicas ------------------------------------------------

    def platform_state(self) -> JSON:
        path = self.state_dir / "platform" / "local.json"
        try:
            doc: JSON = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return doc

    def router_processes(self) -> list[JSON]:
        """``process.json`` of every router process recorded in the state dir."""
        found = []
        for path in sorted((self.state_dir / "routers").glob("*/process.json")):
            with contextlib.suppress(OSError, ValueError):
                found.append(json.loads(path.read_text()))
        return found

    def router_pid(self) -> int:
        """The PID of the one router process of this state dir."""
        docs = self.router_processes()
        assert len(docs) == 1, docs
        return int(docs[0]["pid"])

    def replica_pids(self, rollout: str | None = None, revision: int | None = None) -> list[int]:
        """PIDs of (non-terminating) replicas recorded in state_dir/platform/local.json."""
        pids = []
        for name, ro in self.platform_state().get("rollouts", {}).items():
            if rollout is not None and name != rollout:
                continue
            for rev, record in ro.get("revisions", {}).items():
                if revision is not None and int(rev) != revision:
                    continue
                pids += [r["pid"] for r in record.get("replicas", []) if r.get("pid")]
        return sorted(pids)


# --- Rollout YAMLs derived from examples/ ---------------------------------------------------

EXAMPLE_FILES = {
    "recreate": "recreate.yaml",
    "rollingUpdate": "rolling-update.yaml",
    "blueGreen": "blue-green.yaml",
    "canary": "canary.yaml",
    "abTest": "ab-test.yaml",
    "shadow": "shadow.yaml",
}


def example_rollout(
    strategy: str,
    *,
    name: str,
    version: str,
    mark: str,
    replicas: int = 2,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    strategy_patch: Mapping[str, Any] | None = None,
) -> JSON:
    """examples/<strategy>.yaml made fit for a test: a unique name, a free router port, the
    example app at ``version`` run by this interpreter, small replica counts, a fast readiness
    probe, and the test's mark in every process's environment. ``strategy_patch`` is merged
    over the example's strategy block (None values delete keys)."""
    doc: JSON = yaml.safe_load((EXAMPLES / EXAMPLE_FILES[strategy]).read_text())
    doc = copy.deepcopy(doc)
    doc["metadata"] = {"name": name}
    spec = doc["spec"]
    spec["replicas"] = replicas
    spec.pop("minReadySeconds", None)
    template = spec["template"]
    template["command"] = [sys.executable, str(APP), "--port", "$(PORT)", "--version", version]
    template["env"] = {**template.get("env", {}), MARK_VAR: mark, **(env or {})}
    template["readinessProbe"] = {"httpGet": {"path": "/healthz"}, "periodSeconds": 0.2}
    template["terminationGracePeriodSeconds"] = 5
    spec["service"] = {"port": port or free_port()}
    block = spec["strategy"][strategy]
    if strategy == "blueGreen":
        block["previewPort"] = free_port()
    for key, value in (strategy_patch or {}).items():
        if value is None:
            block.pop(key, None)
        else:
            block[key] = value
    return doc


def write_rollout(path: Path, doc: JSON) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def with_version(doc: JSON, version: str) -> JSON:
    new = copy.deepcopy(doc)
    command = new["spec"]["template"]["command"]
    command[command.index("--version") + 1] = version
    return new


# --- steady load on a thread of its own --------------------------------------------------------


@dataclass
class BackgroundLoad:
    """``LoadGenerator`` on its own thread and event loop, so a synchronous test can run the
    CLI (blocking) while the load keeps its rate.

        with BackgroundLoad(url, rate=250) as load:
            ...                   # roll out
            load.wait_for("2", 200)  # until v2 has answered 200 more requests
        report = load.report
    """

    url: str
    rate: float = 250.0
    # Room for latency spikes on a shared box: 64 in flight at 250/s is 256 ms of slack.
    concurrency: int = 64
    max_seconds: float = 240.0
    headers_fn: Callable[[int], Mapping[str, str]] | None = None
    report: LoadReport | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _gen: LoadGenerator | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None
    _started: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None

    def start(self) -> BackgroundLoad:
        self._thread = threading.Thread(target=self._run, name="e2e-load", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise AssertionError("the load generator did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._gen = LoadGenerator(
            self.url,
            self.rate,
            concurrency=self.concurrency,
            max_requests=int(self.rate * self.max_seconds),
            max_seconds=self.max_seconds,
            headers_fn=self.headers_fn,
        )
        await self._gen.start()
        self._started.set()
        await self._stop.wait()
        self.report = await self._gen.stop()

    def snapshot(self) -> LoadReport:
        assert self._loop is not None and self._gen is not None
        gen = self._gen

        async def snap() -> LoadReport:
            return gen.snapshot()

        return asyncio.run_coroutine_threadsafe(snap(), self._loop).result(10)

    def wait_for(self, revision: str, more: int, *, within: float = 30) -> LoadReport:
        """Until ``revision`` has answered ``more`` requests beyond what it had answered now."""
        base = self.snapshot().by_revision.get(revision, 0)
        return wait_until(
            lambda: (s := self.snapshot()).by_revision.get(revision, 0) >= base + more and s,
            within=within,
            what=f"{more} more responses from revision {revision}",
        )

    def stop(self) -> LoadReport:
        if self.report is not None:
            return self.report
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self._error is not None:
            raise self._error
        assert self.report is not None, "the load generator did not stop"
        return self.report

    def __enter__(self) -> BackgroundLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def describe(report: LoadReport) -> str:
    """A compact account of a load run for assertion messages."""
    return (
        f"total={report.total} failures={report.failures} by_revision={report.by_revision} "
        f"statuses={report.status_counts} rate={report.rate_per_s:.0f}/s "
        f"saturated={report.saturated} examples={report.failure_examples[:5]}"
    )


def run_load(
    url: str,
    requests: int,
    *,
    rate: float = 400.0,
    concurrency: int = 32,
    headers_fn: Callable[[int], Mapping[str, str]] | None = None,
) -> LoadReport:
    """Exactly ``requests`` GETs at ``rate``/s through the load generator; its report."""
    gen = LoadGenerator(
        url,
        rate,
        concurrency=concurrency,
        max_requests=requests,
        max_seconds=max(30.0, 4 * requests / rate),
        headers_fn=headers_fn,
    )
    report = asyncio.run(gen.run())
    assert report.total == requests, describe(report)
    return report
