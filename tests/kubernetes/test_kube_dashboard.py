"""The dashboard of a cluster's rollouts (``changeover dashboard --platform kubernetes``,
``kubectl changeover dashboard``): a real process on 127.0.0.1 reading the test bed's API
server with the user's kubeconfig while the operator runs the rollouts.

Its API answers with the cluster's rollouts (and streams them); an action without the
session, without its CSRF header or from another origin is refused and changes nothing,
a signed one acts on the cluster; in Debian's chromium a paused canary (and a Flag
resource) is seen, the canary promoted through the page and seen healthy.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import k8s_testbed as testbed
import pytest
from k8s_background import Background
from k8s_helpers import Kube, eventually, healthy_on, phase_is, rollout

from changeover.kube import client as kube
from changeover.operator.service import KubeService
from tests import browser_helpers, process_helpers

STEPS = {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
FLAG = {
    "apiVersion": "changeover.dev/v1alpha1",
    "kind": "Flag",
    "metadata": {"name": "checkout"},
    "spec": {
        "key": "newCheckout",
        "type": "string",
        "variants": {"old": "v1", "new": "v2"},
        "defaultVariant": "old",
    },
}
BIN = Path(sys.executable).parent
STARTED = 90.0  # seconds for the dashboard to connect and print its address, under load


@pytest.fixture
def ns(cluster: testbed.Cluster) -> Iterator[Background]:
    with Background(f"dash-{uuid.uuid4().hex[:6]}") as bg:
        yield bg


class Board:
    """A dashboard process this test started: its base URL and the token it printed."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.base, self.token = self._started()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _started(self) -> tuple[str, str]:
        url = token = ""
        while not (url and token):
            try:
                line = self.lines.get(timeout=STARTED)
            except queue.Empty:
                raise AssertionError(f"dashboard printed no address: {self.output}") from None
            if line is None:
                raise AssertionError(f"dashboard exited: {self.output}")
            self.output.append(line)
            if "changeover dashboard on " in line:
                url = line.split(" on ", 1)[1].strip().removesuffix("/dashboard/")
            if "token for actions" in line:
                token = line.rsplit(" ", 1)[1]
        return url, token


@contextmanager
def dashboard(argv: list[str]) -> Iterator[Board]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "NO_COLOR": "1"}
    env.pop("CHANGEOVER_DASHBOARD_TOKEN", None)
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        yield Board(proc)
    finally:
        process_helpers.stop(proc)


def _cli(namespace: str) -> list[str]:
    kubeconfig = str(testbed.kubeconfig())
    argv = [sys.executable, "-m", "changeover.cli.main", "dashboard"]
    return [
        *argv,
        "--platform=kubernetes",
        f"--kubeconfig={kubeconfig}",
        "-n",
        namespace,
        "--port=0",
    ]


def _plugin(namespace: str) -> list[str]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed (make test installs it)"
    kubeconfig = f"--kubeconfig={testbed.kubeconfig()}"
    return [kubectl, "changeover", "dashboard", kubeconfig, "-n", namespace, "--port", "0"]


async def _canary_paused(k: Kube) -> None:
    """v1 healthy, then v2 paused at its pause step (applied as the CLI does: retried on
    a conflict with the operator's status writes)."""
    service = KubeService(k.client, namespace=k.namespace)
    await service.apply([rollout("web", replicas=2, strategy=STEPS)], source="web.yaml")
    await healthy_on(k, "web", 1, within=120)
    v2 = rollout("web", image="app:v2", replicas=2, strategy=STEPS)
    await service.apply([v2], source="web.yaml")
    await eventually(
        lambda: k.status("web"),
        lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 1,
        within=120,
        what="web paused at step 1",
    )


def _first_list(http: httpx.Client) -> dict[str, object]:
    """The first ``rollouts`` event of the live list stream."""
    with http.stream("GET", "/api/v1/stream") as answer:
        assert answer.status_code == 200
        kind = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == "rollouts":
                doc: dict[str, object] = json.loads(line.removeprefix("data: "))
                return doc
    raise AssertionError("the stream ended before listing the rollouts")


def test_dashboard_api_reads_the_cluster_and_refuses_unsigned_actions(ns: Background) -> None:
    k = Kube(ns.client, ns.namespace)
    ns.call(_canary_paused(k))
    with (
        dashboard(_plugin(ns.namespace)) as board,
        httpx.Client(base_url=board.base, timeout=60) as http,
    ):
        listed = http.get("/api/v1/rollouts").json()["rollouts"]
        assert [(d["name"], d["phase"], d["canaryRevision"]) for d in listed] == [
            ("web", "Paused", 2)
        ]
        status = http.get("/api/v1/rollouts/web").json()
        assert status["weights"] == {"1": 50, "2": 50} and status["currentStepIndex"] == 1
        history = http.get("/api/v1/rollouts/web/history").json()["revisions"]
        assert [(h["revision"], h["images"]) for h in history] == [(1, ["app:v1"]), (2, ["app:v2"])]
        assert http.get("/api/v1/rollouts/web/spec").json()["spec"]["replicas"] == 2
        assert http.get("/api/v1/rollouts/nope").status_code == 404
        streamed = _first_list(http)["rollouts"]
        assert isinstance(streamed, list) and [d["name"] for d in streamed] == ["web"]

        abort = "/api/v1/rollouts/web/abort"
        assert http.post(abort, json={}).status_code == 401  # no session, no token
        wrong = http.post("/api/v1/session", json={"token": "x" * 32})
        assert wrong.status_code == 401
        opened = http.post(
            "/api/v1/session", json={"token": board.token}, headers={"Origin": board.base}
        )
        assert opened.status_code == 200, opened.text
        csrf = opened.json()["csrf"]
        assert http.post(abort, json={}).status_code == 401  # the cookie without the CSRF
        foreign = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        assert http.post(abort, json={}, headers=foreign).status_code == 401
        after = ns.call(k.status("web"))
        assert after["phase"] == "Paused" and not after.get("abort"), after

        signed = {"X-CSRF-Token": csrf, "Origin": board.base}
        answer = http.post(abort, json={}, headers=signed)
        assert answer.status_code == 200, answer.text
        ns.call(phase_is(k, "web", "Aborted", within=120))


def test_dashboard_in_chromium_promotes_a_paused_canary(ns: Background, tmp_path: Path) -> None:
    k = Kube(ns.client, ns.namespace)
    ns.call(_canary_paused(k))
    ns.call(k.create(kube.FLAGS, FLAG))
    shots = Path(os.environ.get("CHANGEOVER_ARTIFACTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with dashboard(_cli(ns.namespace)) as board, browser_helpers.page() as (page, errors):
        page.goto(f"{board.base}/dashboard/")
        row = page.locator('tr[data-rollout="web"]')
        row.locator('[data-phase="Paused"]').wait_for()
        page.locator('tr[data-flag="checkout"]', has_text="newCheckout").wait_for()
        page.screenshot(path=str(shots / "kube-dashboard-list.png"), full_page=True)

        page.click('a[href="#/rollouts/web"]')
        page.locator('ol.steps li.current[data-step-index="1"]').wait_for()
        page.locator("[data-traffic-note]", has_text="the cluster's router").wait_for()
        page.fill("#token", board.token)
        page.click("#sign-in")
        page.locator('[data-auth="in"]').wait_for()
        page.click('[data-action="promote"]')
        page.click("#confirm-ok")
        page.locator('h1 [data-phase="Healthy"]').wait_for(timeout=120_000)
        page.screenshot(path=str(shots / "kube-dashboard-rollout.png"), full_page=True)
        ns.call(healthy_on(k, "web", 2, within=120))
        assert errors == [], errors


def test_dashboard_names_what_keeps_it_from_starting(cluster: testbed.Cluster) -> None:
    from typer.testing import CliRunner

    from changeover.cli.main import app

    base = ["dashboard", "--platform", "kubernetes", f"--kubeconfig={testbed.kubeconfig()}"]
    result = CliRunner().invoke(app, [*base, "--context", "nosuch", "--port", "0"])
    assert result.exit_code == 1 and "no context named 'nosuch'" in result.stderr
    result = CliRunner().invoke(app, [*base, "--token", "short", "--port", "0"])
    assert result.exit_code == 2 and "at least 16 characters" in result.stderr
    assert "Traceback" not in result.output
