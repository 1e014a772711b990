"""`changeover servers` (list / use / forget) and the fall-back from a current server that
is gone to a recorded one that is live."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from cli_helpers import TOKEN, Cli, LiveServer
from test_cli_commands import ok, write_spec

from changeover import server_registry


def record(url: str, tmp_path: Path, *, pid: int, token: str = TOKEN) -> None:
    token_file = tmp_path / f"token-{pid}"
    token_file.write_text(token + "\n")
    server_registry.record_server(
        server_registry.ServerRecord(
            url=url, token_file=str(token_file), state_dir=str(tmp_path), pid=pid
        )
    )


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_gone_current_server_gives_way_to_a_live_one(
    cli: Cli, live: LiveServer, tmp_path: Path
) -> None:
    """servers.json pointed at a server that had gone: every command failed until
    CHANGEOVER_SERVER was set. Now the live one is used, and the user is told."""
    record(live.url, tmp_path, pid=os.getpid())
    gone = closed_url()
    record(gone, tmp_path, pid=dead_pid())  # recorded last: it is current
    assert server_registry.current_url() == gone
    result = ok(cli("apply", "-f", str(write_spec(tmp_path))))
    assert "rollout/chat created" in result.stdout
    assert f"the current server {gone} is gone: using {live.url}" in result.stderr
    assert f"changeover servers use {live.url}" in result.stderr


def test_servers_lists_uses_and_forgets(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    record(live.url, tmp_path, pid=os.getpid())
    gone = closed_url()
    record(gone, tmp_path, pid=dead_pid())
    listing = ok(cli("servers")).stdout
    lines = {url: line for line in listing.splitlines() for url in (gone, live.url) if url in line}
    assert lines[gone].startswith("*") and "gone" in lines[gone]
    assert "live" in lines[live.url] and not lines[live.url].startswith("*")

    ok(cli("servers", "use", live.url))
    assert server_registry.current_url() == live.url
    doc = json.loads(ok(cli("servers", "-o", "json")).stdout)
    assert doc["current"] == live.url
    assert {s["url"]: s["live"] for s in doc["servers"]} == {live.url: True, gone: False}

    assert f"forgot {gone}" in ok(cli("servers", "forget", "--gone")).stdout
    assert [r.url for r in server_registry.servers()] == [live.url]
    ok(cli("servers", "forget", live.url))
    assert server_registry.servers() == [] and server_registry.current_url() is None


def test_servers_use_of_an_unknown_url_names_the_recorded_ones(
    cli: Cli, live: LiveServer, tmp_path: Path
) -> None:
    record(live.url, tmp_path, pid=os.getpid())
    result = cli("servers", "use", "http://127.0.0.1:1")
    assert result.exit_code == 1
    assert "no server http://127.0.0.1:1" in result.stderr and live.url in result.stderr
    assert server_registry.current_url() == live.url
    assert cli("servers", "forget").exit_code == 2
