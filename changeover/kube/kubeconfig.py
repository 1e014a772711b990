"""Where the Kubernetes API is and how to authenticate: a kubeconfig file or in-cluster.

``load(path, context=None)`` reads a kubeconfig (``$KUBECONFIG`` or ``~/.kube/config`` when
``path`` is None) and, when there is none, the pod's service account (running in the
cluster). The result is a ``Connection``: the server URL, an ``ssl.SSLContext`` and the
headers to send. Supported credentials: bearer ``token`` / ``tokenFile``, client
certificates (files or ``-data``), basic auth and ``exec`` credential plugins (run once per
process; a plugin's token that expires is refreshed by ``Connection.refresh``).

Called by ``kube.client.KubeClient.connect``.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from changeover import errors

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class Connection:
    server: str
    ssl_context: ssl.SSLContext | bool
    headers: dict[str, str] = field(default_factory=dict)
    namespace: str = "default"
    source: str = ""
    # An exec plugin to re-run when the API answers 401 (its token expired).
    exec_spec: dict[str, Any] | None = None

    def refresh(self) -> bool:
        """Re-run the exec plugin (True if there is one and it gave a token)."""
        if self.exec_spec is None:
            return False
        token = _exec_token(self.exec_spec)
        if token is None:
            return False
        self.headers["Authorization"] = f"Bearer {token}"
        return True


def load(path: str | os.PathLike[str] | None = None, *, context: str | None = None) -> Connection:
    """The connection a kubeconfig (or the in-cluster service account) describes."""
    candidates: list[Path] = []
    if path is not None:
        candidates = [Path(path).expanduser()]
    elif os.environ.get("KUBECONFIG"):
        candidates = [Path(p).expanduser() for p in os.environ["KUBECONFIG"].split(os.pathsep)]
    else:
        default = Path("~/.kube/config").expanduser()
        if default.exists() or not (SERVICE_ACCOUNT / "token").exists():
            candidates = [default]
    if not candidates:
        return in_cluster()
    for candidate in candidates:
        if candidate.exists():
            return from_file(candidate, context=context)
    raise errors.PermanentBackendError(
        f"no kubeconfig at {', '.join(str(c) for c in candidates)}: pass --kubeconfig or set "
        "KUBECONFIG"
    )


def in_cluster() -> Connection:
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST"),
        os.environ.get("KUBERNETES_SERVICE_PORT"),
    )
    if not host or not port:
        raise errors.PermanentBackendError(
            "not in a cluster (KUBERNETES_SERVICE_HOST unset) and no kubeconfig found"
        )
    token = (SERVICE_ACCOUNT / "token").read_text().strip()
    ctx = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
    ns_file = SERVICE_ACCOUNT / "namespace"
    namespace = ns_file.read_text().strip() if ns_file.exists() else "default"
    server = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
    return Connection(
        server=server,
        ssl_context=ctx,
        headers={"Authorization": f"Bearer {token}"},
        namespace=namespace,
        source="in-cluster service account",
    )


def from_file(path: Path, *, context: str | None = None) -> Connection:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise errors.PermanentBackendError(f"cannot read kubeconfig {path}: {exc}") from exc
    name = context or doc.get("current-context")
    ctx = _named(doc, "contexts", name, path).get("context", {})
    cluster = _named(doc, "clusters", ctx.get("cluster"), path).get("cluster", {})
    user = _named(doc, "users", ctx.get("user"), path).get("user", {}) if ctx.get("user") else {}
    base = path.parent
    server = str(cluster.get("server", "")).rstrip("/")
    if not server:
        raise errors.PermanentBackendError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    ssl_ctx = _ssl_context(cluster, user, base)
    headers: dict[str, str] = {}
    exec_spec = user.get("exec")
    token = user.get("token")
    if user.get("tokenFile"):
        token = _resolve(base, user["tokenFile"]).read_text().strip()
    if exec_spec:
        token = _exec_token(exec_spec) or token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif user.get("username"):
        pair = f"{user['username']}:{user.get('password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    return Connection(
        server=server,
        ssl_context=ssl_ctx,
        headers=headers,
        namespace=str(ctx.get("namespace") or "default"),
        source=str(path),
        exec_spec=exec_spec or None,
    )


def _named(doc: dict[str, Any], key: str, name: object, path: Path) -> dict[str, Any]:
    for item in doc.get(key) or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    raise errors.PermanentBackendError(f"{path}: no {key[:-1]} named {name!r}")


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _data_file(data: str) -> str:
    """ssl wants files: write base64 ``-data`` to a private temporary file."""
    fd, name = tempfile.mkstemp(prefix="changeover-kube-")
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data))
    return name


def _ssl_context(cluster: dict[str, Any], user: dict[str, Any], base: Path) -> ssl.SSLContext:
    if cluster.get("insecure-skip-tls-verify"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
        ctx = ssl.create_default_context(cadata=pem)
    elif cluster.get("certificate-authority"):
        ctx = ssl.create_default_context(
            cafile=str(_resolve(base, cluster["certificate-authority"]))
        )
    else:
        ctx = ssl.create_default_context()
    cert = user.get("client-certificate")
    key = user.get("client-key")
    if user.get("client-certificate-data"):
        cert = _data_file(user["client-certificate-data"])
    if user.get("client-key-data"):
        key = _data_file(user["client-key-data"])
    if cert:
        ctx.load_cert_chain(
            str(_resolve(base, str(cert))), str(_resolve(base, str(key))) if key else None
        )
    return ctx


def _exec_token(spec: dict[str, Any]) -> str | None:
    argv = [str(spec.get("command", "")), *[str(a) for a in spec.get("args") or []]]
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []}}
    try:
        out = subprocess.run(argv, env=env, capture_output=True, check=True, timeout=60).stdout
        status = json.loads(out).get("status", {})
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise errors.PermanentBackendError(
            f"kubeconfig exec plugin {argv[0]} failed: {exc}"
        ) from exc
    token = status.get("token")
    return str(token) if token else None
