"""Where the CLI finds servers, and where ``serve`` keeps its state and token.

``changeover serve`` records itself in ``servers.json`` and marks itself current; every
other command resolves a server URL and a token from that file. The file lives at
``$CHANGEOVER_CONFIG`` (a file path; tests use it), else
``$XDG_CONFIG_HOME/changeover/servers.json``, else ``~/.config/changeover/servers.json``::

    {
      "current": "http://127.0.0.1:7070",
      "servers": {
        "http://127.0.0.1:7070": {
          "url": "http://127.0.0.1:7070",
          "token_file": "/home/me/.local/share/changeover/token",
          "state_dir": "/home/me/.local/share/changeover",
          "pid": 4242
        }
      }
    }

Resolution (``resolve``): the URL is ``--server`` / ``$CHANGEOVER_SERVER``, else the current
server, else ``http://127.0.0.1:7070``. The token is ``--token`` / ``$CHANGEOVER_TOKEN``,
else the contents of the token file recorded for that URL, else none (reads still work on
loopback; mutations will be refused with 401).

The token itself never goes into servers.json, only the path of a 0600 file beside the state.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from changeover import errors

DEFAULT_LISTEN = "127.0.0.1:7070"
DEFAULT_URL = "http://127.0.0.1:7070"
TOKEN_FILE = "token"


def config_path() -> Path:
    explicit = os.environ.get("CHANGEOVER_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "changeover" / "servers.json"


def default_state_dir() -> Path:
    explicit = os.environ.get("CHANGEOVER_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "changeover"


def normalize_url(url: str) -> str:
    """``127.0.0.1:7070/`` → ``http://127.0.0.1:7070``: one spelling per server, so a URL
    typed by hand finds the token recorded by ``serve``."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def parse_listen(listen: str) -> tuple[str, int]:
    """``127.0.0.1:7070`` → ("127.0.0.1", 7070); ``[::1]:7070`` → ("::1", 7070); ``:7070``
    → loopback."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise errors.SpecError.single(
            file="",
            path="--listen",
            message=f"expected HOST:PORT such as 127.0.0.1:7070, got {listen!r}",
        )
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def url_for(host: str, port: int) -> str:
    # A server bound to every address is reached on loopback by local clients.
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --- token ---------------------------------------------------------------------------------


def ensure_token(state_dir: Path) -> tuple[str, Path]:
    """Read ``state_dir/token``, creating it (0600, ``secrets.token_urlsafe(32)``) if absent.
    A token file others can read is tightened to 0600."""
    path = state_dir / TOKEN_FILE
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            # O_EXCL: two servers starting at once cannot both write different tokens.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                path.chmod(0o600)
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        token = path.read_text().strip()
    except OSError as exc:
        raise errors.PermanentBackendError(f"cannot prepare the token file {path}: {exc}") from exc
    if not token:
        raise errors.PermanentBackendError(f"the token file {path} is empty: delete it to renew")
    return token, path


# --- servers.json --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServerRecord:
    url: str
    token_file: str
    state_dir: str
    pid: int

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "token_file": self.token_file,
            "state_dir": self.state_dir,
            "pid": self.pid,
        }


def load() -> dict[str, Any]:
    """The parsed servers.json, or an empty config if there is none (or it is unreadable:
    a broken config file must not stop ``--server URL --token T`` from working)."""
    try:
        doc = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {"current": None, "servers": {}}
    if not isinstance(doc, dict) or not isinstance(doc.get("servers"), dict):
        return {"current": None, "servers": {}}
    return doc


def record_server(record: ServerRecord, *, make_current: bool = True) -> Path:
    """Add or replace ``record`` in servers.json (atomically) and make it current."""
    doc = load()
    url = normalize_url(record.url)
    doc["servers"][url] = {**record.as_json(), "url": url}
    if make_current:
        doc["current"] = url
    path = config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".servers.", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=2, sort_keys=True)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise errors.PermanentBackendError(f"cannot write {path}: {exc}") from exc
    return path


def find_server(url: str) -> ServerRecord | None:
    entry = load()["servers"].get(normalize_url(url))
    if not isinstance(entry, dict):
        return None
    try:
        return ServerRecord(
            url=str(entry["url"]),
            token_file=str(entry["token_file"]),
            state_dir=str(entry.get("state_dir", "")),
            pid=int(entry.get("pid", 0)),
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, kw_only=True)
class Target:
    """The server a CLI command talks to."""

    url: str
    token: str | None
    # Where the token came from, for error messages ("--token", a file path, or None).
    token_source: str | None = None


def resolve(*, server: str | None = None, token: str | None = None) -> Target:
    """Pick the server URL and token (see the module docstring for the order).
    ``server``/``token`` are the flag values, with Typer already folding in the env vars."""
    if server:
        url = normalize_url(server)
    else:
        current = load().get("current")
        url = normalize_url(current) if isinstance(current, str) and current else DEFAULT_URL
    if token:
        return Target(url=url, token=token.strip(), token_source="--token")
    record = find_server(url)
    if record is not None:
        with contextlib.suppress(OSError):
            text = Path(record.token_file).read_text().strip()
            if text:
                return Target(url=url, token=text, token_source=record.token_file)
    return Target(url=url, token=None)
