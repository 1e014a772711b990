"""Requests in flight are finished, never cut: every replica that leaves drains first.

Given a service that dies at once on SIGTERM (tests/apps/echo_app.py, as many users'
services do) behind the router, with a 3-second request and a 3-second server-sent-event
stream in flight on the revision that is about to leave, when the rollout replaces it
(rolling update, recreate, blue-green or a promoted canary after its scale-down delay, a
canary aborted or undone, an A/B test's variant B undone), then both complete: status 200
from the leaving revision, the whole body, the stream's terminating ``data: [DONE]`` event.
The change is made through the API the CLI calls (in-process, so it lands while the
requests are in flight even on a loaded machine).
"""

from __future__ import annotations

import http.client
import itertools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import JSON, REPO, http_get, wait_until
from e2e_serve import Serve, marked_processes
from e2e_specs import example_rollout

from changeover import server_registry
from changeover.cli.api_client import Client as Api

pytestmark = pytest.mark.slow

ECHO_APP = REPO / "tests" / "apps" / "echo_app.py"
_NUMBERS = itertools.count(1)
SECONDS = 3.0  # the request in flight lasts this long, and so does the stream
EVENTS = 60


@dataclass
class Outcome:
    status: int | None = None
    body: bytes = b""
    error: str = ""
    seconds: float = 0.0


class InFlight:
    """A long request and a long SSE stream through the router, each on its own thread."""

    def __init__(self, endpoint: str, headers: dict[str, str] | None = None) -> None:
        host, _, port = endpoint.removeprefix("http://").rstrip("/").partition(":")
        self.host, self.port = host, int(port)
        self.headers = headers or {}
        self.slow = Outcome()
        self.stream = Outcome()
        interval_ms = SECONDS * 1000 / EVENTS
        self._threads = [
            threading.Thread(target=self._get, args=(f"/slow?s={SECONDS}", self.slow)),
            threading.Thread(
                target=self._get, args=(f"/events?n={EVENTS}&ms={interval_ms:g}", self.stream)
            ),
        ]

    def _get(self, path: str, out: Outcome) -> None:
        start = time.monotonic()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=SECONDS + 30)
        try:
            conn.request("GET", path, headers=self.headers)
            response = conn.getresponse()
            out.status = response.status
            while chunk := response.read1(65536):
                out.body += chunk
        except (OSError, http.client.HTTPException) as exc:
            out.error = f"{type(exc).__name__}: {exc}"
        finally:
            out.seconds = time.monotonic() - start
            conn.close()

    def start(self) -> InFlight:
        for thread in self._threads:
            thread.start()
        # Both are being answered (the stream's first event is out) before anything moves.
        wait_until(lambda: self.stream.body, within=10, what="the stream's first event")
        return self

    def finish(self) -> InFlight:
        for thread in self._threads:
            thread.join(SECONDS + 40)
        return self

    def assert_complete(self, version: str) -> None:
        slow, stream = self.slow, self.stream
        assert slow.status == 200, f"the request in flight was cut: {slow}"
        assert f'"version": "{version}"'.encode() in slow.body, slow
        events = [e for e in stream.body.split(b"\n\n") if e]
        assert stream.status == 200, stream
        assert events[0] == f"data: {version} 0".encode(), stream
        assert len(events) == EVENTS + 1 and events[-1] == b"data: [DONE]", (
            f"stream cut after {len(events)} of {EVENTS + 1} events ({stream.seconds:.1f}s): "
            f"{stream.error or stream.body[-60:]!r}"
        )


@dataclass
class Deploy:
    """One rollout of the echo app on ``serve``, changed through the API."""

    serve: Serve
    api: Api
    name: str
    strategy: str
    patch: dict[str, Any]
    healthz_file: Path
    router: str = "builtin"

    def doc(self, version: str, **env: str) -> JSON:
        doc = example_rollout(
            self.strategy,
            name=self.name,
            version=version,
            mark=self.serve.mark,
            replicas=1,
            strategy_patch=self.patch,
        )
        spec = doc["spec"]
        spec["service"]["port"] = self.port
        if self.router != "builtin":
            spec["traffic"] = {self.router: {}}
        block = spec["strategy"][self.strategy]
        if "previewPort" in block:
            block["previewPort"] = self.preview_port
        for hook in ("pre", "mid", "post"):
            block.pop(hook, None)
        template = spec["template"]
        template["command"] = [sys.executable, str(ECHO_APP), "--port", "$(PORT)"]
        template["env"].update(VERSION=version, **env)
        return doc

    def apply(self, version: str, **env: str) -> None:
        self.api.apply([self.doc(version, **env)], source="test")

    def command(self, verb: str, body: JSON | None = None) -> None:
        self.api.command(self.name, verb, body)

    def wait(self, predicate: Callable[[JSON], bool], what: str) -> JSON:
        return self.serve.wait_status(self.name, predicate, within=60, what=what)

    def healthy(self, revision: int) -> str:
        doc = self.serve.wait_phase(self.name, "Healthy", stableRevision=revision, within=60)
        endpoint: str = doc["endpoint"]
        return endpoint

    @property
    def port(self) -> int:
        return self._ports[0]

    @property
    def preview_port(self) -> int:
        return self._ports[1]

    _ports: tuple[int, int] = (0, 0)


@pytest.fixture(scope="module")
def shared_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """One server for the module (each start costs seconds); every rollout has its own name
    and ports, and is deleted after its test."""
    server = Serve(tmp_path_factory.mktemp("drain") / "serve")
    server.root.mkdir(parents=True)
    try:
        yield server.start()
    finally:
        server.cleanup()
        assert not marked_processes(server.mark)


@pytest.fixture
def serve(shared_serve: Serve) -> Serve:
    return shared_serve


@pytest.fixture
def api(serve: Serve) -> Iterator[Api]:
    token = (serve.state_dir / "token").read_text().strip()
    with Api(server_registry.Target(url=serve.url, token=token)) as client:
        yield client
        for rollout in client.list_rollouts():
            client.delete(rollout["name"])


def _deploy(
    serve: Serve, api: Api, tmp_path: Path, strategy: str, router: str = "builtin", **patch: Any
) -> Deploy:
    name = f"drain-{strategy.lower()}-{next(_NUMBERS)}"
    deploy = Deploy(serve, api, name, strategy, patch, tmp_path / "unready", router)
    first = example_rollout(strategy, name=deploy.name, version="v1", mark=serve.mark)
    block = first["spec"]["strategy"][strategy]
    deploy._ports = (first["spec"]["service"]["port"], block.get("previewPort", 0))
    return deploy


def _paused(doc: JSON) -> bool:
    return doc.get("phase") == "Paused" and doc.get("canaryRevision") == 2


@pytest.mark.parametrize("router", ["builtin", "haproxy"])
def test_rolling_update_drains_the_replaced_replica(
    serve: Serve, api: Api, tmp_path: Path, router: str
) -> None:
    deploy = _deploy(serve, api, tmp_path, "rollingUpdate", router, maxSurge=1, maxUnavailable=0)
    deploy.apply("v1")
    endpoint = deploy.healthy(1)
    # v2 starts unready (its healthz file exists), so the requests below all go to v1;
    # once it is ready, v1 is replaced while they are in flight.
    deploy.healthz_file.touch()
    deploy.apply("v2", ECHO_HEALTHZ_FILE=str(deploy.healthz_file))
    deploy.wait(lambda d: d.get("phase") == "Progressing", "v2 rolling out")
    flight = InFlight(endpoint).start()
    deploy.healthz_file.unlink()
    flight.finish().assert_complete("v1")
    deploy.healthy(2)


def test_recreate_drains_the_old_revision_behind_the_maintenance_page(
    serve: Serve, api: Api, tmp_path: Path
) -> None:
    deploy = _deploy(serve, api, tmp_path, "recreate")
    deploy.apply("v1")
    endpoint = deploy.healthy(1)
    flight = InFlight(endpoint).start()
    deploy.apply("v2")
    # While v1 finishes, new requests get the maintenance page, and v2 has not started.
    reply = wait_until(
        lambda: (r := http_get(endpoint, timeout=5)).status == 503 and r,
        within=SECONDS - 0.5,  # v1 drains until its 3 s requests end
        what="the maintenance page while v1 drains",
    )
    assert "retry-after" in reply.headers
    assert not serve.replica_pids(deploy.name, 2), "v2 started while v1 was still draining"
    flight.finish().assert_complete("v1")
    deploy.healthy(2)


def test_blue_green_drains_the_old_active_after_its_delay(
    serve: Serve, api: Api, tmp_path: Path
) -> None:
    deploy = _deploy(
        serve,
        api,
        tmp_path,
        "blueGreen",
        autoPromotionEnabled=False,
        scaleDownDelaySeconds="0.5s",
    )
    deploy.apply("v1")
    endpoint = deploy.healthy(1)
    deploy.apply("v2")
    deploy.wait(_paused, "v2 waiting for promotion")
    flight = InFlight(endpoint).start()
    deploy.command("promote")
    flight.finish().assert_complete("v1")
    deploy.healthy(2)


@pytest.mark.parametrize("ending", ["promote", "abort", "undo"])
def test_canary_drains_whichever_revision_leaves(
    serve: Serve, api: Api, tmp_path: Path, ending: str
) -> None:
    """promote: the old stable leaves after scaleDownDelaySeconds; abort and undo: the
    canary, which had all the traffic."""
    weight = 0 if ending == "promote" else 100
    steps = [{"setCanaryScale": {"replicas": 1}}, {"setWeight": weight}, {"pause": {}}]
    deploy = _deploy(
        serve,
        api,
        tmp_path,
        "canary",
        steps=steps,
        scaleDownDelaySeconds="0.5s",
        abortScaleDownDelaySeconds="0s",
    )
    deploy.apply("v1")
    endpoint = deploy.healthy(1)
    deploy.apply("v2")
    deploy.wait(_paused, "the canary paused")
    flight = InFlight(endpoint).start()
    if ending == "promote":
        deploy.command("promote", {"full": True})
    else:
        deploy.command(ending, {"toRevision": 1} if ending == "undo" else None)
    flight.finish().assert_complete("v1" if ending == "promote" else "v2")
    if ending == "abort":
        deploy.wait(lambda d: d.get("phase") == "Aborted", "Aborted")
    else:
        serve.wait_phase(deploy.name, "Healthy", within=60)


def test_ab_test_undone_drains_variant_b(serve: Serve, api: Api, tmp_path: Path) -> None:
    deploy = _deploy(serve, api, tmp_path, "abTest", duration=None)
    deploy.apply("v1")
    endpoint = deploy.healthy(1)
    deploy.apply("v2")
    deploy.wait(_paused, "the A/B test running until promote")
    flight = InFlight(endpoint, headers={"x-variant": "b"}).start()  # all on B
    deploy.command("undo", {"toRevision": 1})
    flight.finish().assert_complete("v2")
    serve.wait_phase(deploy.name, "Healthy", stableRevision=1, within=60)


def _slow_get(endpoint: str, seconds: float, out: Outcome) -> threading.Thread:
    """GET /slow?s=``seconds`` through ``endpoint`` on a thread of its own, into ``out``."""
    host, _, port = endpoint.removeprefix("http://").rstrip("/").partition(":")

    def run() -> None:
        start = time.monotonic()
        conn = http.client.HTTPConnection(host, int(port), timeout=seconds + 30)
        try:
            conn.request("GET", f"/slow?s={seconds:g}")
            response = conn.getresponse()
            out.status, out.body = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            out.error = f"{type(exc).__name__}: {exc}"
        finally:
            out.seconds = time.monotonic() - start
            conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _unready_with_a_request_in_flight(
    deploy: Deploy, seconds: float
) -> tuple[Outcome, threading.Thread]:
    """v1 healthy, a ``seconds`` request in flight on it, then its readiness probe fails
    until the router has taken it out (new requests are no longer answered by v1)."""
    deploy.apply("v1", ECHO_HEALTHZ_FILE=str(deploy.healthz_file))
    endpoint = deploy.healthy(1)
    out = Outcome()
    thread = _slow_get(endpoint, seconds, out)
    time.sleep(0.3)  # it reached v1
    deploy.healthz_file.touch()
    wait_until(
        lambda: http_get(endpoint, timeout=5).status != 200,
        within=10,
        what="the router to stop sending v1 requests once it is NotReady",
    )
    assert out.status is None and not out.error, f"the request ended early: {out}"
    return out, thread


def test_a_replica_gone_unready_still_drains_its_requests(
    serve: Serve, api: Api, tmp_path: Path
) -> None:
    """The router took v1 out when it went NotReady; the request begun before that is still
    waited for when v1 is then stopped (recreate stops it at once otherwise)."""
    deploy = _deploy(serve, api, tmp_path, "recreate")
    out, thread = _unready_with_a_request_in_flight(deploy, seconds=4)
    deploy.apply("v2")
    thread.join(40)
    assert out.status == 200, f"the request in flight on the unready replica was cut: {out}"
    assert b'"version": "v1"' in out.body, out
    deploy.healthy(2)
    reasons = [e["reason"] for e in api.events(deploy.name)]
    assert "DrainTimedOut" not in reasons, reasons


def test_a_drain_that_times_out_is_an_event(serve: Serve, api: Api, tmp_path: Path) -> None:
    """A request longer than the grace period is cut, and the rollout's events say so
    (``changeover get``, with ``-o json`` too), naming the replica and the count."""
    deploy = _deploy(serve, api, tmp_path, "recreate")
    doc = deploy.doc("v1")
    doc["spec"]["template"]["terminationGracePeriodSeconds"] = 0.5
    api.apply([doc], source="test")
    endpoint = deploy.healthy(1)
    out = Outcome()
    thread = _slow_get(endpoint, 30, out)
    time.sleep(0.5)  # it reached v1
    deploy.apply("v2")
    thread.join(40)
    assert out.status != 200 or out.error, out
    deploy.healthy(2)
    events = serve.cli("get", deploy.name, "-o", "json", check=True).json["events"]
    timed_out = [e for e in events if e["reason"] == "DrainTimedOut"]
    assert len(timed_out) == 1, events
    message = timed_out[0]["message"]
    assert message.startswith("replica "), message
    assert "1 request(s) still in flight" in message and "0.5s" in message, message
    assert timed_out[0]["revision"] == 1, timed_out
    assert "DrainTimedOut" in serve.cli("get", deploy.name, check=True).stdout
