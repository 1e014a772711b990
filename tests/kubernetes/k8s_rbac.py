"""A second kube-apiserver on the test bed's etcd that enforces RBAC.

The test bed's API server allows every request (``--authorization-mode=AlwaysAllow``), so
a verb missing from the operator's ClusterRole would never fail there. This one serves the
same objects (same etcd, same certificates: two API servers on one etcd is how an HA
control plane runs) with ``--authorization-mode=RBAC``, on a free port, and knows two
static tokens: an admin (``system:masters``) and the operator's ServiceAccount user
(``system:serviceaccount:NS:changeover-operator``), which RBAC authorizes through the
ClusterRoleBinding of the install manifests, exactly as for a pod's token; and a third, a
plain user (``USER``, no rights until a test binds it a Role), as a developer's
kubeconfig. The test bed's controller-manager, scheduler and fake kubelet keep working
through the first server.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import k8s_testbed as testbed

from tests import process_helpers


@dataclass
class RbacServer:
    port: int
    admin_kubeconfig: Path
    operator_kubeconfig: Path
    user_kubeconfig: Path


USER = "dashboard-user"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kubeconfig(path: Path, port: int, ca: Path, user: str, token: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f'clusters: [{{name: rbac, cluster: {{server: "https://127.0.0.1:{port}", '
        f'certificate-authority: "{ca}"}}}}]\n'
        f'users: [{{name: {user}, user: {{token: "{token}"}}}}]\n'
        f"contexts: [{{name: rbac, context: {{cluster: rbac, user: {user}}}}}]\n"
        "current-context: rbac\n"
    )
    path.chmod(0o600)
    return path


def _ready(port: int, ca: Path, token: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(
        f"https://127.0.0.1:{port}/readyz", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def rbac_apiserver(workdir: Path, *, operator_namespace: str) -> Iterator[RbacServer]:
    """Run the RBAC-enforcing API server until the block ends (stopped by its PID)."""
    pki = testbed.testbed_dir() / "run" / "pki"
    ca = pki / "ca.crt"
    port = _free_port()
    admin, operator, user = secrets.token_hex(16), secrets.token_hex(16), secrets.token_hex(16)
    sa_user = f"system:serviceaccount:{operator_namespace}:changeover-operator"
    tokens = workdir / "tokens.csv"
    tokens.write_text(
        f"{admin},rbac-admin,rbac-admin,system:masters\n"
        f'{operator},{sa_user},sa-uid,"system:serviceaccounts,system:authenticated"\n'
        f"{user},{USER},{USER}-uid,system:authenticated\n"
    )
    tokens.chmod(0o600)
    argv = [
        str(testbed.testbed_dir() / "bin" / "kube-apiserver"),
        "--etcd-servers=http://127.0.0.1:2379",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        "--endpoint-reconciler-type=none",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={ca}",
        f"--token-auth-file={tokens}",
        "--authorization-mode=RBAC",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--service-cluster-ip-range=10.96.0.0/16",
    ]
    log = (workdir / "rbac-apiserver.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not _ready(port, ca, admin):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (workdir / "rbac-apiserver.log").read_text()[-2000:]
                raise RuntimeError(f"RBAC API server did not become ready:\n{tail}")
            time.sleep(0.5)
        yield RbacServer(
            port,
            _kubeconfig(workdir / "admin.kubeconfig", port, ca, "rbac-admin", admin),
            _kubeconfig(workdir / "operator.kubeconfig", port, ca, "operator", operator),
            _kubeconfig(workdir / "user.kubeconfig", port, ca, USER, user),
        )
    finally:
        process_helpers.stop(proc)
        log.close()
