"""The data plane outlives the control plane (real serve, router processes, replicas, HTTP).

Given rollouts under steady load, when serve is killed (-9), stopped and started again, or
a second serve is started on its state dir, or the router process itself is killed, then no
request fails where the contract says so, the new serve adopts what runs, and
``changeover down`` stops everything and says what it stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from e2e_helpers import free_port
from e2e_load import BackgroundLoad, describe
from e2e_serve import Serve
from e2e_specs import example_rollout, with_version, write_rollout

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _canary_paused(serve: Serve, tmp_path: Path, name: str, **traffic: object) -> Path:
    v1 = example_rollout(
        "canary",
        name=name,
        version="v1",
        mark=serve.mark,
        replicas=1,
        strategy_patch={"steps": [{"setWeight": 50}, {"pause": {}}]},
    )
    if traffic:
        v1["spec"]["traffic"] = traffic
    spec = write_rollout(tmp_path / f"{name}.yaml", v1)
    assert serve.apply(spec).code == 0
    serve.wait_phase(name, "Healthy", stableRevision=1)
    write_rollout(spec, with_version(v1, "v2"))
    assert serve.apply(spec).code == 0
    serve.wait_status(name, lambda d: d["phase"] == "Paused" and d["weights"] == {"1": 50, "2": 50})
    return spec


def test_kill_9_mid_blue_green_loses_nothing_on_either_port(serve: Serve, tmp_path: Path) -> None:
    v1 = example_rollout(
        "blueGreen",
        name="bg",
        version="v1",
        mark=serve.mark,
        replicas=1,
        strategy_patch={"autoPromotionEnabled": False, "scaleDownDelaySeconds": 0},
    )
    spec = write_rollout(tmp_path / "bg.yaml", v1)
    assert serve.apply(spec).code == 0
    serve.wait_phase("bg", "Healthy", stableRevision=1)
    write_rollout(spec, with_version(v1, "v2"))
    assert serve.apply(spec).code == 0
    status = serve.wait_status("bg", lambda d: d["phase"] == "Paused")
    router = serve.router_pid()
    with (
        BackgroundLoad(status["endpoint"], rate=150) as active,
        BackgroundLoad(status["previewEndpoint"], rate=100) as preview,
    ):
        active.wait_for("1", 50)
        preview.wait_for("2", 30)
        serve.kill9()
        active.wait_for("1", 100)
        preview.wait_for("2", 60)
        serve.start()
        preview.wait_for("2", 30)
        # The preview port answers 503 once v2 is promoted: its load ends here.
        reports = [preview.stop()]
        assert serve.cli("promote", "bg").code == 0
        serve.wait_phase("bg", "Healthy", stableRevision=2)
        active.wait_for("2", 100)
        reports.append(active.stop())
    for report in reports:
        assert report.failures == 0, describe(report)
    assert serve.router_pid() == router
    assert serve.status("bg")["weights"] == {"2": 100}


def test_a_graceful_restart_of_serve_loses_nothing(serve: Serve, tmp_path: Path) -> None:
    _canary_paused(serve, tmp_path, "calm")
    status = serve.status("calm")
    router, replicas = serve.router_pid(), serve.replica_pids("calm")
    with BackgroundLoad(status["endpoint"], rate=200) as load:
        load.wait_for("2", 50)
        serve.stop()  # SIGTERM: serve goes, the services stay
        assert "keep serving" in serve.log()
        load.wait_for("2", 100)
        serve.start()
        assert serve.cli("promote", "calm").code == 0
        serve.wait_phase("calm", "Healthy", stableRevision=2)
        load.wait_for("2", 100)
        report = load.stop()
    assert report.failures == 0, describe(report)
    assert serve.router_pid() == router
    assert set(serve.replica_pids("calm")) & set(replicas)


def test_a_killed_router_process_is_restarted_with_its_routing(
    serve: Serve, tmp_path: Path
) -> None:
    _canary_paused(serve, tmp_path, "phoenix")
    endpoint = serve.status("phoenix")["endpoint"]
    router = serve.router_pid()
    os.kill(router, signal.SIGKILL)

    def restarted(_: object) -> bool:
        docs = serve.router_processes()
        return bool(docs) and docs[0]["pid"] != router and bool(docs[0].get("ready"))

    serve.wait_status("phoenix", restarted)
    # The new router process serves the stored routing: the 50/50 split, both revisions.
    with BackgroundLoad(endpoint, rate=200) as load:
        load.wait_for("1", 60)
        load.wait_for("2", 60)
        report = load.stop()
    assert report.failures == 0, describe(report)
    assert "is gone: restarting it" in serve.log()


def test_a_second_serve_on_the_same_state_dir_is_refused(serve: Serve) -> None:
    assert serve.proc is not None
    port = free_port()
    second = subprocess.run(
        [sys.executable, "-m", "changeover.cli.main", "serve", "--listen", f"127.0.0.1:{port}"],
        env=serve.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert second.returncode != 0
    assert f"pid {serve.proc.pid}" in second.stderr, second
    assert serve.url in second.stderr, second
    assert serve.proc.poll() is None  # the first one is untouched


def test_haproxy_survives_serve_death_and_down_stops_everything(
    serve: Serve, tmp_path: Path
) -> None:
    if not (
        os.path.exists("/usr/sbin/haproxy") or subprocess.run(["which", "haproxy"]).returncode == 0
    ):
        pytest.skip("HAProxy is not installed")
    _canary_paused(serve, tmp_path, "hap", haproxy={})
    endpoint = serve.status("hap")["endpoint"]
    router = serve.router_pid()
    haproxy = [p.pid for p in psutil.Process(router).children(recursive=True)]
    assert haproxy, "the router process runs HAProxy"
    replicas = serve.replica_pids("hap")
    with BackgroundLoad(endpoint, rate=200) as load:
        load.wait_for("2", 50)
        serve.kill9()
        load.wait_for("1", 100)
        load.wait_for("2", 100)
        report = load.stop()
    assert report.failures == 0, describe(report)
    assert all(_alive(p) for p in [router, *haproxy, *replicas])

    down = serve.cli("down")
    assert down.code == 0, down
    assert "stopped the router of hap" in down.stdout, down
    assert f"stopped {len(replicas)} replica(s)" in down.stdout, down
    psutil.wait_procs([psutil.Process(p) for p in [router, *haproxy] if _alive(p)], timeout=10)
    assert not any(_alive(p) for p in [router, *haproxy, *replicas])


def test_a_new_router_version_takes_the_listening_socket_over(serve: Serve, tmp_path: Path) -> None:
    """An upgraded serve replaces the running router process (another version) without
    refusing a connection: the new one serves on the old one's socket, which retires."""
    _canary_paused(serve, tmp_path, "upgrade")
    endpoint = serve.status("upgrade")["endpoint"]
    old = serve.router_pid()
    with BackgroundLoad(endpoint, rate=200) as load:
        load.wait_for("2", 50)
        serve.stop()
        serve.env["CHANGEOVER_ROUTER_VERSION"] = "test-next"
        serve.start()
        serve.wait_status(
            "upgrade", lambda d: serve.router_pid() != old and serve.router_processes()[0]["ready"]
        )
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.wait_procs([psutil.Process(old)], timeout=20)
        assert not _alive(old)
        load.wait_for("1", 100)
        load.wait_for("2", 100)
        report = load.stop()
    assert report.failures == 0, describe(report)
    assert serve.status("upgrade")["weights"] == {"1": 50, "2": 50}


def test_serve_down_on_exit_stops_routers_and_replicas(serve: Serve, tmp_path: Path) -> None:
    """The throw-away dev session: with --down-on-exit, stopping serve stops everything,
    and serve says which it did."""
    serve.stop()
    serve.serve_args = ["--down-on-exit"]
    serve.start()
    _canary_paused(serve, tmp_path, "dev")
    pids = [serve.router_pid(), *serve.replica_pids("dev")]
    assert all(_alive(p) for p in pids)
    serve.stop()
    assert "and with it 1 router(s) and 2 replica(s) (--down-on-exit)" in serve.log()
    assert not any(_alive(p) for p in pids)


def test_down_with_serve_running_stops_serve_first(serve: Serve, tmp_path: Path) -> None:
    _canary_paused(serve, tmp_path, "all")
    assert serve.proc is not None
    pids = [serve.router_pid(), *serve.replica_pids("all")]
    down = serve.cli("down")
    assert down.code == 0, down
    assert f"stopped serve (pid {serve.proc.pid})" in down.stdout, down
    assert "stopped the router of all" in down.stdout, down
    assert "stopped 2 replica(s)" in down.stdout, down
    assert serve.proc.wait(10) == 0
    assert not any(_alive(p) for p in pids)
    again = serve.cli("down")
    assert again.stdout.strip() == f"nothing was running for {serve.state_dir.resolve()}", again
