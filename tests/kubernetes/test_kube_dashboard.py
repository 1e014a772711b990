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
from conftest import user_kubeconfig
from k8s_background import Background
from k8s_helpers import Kube, eventually, healthy_on, phase_is, rollout
from k8s_rbac import USER

from changeover import errors
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


def _first_event(http: httpx.Client, path: str, wanted: str) -> dict[str, object]:
    """The first ``wanted`` event of the live stream at ``path``."""
    with http.stream("GET", path) as answer:
        assert answer.status_code == 200
        kind = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == wanted:
                doc: dict[str, object] = json.loads(line.removeprefix("data: "))
                return doc
    raise AssertionError(f"the stream {path} ended before any {wanted} event")


def test_dashboard_api_reads_the_cluster_and_refuses_unsigned_actions(ns: Background) -> None:
    k = Kube(ns.client, ns.namespace)
    ns.call(_canary_paused(k))
    with (
        dashboard(_plugin(ns.namespace)) as board,
        httpx.Client(base_url=board.base, timeout=60) as http,
    ):
        here = f"/api/v1/namespaces/{ns.namespace}"
        listed = http.get(f"{here}/rollouts").json()["rollouts"]
        assert [(d["name"], d["phase"], d["canaryRevision"]) for d in listed] == [
            ("web", "Paused", 2)
        ]
        status = http.get(f"{here}/rollouts/web").json()
        assert status["weights"] == {"1": 50, "2": 50} and status["currentStepIndex"] == 1
        history = http.get(f"{here}/rollouts/web/history").json()["revisions"]
        assert [(h["revision"], h["images"]) for h in history] == [(1, ["app:v1"]), (2, ["app:v2"])]
        assert http.get(f"{here}/rollouts/web/spec").json()["spec"]["replicas"] == 2
        assert http.get(f"{here}/rollouts/nope").status_code == 404
        # On a cluster a rollout is named with its namespace, never without.
        assert http.get("/api/v1/rollouts/web").status_code == 404
        streamed = _first_event(http, f"{here}/stream", "rollouts")["rollouts"]
        assert isinstance(streamed, list) and [d["name"] for d in streamed] == ["web"]

        abort = f"{here}/rollouts/web/abort"
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
        for hostile in HOSTILE_NAMESPACES:  # refused before anything reaches the cluster
            for method, path in (("GET", "/rollouts"), ("POST", "/rollouts/web/abort")):
                answer = http.request(
                    method, f"/api/v1/namespaces/{hostile}{path}", json={}, headers=signed
                )
                assert answer.status_code == 400, (hostile, answer.text)
                assert "DNS-1123 label" in answer.json()["problems"][0]["message"]
        assert ns.call(k.status("web"))["phase"] == "Paused"
        answer = http.post(abort, json={}, headers=signed)
        assert answer.status_code == 200, answer.text
        ns.call(phase_is(k, "web", "Aborted", within=120))


# Not DNS-1123 labels: upper case, a dot, an underscore, a leading dash, 64 characters,
# a NUL and a space (percent-encoded: the server decodes the path first).
HOSTILE_NAMESPACES = ["Prod", "a.b", "a_b", "-lead", "a" * 64, "ns%00x", "n%20s"]


@contextmanager
def _other_namespace(ns: Background) -> Iterator[str]:
    """A second namespace, deleted afterwards (the operator watches only ``ns``'s)."""
    name = f"{ns.namespace}-b"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    ns.call(ns.client.create(kube.NAMESPACES, body))
    try:
        yield name
    finally:
        ns.call(ns.client.delete(kube.NAMESPACES, name))


def _signed(http: httpx.Client, board: Board) -> dict[str, str]:
    opened = http.post(
        "/api/v1/session", json={"token": board.token}, headers={"Origin": board.base}
    )
    assert opened.status_code == 200, opened.text
    return {"X-CSRF-Token": opened.json()["csrf"], "Origin": board.base}


def test_dashboard_lists_namespaces_and_acts_in_the_one_named(ns: Background) -> None:
    with _other_namespace(ns) as other:
        _two_namespaces(ns, other)
        with (
            dashboard(_cli(ns.namespace)) as board,
            httpx.Client(base_url=board.base, timeout=60) as http,
        ):
            _acts_in_the_namespace_named(ns, other, board, http)


def _two_namespaces(ns: Background, other: str) -> None:
    """``web`` in the operator's namespace, ``api`` in ``other``."""
    _apply(ns, ns.namespace, "web")
    _apply(ns, other, "api")


def _apply(ns: Background, namespace: str, name: str) -> None:
    service = KubeService(ns.client, namespace=namespace)
    ns.call(service.apply([rollout(name, replicas=1)], source=f"{name}.yaml"))


def test_dashboard_with_all_namespaces_lists_every_namespace(ns: Background) -> None:
    with _other_namespace(ns) as other:
        _two_namespaces(ns, other)
        with (
            dashboard([*_cli(ns.namespace), "-A"]) as board,
            httpx.Client(base_url=board.base, timeout=60) as http,
        ):
            assert http.get("/api/v1/namespaces").json()["all"] is True
            ours = {ns.namespace, other}  # (other tests' namespaces share the test bed)
            listed = http.get("/api/v1/rollouts").json()["rollouts"]
            found = sorted((d["namespace"], d["name"]) for d in listed if d["namespace"] in ours)
            assert found == sorted([(ns.namespace, "web"), (other, "api")])
            streamed = _first_event(http, "/api/v1/stream", "rollouts")["rollouts"]
            assert isinstance(streamed, list)
            assert {(d["namespace"], d["name"]) for d in streamed} >= {(other, "api")}
            # One namespace's pages still show that namespace's alone.
            there = http.get(f"/api/v1/namespaces/{other}/rollouts").json()["rollouts"]
            assert [d["name"] for d in there] == ["api"]
            assert http.get(f"/api/v1/namespaces/{ns.namespace}/rollouts/api").status_code == 404


def _acts_in_the_namespace_named(
    ns: Background, other: str, board: Board, http: httpx.Client
) -> None:
    chosen = http.get("/api/v1/namespaces").json()
    assert {ns.namespace, other} <= set(chosen["namespaces"]), chosen
    assert chosen["start"] == ns.namespace and chosen["listed"] is True
    assert _first_event(http, "/api/v1/stream", "namespaces")["start"] == ns.namespace

    there = f"/api/v1/namespaces/{other}"
    names = [d["name"] for d in http.get(f"{there}/rollouts").json()["rollouts"]]
    assert names == ["api"]
    streamed = _first_event(http, f"{there}/stream", "rollouts")["rollouts"]
    assert isinstance(streamed, list) and [d["name"] for d in streamed] == ["api"]
    assert http.get(f"/api/v1/namespaces/{ns.namespace}/rollouts/api").status_code == 404

    signed = _signed(http, board)
    wrong = http.delete(f"/api/v1/namespaces/{ns.namespace}/rollouts/api", headers=signed)
    assert wrong.status_code == 404, wrong.text
    gone = http.delete(f"{there}/rollouts/api", headers=signed)
    assert gone.status_code == 200, gone.text
    ns.call(
        eventually(
            lambda: ns.client.get_or_none(kube.ROLLOUTS, "api", namespace=other),
            lambda found: found is None,
            within=60,
            what=f"rollout api deleted from {other}",
        )
    )
    assert ns.call(ns.client.get_or_none(kube.ROLLOUTS, "web", namespace=ns.namespace))


ROLES = kube.Resource("rbac.authorization.k8s.io/v1", "roles", "Role")
ROLE_BINDINGS = kube.Resource("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding")
READER_RULES = [
    {
        "apiGroups": ["changeover.dev"],
        "resources": ["rollouts", "flags"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["services", "events"], "verbs": ["get", "list"]},
]


async def _grant_reads(ns: Background) -> None:
    """Let ``k8s_rbac.USER`` read rollouts in ``ns`` (and nothing cluster-wide), and wait
    until the RBAC API server says so."""
    meta = {"name": "dashboard-reader", "namespace": ns.namespace}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta}
    await ns.client.create(ROLES, {**role, "rules": READER_RULES}, namespace=ns.namespace)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": meta["name"]},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    }
    await ns.client.create(ROLE_BINDINGS, binding, namespace=ns.namespace)
    async with await kube.KubeClient.connect(kubeconfig_path=user_kubeconfig()) as user:

        async def allowed() -> bool:
            try:
                await user.list(kube.ROLLOUTS, namespace=ns.namespace)
            except errors.Forbidden:
                return False
            return True

        await eventually(allowed, bool, within=60, what="the Role bound to the user")


def test_dashboard_shows_only_what_rbac_lets_its_user_read(ns: Background) -> None:
    """A user who may read rollouts in one namespace, and may not list namespaces, gets
    that namespace alone to choose from, and a 403 (not a 500) for any other."""
    _apply(ns, ns.namespace, "web")
    ns.call(_grant_reads(ns))
    argv = _cli(ns.namespace)
    argv[argv.index(f"--kubeconfig={testbed.kubeconfig()}")] = f"--kubeconfig={user_kubeconfig()}"
    with (
        dashboard(argv) as board,
        httpx.Client(base_url=board.base, timeout=60) as http,
    ):
        chosen = http.get("/api/v1/namespaces").json()
        assert chosen == {
            "namespaces": [ns.namespace],
            "start": ns.namespace,
            "listed": False,
            "all": False,
        }
        here = f"/api/v1/namespaces/{ns.namespace}"
        assert [d["name"] for d in http.get(f"{here}/rollouts").json()["rollouts"]] == ["web"]
        for path in ("/rollouts", "/rollouts/web"):
            refused = http.get("/api/v1/namespaces/default" + path)
            assert refused.status_code == 403, refused.text
            assert "forbidden" in refused.json()["error"], refused.text
    everywhere = subprocess.run(
        [*argv, "-A"], capture_output=True, text=True, timeout=STARTED, check=False
    )
    assert everywhere.returncode == 1, everywhere.stdout
    assert "cannot list Rollouts in all namespaces" in everywhere.stderr, everywhere.stderr
    assert "Traceback" not in everywhere.stderr


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

        page.click(f'a[href="#/namespaces/{ns.namespace}/rollouts/web"]')
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


def test_dashboard_in_chromium_shows_the_namespace_chosen(ns: Background, tmp_path: Path) -> None:
    """Started with -A: every namespace's list first, then the namespace chosen."""
    shots = Path(os.environ.get("CHANGEOVER_ARTIFACTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with _other_namespace(ns) as other:
        _two_namespaces(ns, other)
        argv = [*_cli(ns.namespace), "-A"]
        with dashboard(argv) as board, browser_helpers.page() as (page, errors):
            page.goto(f"{board.base}/dashboard/")
            page.locator(f'td[data-namespace="{other}"]').wait_for()  # every namespace's
            page.locator(f'td[data-namespace="{ns.namespace}"]').wait_for()
            page.screenshot(path=str(shots / "kube-dashboard-all.png"), full_page=True)
            select = page.locator("select#namespace")
            select.locator('option[value=""]').wait_for(state="attached")
            assert select.input_value() == ""  # "all namespaces"
            select.select_option(ns.namespace)
            page.locator('tr[data-rollout="web"]').wait_for()
            assert page.url.endswith(f"#/namespaces/{ns.namespace}"), page.url
            select.locator(f'option[value="{other}"]').wait_for(state="attached")
            select.select_option(other)
            page.locator('tr[data-rollout="api"]').wait_for()
            assert page.locator('tr[data-rollout="web"]').count() == 0
            page.screenshot(path=str(shots / "kube-dashboard-namespace.png"), full_page=True)

            page.click(f'a[href="#/namespaces/{other}/rollouts/api"]')
            page.locator("h1", has_text="api").wait_for()
            page.click(f'a[href="#/namespaces/{other}"]')  # "all rollouts": of that namespace
            page.locator('tr[data-rollout="api"]').wait_for()
            assert select.input_value() == other
            assert errors == [], errors


def test_dashboard_names_what_keeps_it_from_starting(cluster: testbed.Cluster) -> None:
    from typer.testing import CliRunner

    from changeover.cli.main import app

    base = ["dashboard", "--platform", "kubernetes", f"--kubeconfig={testbed.kubeconfig()}"]
    result = CliRunner().invoke(app, [*base, "--context", "nosuch", "--port", "0"])
    assert result.exit_code == 1 and "no context named 'nosuch'" in result.stderr
    result = CliRunner().invoke(app, [*base, "--token", "short", "--port", "0"])
    assert result.exit_code == 2 and "at least 16 characters" in result.stderr
    result = CliRunner().invoke(app, [*base, "-n", "Prod_1", "--port", "0"])
    assert result.exit_code == 2 and "DNS-1123" in result.stderr, result.output
    assert "'Prod_1'" in result.stderr
    assert "Traceback" not in result.output
