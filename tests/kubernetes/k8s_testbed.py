"""The shared k8s testbed (``../shared/k8s-testbed``) brought into the test session.

``ensure_built`` builds kube-apiserver & co. once into ``$K8S_TESTBED_DIR`` (default
``~/.cache/k8s-testbed``, outside the repository; about 10 minutes cold, then nothing).
``Cluster.start`` starts etcd, the control plane and the fake kubelet unless a healthy
cluster from this testbed directory is already serving (another test session on this
machine: it is reused, never restarted under that session's feet); every session registers
itself in ``$K8S_TESTBED_DIR/users/`` and the last one out stops the cluster, by the PID
files ``cluster-down.sh`` reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def testbed_dir() -> Path:
    return Path(os.environ.get("K8S_TESTBED_DIR", "~/.cache/k8s-testbed")).expanduser()


def scripts_dir() -> Path:
    return Path(os.environ.get("K8S_TESTBED_SCRIPTS", REPO.parent / "shared" / "k8s-testbed"))


def _env() -> dict[str, str]:
    return {**os.environ, "K8S_TESTBED_DIR": str(testbed_dir())}


def built() -> bool:
    bin_dir = testbed_dir() / "bin"
    return all(
        (bin_dir / b).exists()
        for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    )


def ensure_built() -> None:
    """``make k8s-testbed`` does this before pytest; a bare pytest run builds here."""
    if not built() or not (testbed_dir() / "bin" / ".reflect2-go118").exists():
        script = Path(__file__).with_name("build-testbed.sh")
        env = {**_env(), "K8S_TESTBED_SCRIPTS": str(scripts_dir())}
        subprocess.run(["bash", str(script)], env=env, check=True)


def kubeconfig() -> Path:
    return testbed_dir() / "run" / "kubeconfig"


def healthy() -> bool:
    run = testbed_dir() / "run"
    try:
        token = (run / "pki" / "token").read_text().strip()
        ctx = ssl.create_default_context(cafile=str(run / "pki" / "ca.crt"))
        req = urllib.request.Request(
            "https://127.0.0.1:6443/readyz", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _locked():
    testbed_dir().mkdir(parents=True, exist_ok=True)
    with open(testbed_dir() / "cluster.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _users() -> Path:
    d = testbed_dir() / "users"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Cluster:
    def __init__(self) -> None:
        self.started_here = False
        self.start_seconds = 0.0

    def start(self) -> None:
        with self._lock():
            (_users() / str(os.getpid())).touch()
            if healthy():
                return
            t0 = time.monotonic()
            subprocess.run(
                ["bash", str(scripts_dir() / "cluster-up.sh")],
                env=_env(),
                check=True,
                stdout=subprocess.DEVNULL,
            )
            self.started_here = True
            self.start_seconds = time.monotonic() - t0

    def stop(self) -> None:
        with self._lock():
            (_users() / str(os.getpid())).unlink(missing_ok=True)
            others = [p for p in _users().iterdir() if p.name.isdigit() and _alive(int(p.name))]
            if others:
                return
            subprocess.run(
                ["bash", str(scripts_dir() / "cluster-down.sh")], env=_env(), check=False
            )

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return _locked()
