"""``changeover logs NAME [--revision N] [--tail N] [-f]``: replicas' and hooks' output.

The server reads the local platform's log files (``platforms.local.logs``); with several
files each line is prefixed by where it came from (``[2/chat-2-ab12]``, ``[hook chat_2_pre_1]``).
``-f`` polls every half second with the offsets read so far, so new lines and new replicas
appear as they are written, until Ctrl-C (exit 130).
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from changeover import errors
from changeover.cli import app as app_mod

app = app_mod.app
JSON = dict[str, Any]
FOLLOW_SECONDS = 0.5


def _label(entry: JSON) -> str:
    log_id = str(entry.get("id", "?")).removesuffix(".log")
    if entry.get("kind") == "hook":
        return f"hook {log_id.removeprefix('hooks/')}"
    return log_id


def _write(entries: list[JSON], *, prefix: bool, offsets: dict[str, int]) -> None:
    for entry in entries:
        offsets[str(entry["id"])] = int(entry["end"])
        text = str(entry.get("text") or "")
        if not text:
            continue
        if prefix:
            label = f"[{_label(entry)}] "
            text = "".join(label + line for line in text.splitlines(keepends=True))
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


@app.command()
def logs(
    name: app_mod.NameArg,
    revision: Annotated[
        int | None, typer.Option("--revision", min=1, help="Only this revision's replicas.")
    ] = None,
    tail: Annotated[
        int, typer.Option("--tail", min=0, help="Lines to show from the end of each log.")
    ] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until Ctrl-C.")
    ] = False,
    server: app_mod.ServerOpt = None,
    token: app_mod.TokenOpt = None,
) -> None:
    """Output (stdout and stderr) of a rollout's replicas and hooks."""
    with app_mod.client(server, token) as client:
        reader = getattr(client, "logs", None)
        if reader is None:
            raise errors.StateError("on Kubernetes, read replicas' output with `kubectl logs`")
        offsets: dict[str, int] = {}
        entries = reader(name, revision=revision, tail=tail, since={})
        if not entries and not follow:
            app_mod.err_line(f"rollout/{name}: no logs yet" + _which(revision))
        prefix = len(entries) > 1 or follow
        _write(entries, prefix=prefix, offsets=offsets)
        while follow:
            time.sleep(FOLLOW_SECONDS)
            try:
                # Files seen so far from where we stopped; new ones (a replica started
                # since) from their beginning.
                entries = reader(name, revision=revision, tail=1_000_000, since=offsets)
            except errors.TemporaryBackendError as exc:
                app_mod.err_line(f"{exc}; retrying", style="yellow")
                continue
            _write(entries, prefix=True, offsets=offsets)


def _which(revision: int | None) -> str:
    return f" for revision {revision}" if revision is not None else ""
