"""Reading the logs the local platform writes, for ``changeover logs``.

Replicas append to ``state_dir/logs/<rollout>/<revision>/<replica>.log`` (stdout and stderr
together, one banner line per start); hooks write ``state_dir/logs/<rollout>/hooks/<id>.log``.
``read`` returns, per file, either its last ``tail`` lines or what was appended after a
given offset (``changeover logs -f`` polls with the offsets it has)::

    read(state_dir, "chat", revision=2, tail=100, since={})
    → [{"id": "2/chat-2-ab12.log", "kind": "replica", "revision": 2, "text": "...",
        "offset": 0, "end": 5120, "path": "/.../logs/chat/2/chat-2-ab12.log"}, ...]

Files are found by listing the rollout's own directories, never by a path from the request;
symlinks are skipped. One answer carries at most ``MAX_BYTES`` per file; the rest comes with
the next poll.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_BYTES = 256 * 1024


def _files(root: Path, rollout: str, revision: int | None) -> list[tuple[str, str, int | None]]:
    """(id, kind, revision) of every log file of ``rollout`` (of ``revision`` when given)."""
    found: list[tuple[str, str, int | None]] = []
    try:
        dirs = sorted(os.scandir(root / rollout), key=lambda e: e.name)
    except OSError:
        return []
    for entry in dirs:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if entry.name == "hooks":
            found += _hook_files(Path(entry.path), rollout, revision)
        elif entry.name.isdigit() and (revision is None or int(entry.name) == revision):
            number = int(entry.name)
            found += [(f"{entry.name}/{n}", "replica", number) for n in _names(Path(entry.path))]
    return found


def _hook_files(
    directory: Path, rollout: str, revision: int | None
) -> list[tuple[str, str, int | None]]:
    # Hook ids are "<rollout>:<revision>:<point>:<attempt>", ':' written as '_'.
    prefix = f"{rollout}_{revision}_" if revision is not None else f"{rollout}_"
    return [
        (f"hooks/{name}", "hook", _hook_revision(rollout, name))
        for name in _names(directory)
        if name.startswith(prefix)
    ]


def _names(directory: Path) -> list[str]:
    try:
        return sorted(
            e.name
            for e in os.scandir(directory)
            if e.name.endswith(".log") and e.is_file(follow_symlinks=False)
        )
    except OSError:
        return []


def _hook_revision(rollout: str, name: str) -> int | None:
    field = name[len(rollout) + 1 :].split("_", 1)[0]
    return int(field) if field.isdigit() else None


def _tail_start(path: Path, size: int, lines: int) -> int:
    """The offset where the last ``lines`` lines of the file begin (within MAX_BYTES).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     _ = f.write(b"one\\ntwo\\nthree\\n"); f.flush()
    ...     _tail_start(Path(f.name), 14, 2), _tail_start(Path(f.name), 14, 9)
    (4, 0)
    """
    if lines <= 0:
        return size
    start = max(0, size - MAX_BYTES)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(size - start)
    kept = data.splitlines(keepends=True)[-lines:]
    return size - sum(len(line) for line in kept)


def _read(path: Path, offset: int, size: int) -> tuple[str, int]:
    """Whole lines from ``offset`` (at most MAX_BYTES), and the offset after them."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(min(size - offset, MAX_BYTES))
    if len(data) == MAX_BYTES and b"\n" in data:
        data = data[: data.rfind(b"\n") + 1]
    return data.decode("utf-8", errors="replace"), offset + len(data)


def read(
    state_dir: Path,
    rollout: str,
    *,
    revision: int | None,
    tail: int,
    since: Mapping[str, int],
) -> list[dict[str, Any]]:
    """Each log file of ``rollout``: from ``since[id]`` if given, else its last ``tail``
    lines. A file now shorter than its offset (recreated) is read from the start."""
    root = Path(state_dir) / "logs"
    out = []
    for log_id, kind, rev in _files(root, rollout, revision):
        path = root / rollout / log_id
        try:
            size = path.stat().st_size
            offset = since.get(log_id)
            if offset is None:
                offset = _tail_start(path, size, tail)
            elif offset > size:
                offset = 0
            text, end = _read(path, offset, size)
        except OSError:
            continue
        out.append(
            {
                "id": log_id,
                "kind": kind,
                "revision": rev,
                "path": str(path),
                "offset": offset,
                "end": end,
                "text": text,
            }
        )
    return out
