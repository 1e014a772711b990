"""The CLI against a real API server on loopback: exit codes, -o json, token lookup."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
from cli_helpers import Cli, LiveServer
from typer.testing import Result

from changeover import server_registry
from changeover.cli.main import app

SPEC = """\
apiVersion: changeover.dev/v1alpha1
kind: Rollout
metadata:
  name: chat
  annotations: {{fake.changeover.dev/outcome: {outcome}}}
spec:
  replicas: 2
  template:
    command: ["python3", "-m", "http.server", "$(PORT)", "--version", "{version}"]
  service:
    port: 18080
  strategy:
    canary:
      steps:
        - setWeight: 20
        - pause: {{}}
"""


def write_spec(tmp_path: Path, *, version: str = "v1", outcome: str = "Healthy") -> Path:
    path = tmp_path / f"chat-{version}.yaml"
    path.write_text(SPEC.format(version=version, outcome=outcome))
    return path


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


# --- apply ---------------------------------------------------------------------------------


def test_apply_prints_what_happened(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    result = ok(cli("apply", "-f", str(write_spec(tmp_path)), *live.opts()))
    assert "rollout/chat created (revision 1)" in result.stdout
    assert live.service.calls[0][:2] == ("apply", "chat")


def test_apply_from_stdin_reads_it_once(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    text = write_spec(tmp_path).read_text()
    result = cli.runner.invoke(app, ["apply", "-f", "-", *live.opts()], input=text)
    assert result.exit_code == 0, result.output
    assert "rollout/chat created (revision 1)" in result.stdout


def test_apply_json_output(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    result = ok(cli("apply", "-f", str(write_spec(tmp_path)), "-o", "json", *live.opts()))
    assert json.loads(result.stdout) == {
        "results": [{"name": "chat", "revision": 1, "action": "created"}]
    }


def test_apply_wait_healthy_exits_0(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    result = ok(cli("apply", "-f", str(write_spec(tmp_path)), "--wait", *live.opts()))
    assert "rollout/chat: Healthy" in result.stdout


@pytest.mark.parametrize("outcome", ["Aborted", "Degraded"])
def test_apply_wait_failure_exits_1_with_phase_and_message(
    cli: Cli, live: LiveServer, tmp_path: Path, outcome: str
) -> None:
    spec = write_spec(tmp_path, outcome=outcome)
    result = cli("apply", "-f", str(spec), "--wait", "-o", "json", *live.opts())
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["statuses"][0]["phase"] == outcome
    assert "analysis failed" in doc["statuses"][0]["message"]


def test_apply_wait_times_out_with_exit_1(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    live.service.polls_to_finish = 10_000
    result = cli(
        "apply", "-f", str(write_spec(tmp_path)), "--wait", "--timeout", "0.2", *live.opts()
    )
    assert result.exit_code == 1
    assert "timed out" in result.stderr
    assert "chat (Progressing)" in result.stderr


def test_bad_spec_exits_2_naming_file_and_field(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        SPEC.format(version="v1", outcome="Healthy").replace("replicas: 2", "replicas: -1")
    )
    result = cli("apply", "-f", str(bad), *live.opts())
    assert result.exit_code == 2
    assert f"{bad}: spec.replicas:" in result.stderr
    assert "Traceback" not in result.output
    assert live.service.calls == []


def test_server_side_spec_error_exits_2(
    cli: Cli, live: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from changeover import errors

    async def refuse(documents: object, *, source: str) -> list[object]:
        raise errors.SpecError.single(file=source, path="spec.service.port", message="taken")

    monkeypatch.setattr(live.service, "apply", refuse)
    spec = write_spec(tmp_path)
    result = cli("apply", "-f", str(spec), *live.opts())
    assert result.exit_code == 2
    assert f"{spec}: spec.service.port: taken" in result.stderr


def test_missing_file_exits_2(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    result = cli("apply", "-f", str(tmp_path / "nope.yaml"), *live.opts())
    assert result.exit_code == 2
    assert "nope.yaml" in result.stderr


# --- reads ---------------------------------------------------------------------------------


def test_status_json_has_the_contract_fields(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    ok(cli("apply", "-f", str(write_spec(tmp_path)), *live.opts()))
    result = ok(cli("status", "chat", "-o", "json", *live.opts()))
    doc = json.loads(result.stdout)
    for key in (
        "name",
        "phase",
        "message",
        "strategy",
        "stableRevision",
        "canaryRevision",
        "currentStepIndex",
        "weights",
        "replicas",
        "analysis",
    ):
        assert key in doc
    assert result.stderr == ""


def test_get_list_and_one_and_history(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    ok(cli("apply", "-f", str(write_spec(tmp_path)), *live.opts()))
    ok(cli("apply", "-f", str(write_spec(tmp_path, version="v2")), *live.opts()))
    listed = json.loads(ok(cli("get", "-o", "json", *live.opts())).stdout)
    assert [r["name"] for r in listed] == ["chat"]
    one = json.loads(ok(cli("get", "chat", "-o", "json", *live.opts())).stdout)
    assert one["name"] == "chat"
    assert [e["reason"] for e in one["events"]][:1] == ["RolloutUpdated"]
    table = ok(cli("get", "chat", *live.opts())).stdout
    assert "chat" in table
    assert "REVISION" in table
    history = json.loads(ok(cli("history", "chat", "-o", "json", *live.opts())).stdout)
    assert [h["revision"] for h in history] == [1, 2]
    assert "python3 -m http.server" in ok(cli("history", "chat", *live.opts())).stdout


def test_get_watch_until_done_returns_on_terminal_phase(
    cli: Cli, live: LiveServer, tmp_path: Path
) -> None:
    ok(cli("apply", "-f", str(write_spec(tmp_path, outcome="Aborted")), *live.opts()))
    result = cli("get", "chat", "--watch", "--until-done", *live.opts())
    assert result.exit_code == 1
    assert "Aborted" in result.stdout


def test_unknown_rollout_exits_1(cli: Cli, live: LiveServer) -> None:
    result = cli("status", "ghost", *live.opts())
    assert result.exit_code == 1
    assert "error: rollout 'ghost' not found" in result.stderr


# --- commands ------------------------------------------------------------------------------


def test_commands_reach_the_server(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    ok(cli("apply", "-f", str(write_spec(tmp_path)), *live.opts()))
    ok(cli("apply", "-f", str(write_spec(tmp_path, version="v2")), *live.opts()))
    assert "paused" in ok(cli("pause", "chat", *live.opts())).stdout
    ok(cli("resume", "chat", *live.opts()))
    ok(cli("promote", "chat", "--full", *live.opts()))
    ok(cli("undo", "chat", "--to-revision", "1", *live.opts()))
    ok(cli("abort", "chat", *live.opts()))
    ok(cli("retry", "chat", *live.opts()))
    ok(cli("delete", "chat", *live.opts()))
    assert [(c[0], c[2]) for c in live.service.calls if c[0] != "apply"] == [
        ("pause", {}),
        ("resume", {}),
        ("promote", {"full": True}),
        ("undo", {"toRevision": 1}),
        ("abort", {}),
        ("retry", {}),
        ("delete", {}),
    ]


def test_state_error_exits_1(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    ok(cli("apply", "-f", str(write_spec(tmp_path)), *live.opts()))
    result = cli("resume", "chat", *live.opts())
    assert result.exit_code == 1
    assert "chat is not paused" in result.stderr


def test_bad_usage_exits_2(cli: Cli, live: LiveServer) -> None:
    assert cli("undo", "chat", "--to-revision", "zero", *live.opts()).exit_code == 2
    assert cli("status", "-o", "yaml", "chat", *live.opts()).exit_code == 2


# --- server and token lookup ---------------------------------------------------------------


def test_unreachable_server_message(cli: Cli) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = cli("get", "--server", url)
    assert result.exit_code == 1
    assert (
        f"cannot reach the changeover server at {url}: is `changeover serve` running?"
        in result.stderr
    )
    assert "`changeover servers` lists" in result.stderr


def record(live: LiveServer, tmp_path: Path, token: str | None = None) -> Path:
    token_file = tmp_path / "state" / "token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text((token or live.token) + "\n")
    server_registry.record_server(
        server_registry.ServerRecord(
            url=live.url, token_file=str(token_file), state_dir=str(token_file.parent), pid=1
        )
    )
    return token_file


def test_token_is_found_from_config_by_url(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    record(live, tmp_path)
    # No --server, no --token: the current server and its token file.
    ok(cli("apply", "-f", str(write_spec(tmp_path))))
    # A differently spelled URL for the same server finds the same token.
    bare = live.url.removeprefix("http://") + "/"
    ok(cli("pause", "chat", "--server", bare))


def test_token_flag_and_env_override_the_file(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    record(live, tmp_path, token="stale-token")
    spec = str(write_spec(tmp_path))
    refused = cli("apply", "-f", spec)
    assert refused.exit_code == 1
    assert "not authorized" in refused.stderr
    assert "token" in refused.stderr
    ok(cli("apply", "-f", spec, "--token", live.token))
    ok(cli("pause", "chat", env={"CHANGEOVER_TOKEN": live.token}))


def test_server_env_var_picks_the_url(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    result = ok(cli("get", "-o", "json", env={"CHANGEOVER_SERVER": live.url}))
    assert json.loads(result.stdout) == []


def test_mutation_without_any_token_says_how_to_get_one(
    cli: Cli, live: LiveServer, tmp_path: Path
) -> None:
    result = cli("apply", "-f", str(write_spec(tmp_path)), "--server", live.url)
    assert result.exit_code == 1
    assert "CHANGEOVER_TOKEN" in result.stderr


# --- lint, recommend, internal errors ------------------------------------------------------


def test_lint(cli: Cli, tmp_path: Path) -> None:
    good = write_spec(tmp_path)
    assert "ok" in ok(cli("lint", str(good))).stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        SPEC.format(version="v1", outcome="x").replace("setWeight: 20", "setWeight: 150")
    )
    result = cli("lint", str(bad))
    assert result.exit_code == 2
    assert "setWeight" in result.stderr
    doc = json.loads(cli("lint", str(bad), "-o", "json").stdout)
    assert doc["ok"] is False
    assert doc["problems"][0]["file"] == str(bad)


def test_recommend_from_flags_json(cli: Cli) -> None:
    result = ok(cli("recommend", "--downtime-ok", "--high-risk", "-o", "json"))
    assert json.loads(result.stdout)["strategy"] == "canary"


def test_internal_error_is_one_line_without_traceback(
    cli: Cli, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from changeover.cli import api_client

    def broken(self: object) -> list[object]:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(api_client.Client, "list_rollouts", broken)
    result = cli("get", *live.opts())
    assert result.exit_code == 1
    assert "internal error: ZeroDivisionError: oops" in result.stderr
    assert "--debug" in result.stderr
    assert "Traceback" not in result.output
    debug = cli("--debug", "get", *live.opts())
    assert "Traceback" in debug.stderr


# --- serve's bookkeeping -------------------------------------------------------------------


def test_serve_records_the_server_and_a_private_token(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_config: Path
) -> None:
    from changeover import local_server

    seen: dict[str, object] = {}

    def fake_serve(**kwargs: object) -> None:
        seen.update(kwargs)
        kwargs["on_ready"]("http://127.0.0.1:7171")  # type: ignore[operator]

    monkeypatch.setattr(local_server, "serve", fake_serve)
    state = tmp_path / "state"
    result = ok(cli("serve", "--state-dir", str(state), "--listen", "127.0.0.1:7171"))
    token_file = state / "token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert seen["token"] == token_file.read_text().strip()
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 7171)
    assert str(token_file) in result.stdout
    doc = json.loads(isolated_config.read_text())
    assert doc["current"] == "http://127.0.0.1:7171"
    entry = doc["servers"]["http://127.0.0.1:7171"]
    assert entry["token_file"] == str(token_file)
    assert entry["state_dir"] == str(state.resolve())
    # A second start reuses the token.
    ok(cli("serve", "--state-dir", str(state), "--listen", "127.0.0.1:7171"))
    assert seen["token"] == token_file.read_text().strip()
    target = server_registry.resolve()
    assert (target.url, target.token) == ("http://127.0.0.1:7171", seen["token"])


def test_serve_rejects_a_bad_listen_address(cli: Cli, tmp_path: Path) -> None:
    result = cli("serve", "--state-dir", str(tmp_path), "--listen", "localhost")
    assert result.exit_code == 2
    assert "--listen" in result.stderr
