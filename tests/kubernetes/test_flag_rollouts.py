"""Progressive flag rollouts walked by the operator on the test cluster: the Flag's status
subresource carries the step and weight, the operator's OFREP endpoint (on 127.0.0.1)
serves the walked weight, an analysis step runs on the operator's runner (the web
provider against a server on this machine's loopback) and a failing one turns the flag
off; the CLI's ``--platform kubernetes`` promotes, pauses, resumes, aborts and retries.

Buckets (crc32 mod 100, see tests/flags): bob 4, trent 18, erin 22, alice 35, judy 99.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from k8s_flags import (
    cli,
    cli_ok,
    flag,
    flag_events,
    flag_status,
    kubectl_changeover,
    walked,
    web_template,
)
from k8s_helpers import Kube, eventually, json_server, rollout

from changeover.kube import client as kube
from changeover.operator.flag_commands import KubeFlags
from changeover.operator.flag_endpoint import FlagEndpoint
from changeover.operator.flag_rollouts import FlagRollouts
from changeover.operator.operator_analysis import OperatorAnalysis
from changeover.operator.runtime import Operator
from changeover.platforms.kubernetes import informer
from changeover.platforms.kubernetes.events import EventRecorder
from changeover.platforms.kubernetes.replicasets import KubePlatform

JSON = dict[str, Any]
USERS = ["bob", "trent", "erin", "alice", "judy"]
AT_20 = {"bob": "v2", "trent": "v2", "erin": "v1", "alice": "v1", "judy": "v1"}
ALL_OLD = dict.fromkeys(USERS, "v1")
ALL_NEW = dict.fromkeys(USERS, "v2")


class Ofrep:
    """The operator's OFREP endpoint on 127.0.0.1, evaluated the way an SDK asks."""

    def __init__(self, port: int, token: str) -> None:
        self.url, self.token = f"http://127.0.0.1:{port}/ofrep/v1/evaluate/flags", token

    def _one(self, key: str, user: str) -> str:
        body = json.dumps({"context": {"targetingKey": user}}).encode()
        req = urllib.request.Request(
            f"{self.url}/{key}",
            data=body,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(json.load(resp)["value"])

    async def variants(self, key: str) -> dict[str, str]:
        return await asyncio.to_thread(lambda: {u: self._one(key, u) for u in USERS})


@pytest.fixture
async def ofrep(kube_: Kube, operator: Operator) -> AsyncIterator[Ofrep]:
    token = secrets.token_urlsafe(16)
    endpoint = FlagEndpoint(operator.client, namespace=kube_.namespace, token=token)
    port = await endpoint.start("127.0.0.1", 0)
    try:
        yield Ofrep(port, token)
    finally:
        await endpoint.close()


async def test_flag_rollout_walks_its_steps_to_full_and_ofrep_follows(
    kube_: Kube, ofrep: Ofrep
) -> None:
    k = kube_
    steps: list[JSON] = [
        {"setWeight": 20},
        {"pause": {}},
        {"setWeight": 50},
        {"pause": {"duration": "1s"}},
    ]
    await k.create(kube.FLAGS, flag("checkout", steps))
    st = await eventually(
        lambda: flag_status(k, "checkout"),
        lambda s: walked(s) == ("Paused", 1, 20),
        what="paused at 20%",
    )
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "Progressing": "True",
        "Paused": "True",
        "Completed": "False",
    }
    await eventually(lambda: ofrep.variants("checkout"), lambda v: v == AT_20, what="OFREP 20%")

    out = await cli_ok(k.namespace, "promote", "flag/checkout")
    assert "flag/checkout promoted" in out
    st = await eventually(
        lambda: flag_status(k, "checkout"),
        lambda s: s.get("phase") == "Healthy",
        what="the rollout complete",
    )
    assert st["rollout"]["done"] and st["rollout"]["weight"] == 100
    await eventually(lambda: ofrep.variants("checkout"), lambda v: v == ALL_NEW, what="OFREP 100%")
    await flag_events(k, "checkout", "SetWeight", "Promoted", "SetWeight", "Completed")

    out = await cli_ok(k.namespace, "get", "flags", "-o", "json")
    assert [(f["name"], f["phase"], f["split"]) for f in json.loads(out)] == [
        ("checkout", "Healthy", {"new": 100})
    ]


async def test_flag_commands_through_the_cli(kube_: Kube, ofrep: Ofrep, tmp_path: Path) -> None:
    k = kube_
    steps: list[JSON] = [{"setWeight": 20}, {"pause": {"duration": "1h"}}, {"setWeight": 60}]
    spec = tmp_path / "banner.yaml"
    spec.write_text(json.dumps(flag("banner", steps)))  # JSON is YAML
    out = await cli_ok(k.namespace, "apply", "-f", str(spec))
    assert "flag/banner created (revision 1)" in out
    await eventually(
        lambda: flag_status(k, "banner"), lambda s: walked(s) == ("Paused", 1, 20), what="20%"
    )
    await cli_ok(k.namespace, "pause", "flag/banner")
    st = await eventually(
        lambda: flag_status(k, "banner"),
        lambda s: "by the user" in s.get("message", ""),
        what="paused by the user",
    )
    assert st["rollout"]["userPaused"]
    await cli_ok(k.namespace, "resume", "flag/banner")
    await eventually(
        lambda: flag_status(k, "banner"),
        lambda s: not s["rollout"]["userPaused"] and "for 3600s" in s.get("message", ""),
        what="resumed (the timed pause again)",
    )

    # kubectl's dialect: the plugin found on PATH, `abort flag NAME`.
    out = await kubectl_changeover("abort", "flag", "banner", "-n", k.namespace)
    assert "flag/banner aborted" in out
    st = await eventually(
        lambda: flag_status(k, "banner"),
        lambda s: bool(s.get("off")) and "requestedEvent" not in s,
        what="turned off, the event recorded",
    )
    assert {c["type"]: c["status"] for c in st["conditions"]}["Progressing"] == "False"
    await eventually(lambda: ofrep.variants("banner"), lambda v: v == ALL_OLD, what="OFREP off")
    # Turned off, a walk command is refused with a state error (exit 1), as locally.
    code, _, err = await asyncio.to_thread(cli, k.namespace, "promote", "flag/banner")
    assert code == 1 and "turned off" in err

    await cli_ok(k.namespace, "retry", "flag/banner")
    await eventually(
        lambda: flag_status(k, "banner"),
        lambda s: walked(s) == ("Paused", 1, 20) and not s.get("off"),
        what="on again, walked back to 20%",
    )
    await eventually(lambda: ofrep.variants("banner"), lambda v: v == AT_20, what="OFREP 20%")
    await cli_ok(k.namespace, "promote", "flag/banner", "--full")
    await eventually(
        lambda: flag_status(k, "banner"),
        lambda s: s.get("phase") == "Healthy",
        what="promoted to the end",
    )
    await eventually(lambda: ofrep.variants("banner"), lambda v: v == ALL_NEW, what="OFREP 100%")
    await flag_events(k, "banner", "Paused", "Resumed", "Aborted", "Retried", "Promoted")


@pytest.fixture
def health() -> Iterator[str]:
    """``{"ok": true}`` on /good, ``{"ok": false}`` elsewhere."""
    with json_server(lambda path: {"ok": path == "/good"}) as url:
        yield url


async def test_flag_analysis_passes_or_turns_the_flag_off(
    kube_: Kube, ofrep: Ofrep, health: str
) -> None:
    k = kube_
    await web_template(k, "good", f"{health}/good", count=2, interval="1s")
    await web_template(k, "bad", f"{health}/bad", count=2, interval="1s")
    await k.apply_rollout(rollout("web", replicas=1))

    def judged(template: str) -> list[JSON]:
        return [
            {"setWeight": 20},
            {"analysis": {"templates": [{"templateName": template}]}},
            {"setWeight": 50},
        ]

    await k.create(kube.FLAGS, flag("passes", judged("good"), target="web"))
    await k.create(kube.FLAGS, flag("fails", judged("bad"), target="web"))

    failed = await eventually(
        lambda: flag_status(k, "fails"),
        lambda s: s.get("phase") == "Aborted",
        within=90,
        what="the failing flag turned off",
    )
    assert failed["off"] and "analysis at step 2 failed" in failed["message"]
    assert failed["rollout"]["runPhase"] == "Failed"
    await eventually(lambda: ofrep.variants("fails"), lambda v: v == ALL_OLD, what="OFREP off")
    await flag_events(k, "fails", "SetWeight", "AnalysisStarted", "Aborted")

    passed = await eventually(
        lambda: flag_status(k, "passes"),
        lambda s: s.get("phase") == "Healthy",
        within=90,
        what="the passing flag complete",
    )
    assert passed["rollout"]["weight"] == 100 and passed["rollout"]["runPhase"] == "Successful"
    await eventually(lambda: ofrep.variants("passes"), lambda v: v == ALL_NEW, what="OFREP 100%")
    await flag_events(k, "passes", "AnalysisStarted", "AnalysisPassed", "Completed")


async def test_a_status_written_meanwhile_is_walked_on_not_overwritten(
    kube_: Kube, tmp_path: Path
) -> None:
    """The walker's cached Flag is behind a user's command when its timed pause ends: its
    status write gets 409, it reads the Flag again and walks on from what the user wrote
    (paused), instead of overwriting the command or failing."""
    k = kube_
    steps: list[JSON] = [{"setWeight": 20}, {"pause": {"duration": "10s"}}, {"setWeight": 40}]
    created = await k.create(kube.FLAGS, flag("stale", steps))
    rollouts = informer.Informer(k.client, kube.ROLLOUTS, namespace=k.namespace)
    analysis = OperatorAnalysis(
        k.client, namespace=k.namespace, state_dir=tmp_path, wake=lambda: None
    )
    now = [time.time()]
    walker = FlagRollouts(
        k.client,
        namespace=k.namespace,
        rollouts=rollouts,
        platform=KubePlatform(k.client, rollouts),
        analysis=analysis,
        recorder=EventRecorder(k.client, instance="test"),
        clock=lambda: now[0],
        enqueue=lambda key: None,
    )
    try:
        created.setdefault("kind", "Flag")
        walker.informer.remember(created)
        await walker.sync(k.namespace, "stale")
        assert walked(await flag_status(k, "stale")) == ("Paused", 1, 20)
        # The user pauses; the walker's cached object does not know it yet.
        await KubeFlags(k.client, namespace=k.namespace).pause("stale")
        stale = walker.informer.get(k.namespace, "stale")
        assert stale is not None and not stale["status"]["rollout"]["userPaused"]
        now[0] += 60  # the timed pause is over: the stale status says walk on to 40%
        await walker.sync(k.namespace, "stale")
        st = await flag_status(k, "stale")
        assert walked(st) == ("Paused", 1, 20) and st["rollout"]["userPaused"]
        assert "by the user" in st["message"] and "requestedEvent" not in st
    finally:
        await analysis.close()


class Hooks:
    """A webhook receiver on this machine's loopback: records each call's path, type and
    answer; ``/gate`` answers 409 until ``open``."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.open = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = outer.open or self.path != "/gate"
                outer.seen.append(f"{self.path} {json.loads(body)['type']} {200 if ok else 409}")
                self.send_response(200 if ok else 409)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    thread = threading.Thread(target=h.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield h
    finally:
        h.server.shutdown()


async def test_flag_rollout_webhooks_gate_the_operators_walk(
    kube_: Kube, operator: Operator, hooks: Hooks
) -> None:
    k = kube_
    doc = flag("gated", [{"setWeight": 20}, {"setWeight": 100}])
    doc["spec"]["rollout"]["webhooks"] = [
        {"name": "smoke", "type": "pre-rollout", "url": f"{hooks.url}/pre"},
        {"name": "gate", "type": "confirm-traffic-increase", "url": f"{hooks.url}/gate"},
    ]
    doc["spec"]["rollout"]["webhooks"][1]["interval"] = "500ms"
    await k.create(kube.FLAGS, doc)
    held = await eventually(
        lambda: flag_status(k, "gated"),
        lambda s: "waiting for confirm-traffic-increase" in str(s.get("message")),
        within=60,
        what="the first increase held by its gate",
    )
    assert walked(held) == ("Progressing", 0, 0) and "/pre pre-rollout 200" in hooks.seen
    hooks.open = True
    done = await eventually(
        lambda: flag_status(k, "gated"),
        lambda s: s.get("phase") == "Healthy",
        within=60,
        what="promoted once the gate answers 2xx",
    )
    assert done["rollout"]["weight"] == 100
    # each weight increase was confirmed (post-rollout, fire-and-forget, is checked by the
    # local e2e test)
    assert hooks.seen.count("/gate confirm-traffic-increase 200") >= 2, hooks.seen
