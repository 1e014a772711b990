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
server, else ``http://127.0.0.1:7070``. A current server that is gone (its recorded process
is not running, or nothing listens on its port) gives way to a recorded one that is live,
with a note on stderr (``Target.note``); ``changeover servers`` lists, switches (``use``)
and forgets them, as ``kubectl config get-contexts/use-context/delete-context`` do.
The token is ``--token`` / ``$CHANGEOVER_TOKEN``, else the contents of the token file
recorded for that URL, else none (reads still work on loopback; mutations will be refused
with 401).

The token itself never goes into servers.json, only the path of a 0600 file beside the state.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    return _save(doc)


def _save(doc: dict[str, Any]) -> Path:
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
    return _record(load()["servers"].get(normalize_url(url)))


def _record(entry: Any) -> ServerRecord | None:
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


def servers() -> list[ServerRecord]:
    """Every recorded server, in URL order (unreadable entries are skipped)."""
    found = [_record(entry) for entry in load()["servers"].values()]
    return sorted((r for r in found if r is not None), key=lambda r: r.url)


def current_url() -> str | None:
    current = load().get("current")
    return normalize_url(current) if isinstance(current, str) and current else None


def _known(url: str, doc: dict[str, Any]) -> str:
    key = normalize_url(url)
    if key not in doc["servers"]:
        have = ", ".join(sorted(doc["servers"])) or "none"
        raise errors.NotFound(f"no server {key} in {config_path()} (recorded: {have})")
    return key


def use_server(url: str) -> str:
    """Make the recorded server ``url`` current; NotFound naming the recorded ones."""
    doc = load()
    doc["current"] = _known(url, doc)
    _save(doc)
    return str(doc["current"])


def forget_server(url: str) -> str:
    """Remove ``url`` from servers.json; if it was current, no server is current."""
    doc = load()
    key = _known(url, doc)
    del doc["servers"][key]
    if doc.get("current") == key:
        doc["current"] = None
    _save(doc)
    return key


def pid_running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def is_live(record: ServerRecord, *, timeout: float = 0.5) -> bool:
    """Its recorded process runs and something accepts connections on its port."""
    if record.pid and not pid_running(record.pid):
        return False
    parts = urlsplit(record.url)
    if parts.hostname is None:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True, kw_only=True)
class Target:
    """The server a CLI command talks to."""

    url: str
    token: str | None
    # Where the token came from, for error messages ("--token", a file path, or None).
    token_source: str | None = None
    # Said to the user on stderr: the current server was gone and another one is used.
    note: str = ""


def resolve(*, server: str | None = None, token: str | None = None) -> Target:
    """Pick the server URL and token (see the module docstring for the order).
    ``server``/``token`` are the flag values, with Typer already folding in the env vars."""
    note = ""
    if server:
        url = normalize_url(server)
    else:
        url, note = _implicit_url()
    if token:
        return Target(url=url, token=token.strip(), token_source="--token", note=note)
    record = find_server(url)
    if record is not None:
        with contextlib.suppress(OSError):
            text = Path(record.token_file).read_text().strip()
            if text:
                return Target(url=url, token=text, token_source=record.token_file, note=note)
    return Target(url=url, token=None, note=note)


def _implicit_url() -> tuple[str, str]:
    """The current server; if it is gone, a live recorded one and a word saying so."""
    current = current_url()
    record = find_server(current) if current else None
    if record is not None and is_live(record):
        return current or DEFAULT_URL, ""
    others = [r for r in servers() if normalize_url(r.url) != current]
    live = next((r for r in others if is_live(r)), None)
    if live is None:
        return current or DEFAULT_URL, ""
    url = normalize_url(live.url)
    if current is None:
        return url, f"no current server: using {url} (`changeover servers use URL` to pick one)"
    return url, (
        f"the current server {current} is gone: using {url} "
        f"(`changeover servers use {url}` makes it current, "
        f"`changeover servers forget {current}` forgets the old one)"
    )
