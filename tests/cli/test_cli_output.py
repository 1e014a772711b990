"""The CLI where its output is not a terminal, and the smaller things a user notices:
nothing cut at 80 columns, flags shown as flags, one final line, the right exit code on
Ctrl-C, and traffic, roles and failures drawn as they are."""

from __future__ import annotations

import importlib.metadata
import io
from pathlib import Path

import pytest
import yaml
from cli_helpers import Cli, LiveServer
from rich.console import Console
from test_cli_commands import ok, write_spec

from changeover.cli import read_commands, render
from changeover.spec import models

LONG_HOST = "a-rather-long-hostname-for-this-service.internal.example"


def test_version_is_the_package_version(cli: Cli) -> None:
    """`changeover --version` prints the one version the package declares, and the operator
    image the manifests default to is that version's."""
    import changeover
    from changeover.platforms.kubernetes import manifests

    result = ok(cli("--version"))
    assert result.stdout == f"changeover {changeover.__version__}\n"
    assert changeover.__version__ == importlib.metadata.version("changeover")
    assert f"changeover:{changeover.__version__}" == manifests.DEFAULT_IMAGE


def test_recommend_redirected_to_a_file_is_whole_yaml(cli: Cli) -> None:
    """`changeover recommend --critical > rollout.yaml` cut lines at 80 columns; now the
    file is the spec (reasons as comments), it parses, and stderr says defaults were used."""
    result = ok(cli("recommend", "--critical"))
    assert result.stdout.startswith("# Recommended: ")
    doc = yaml.safe_load(result.stdout)
    models.Rollout.model_validate(doc)
    assert all(not line.startswith(("╭", "│", "•")) for line in result.stdout.splitlines())
    assert "no terminal to ask on" in result.stderr
    assert "--critical" in result.stderr


def test_get_without_a_terminal_keeps_every_column_whole(
    cli: Cli, live: LiveServer, tmp_path: Path
) -> None:
    ok(cli("apply", "-f", str(write_spec(tmp_path)), *live.opts()))
    endpoint = f"http://{LONG_HOST}:18080/with/a/path/that/is/long"
    live.service.rollouts["chat"].status["endpoint"] = endpoint
    listing = ok(cli("get", *live.opts())).stdout
    assert endpoint in listing
    assert all("…" not in line for line in listing.splitlines())
    assert all(line == line.rstrip() for line in listing.splitlines())
    one = ok(cli("get", "chat", *live.opts())).stdout
    assert endpoint in one


@pytest.mark.parametrize("command", [["apply"], ["get"], ["--help"], ["servers", "forget"]])
def test_help_shows_flags_without_a_value(cli: Cli, command: list[str]) -> None:
    args = [*command, "--help"] if command != ["--help"] else command
    result = ok(cli(*args, env={"COLUMNS": "160"}))
    assert "<bool>" not in result.stdout
    assert "--help" in result.stdout


def test_apply_wait_prints_its_outcome_once(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    result = ok(cli("apply", "-f", str(write_spec(tmp_path)), "--wait", *live.opts()))
    both = result.stdout + result.stderr
    assert both.count("rollout/chat: Healthy") == 1, both


def test_get_watch_ends_with_130_on_ctrl_c(
    cli: Cli, live: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(cli("apply", "-f", str(write_spec(tmp_path)), *live.opts()))

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(read_commands.time, "sleep", interrupt)
    result = cli("get", "chat", "--watch", *live.opts())
    assert result.exit_code == 130, result.output


def draw(status: dict[str, object]) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(render.rollout_view(status))
    return console.export_text()


def test_ab_test_shows_b_with_its_share_of_users() -> None:
    """weights {1: 100} with 30% of users sticky on revision 2: B serves 30%, A 70%."""
    text = draw(
        {
            "name": "chat",
            "phase": "Progressing",
            "strategy": "abTest",
            "revision": 2,
            "stableRevision": 1,
            "canaryRevision": 2,
            "weights": {"1": 100},
            "sticky": {"revision": 2, "weight": 30},
            "replicas": {"1": 2, "2": 2},
        }
    )
    rows = {line.split()[0]: line for line in text.splitlines() if line[:1] in ("1", "2")}
    assert " A " in rows["1"] and "70%" in rows["1"]
    assert " B " in rows["2"] and "30%" in rows["2"] and "of users" in rows["2"]
    listing = Console(width=200, record=True, file=io.StringIO())
    listing.print(
        render.rollouts_table(
            [{"name": "chat", "weights": {"1": 100}, "sticky": {"revision": 2, "weight": 30}}]
        )
    )
    assert "1:70% 2:30%" in listing.export_text()


def test_blue_green_roles_are_active_and_preview() -> None:
    text = draw(
        {
            "name": "web",
            "phase": "Paused",
            "strategy": "blueGreen",
            "revision": 2,
            "stableRevision": 1,
            "canaryRevision": 2,
            "weights": {"1": 100},
            "replicas": {"1": 2, "2": 2},
        }
    )
    assert "active" in text and "preview" in text
    assert "stable" not in text and "canary" not in text


def test_get_shows_restarts_and_the_last_failure_per_revision() -> None:
    text = draw(
        {
            "name": "chat",
            "phase": "Degraded",
            "strategy": "rollingUpdate",
            "revision": 1,
            "replicas": {"1": 0},
            "revisionStates": {
                "1": {
                    "desired": 1,
                    "ready": 0,
                    "restarts": 4,
                    "lastFailure": "cannot execute 'pythn3': No such file or directory",
                    "lastFailureAt": 0,
                    "notReady": None,
                }
            },
        }
    )
    row = next(line for line in text.splitlines() if line.startswith("1 "))
    assert row.split()[-1] == "4" and "0/1" in row
    assert "last failure" in text and "cannot execute 'pythn3'" in text
