"""Where a router process keeps its files, and how ``serve`` finds one that is running.

Per rollout, ``state_dir/routers/<key>/`` (mode 0700) holds:

- ``config.json``: what to run (router name and factory arguments), written by ``serve``;
- ``routing.json``: the routing state (``codec.Routing``), rewritten atomically by the
  router process after every change, and replayed by a fresh one;
- ``process.json``: the running router process (pid, create time, socket, ports, config
  digest), written by the router process once it serves;
- ``router.log``: its output.

The control socket lives under a short private directory (``/tmp/changeover-<uid>/``):
Unix socket paths must stay under 108 bytes, and a state dir may be deep.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROUTERS = "routers"
VERSION_ENV = "CHANGEOVER_ROUTER_VERSION"


@functools.cache
def code_version() -> str:
    """The version a router process runs: changeover's, plus a digest of its sources, so an
    upgraded (or edited) changeover replaces running router processes (with a socket
    handover) instead of adopting them. ``$CHANGEOVER_ROUTER_VERSION`` overrides it."""
    explicit = os.environ.get(VERSION_ENV)
    if explicit:
        return explicit
    import changeover

    root = Path(changeover.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        with contextlib.suppress(OSError):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return f"{changeover.__version__}+{h.hexdigest()[:12]}"


def _key(state_dir: Path, rollout: str) -> str:
    return hashlib.sha256(f"{state_dir.resolve()}\0{rollout}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RouterPaths:
    root: Path
    socket: Path

    @classmethod
    def of(cls, state_dir: Path, rollout: str) -> RouterPaths:
        key = _key(state_dir, rollout)
        sockets = Path(tempfile.gettempdir()) / f"changeover-{os.getuid()}"
        return cls(root=Path(state_dir) / ROUTERS / key, socket=sockets / f"r-{key}.sock")

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def routing(self) -> Path:
        return self.root / "routing.json"

    @property
    def process(self) -> Path:
        return self.root / "process.json"

    @property
    def log(self) -> Path:
        return self.root / "router.log"

    def make(self) -> None:
        for d in (self.root.parent, self.root, self.socket.parent):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(OSError):
                os.chmod(d, 0o700)


def all_paths(state_dir: Path) -> list[RouterPaths]:
    """Every router directory under ``state_dir`` (for ``changeover down``)."""
    root = Path(state_dir) / ROUTERS
    out = []
    with contextlib.suppress(OSError):
        for d in sorted(root.iterdir()):
            sockets = Path(tempfile.gettempdir()) / f"changeover-{os.getuid()}"
            out.append(RouterPaths(root=d, socket=sockets / f"r-{d.name}.sock"))
    return out


def digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def write_json(path: Path, data: Any) -> None:
    """Atomically (temp file + rename), private (0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, sort_keys=True)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The document at ``path``, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
