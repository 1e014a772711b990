"""Pure pieces of the CLI: when a wait is over, and how status is drawn."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from changeover import server_registry
from changeover.cli import render, wait


def test_old_healthy_status_is_not_this_applys_outcome() -> None:
    """Applied revision 3; the controller has not looked yet: Healthy is about 2."""
    waiter = wait.Waiter(name="chat", revision=3)
    assert not waiter.settled({"phase": "Healthy", "stableRevision": 2})
    assert not waiter.settled({"phase": "Progressing", "stableRevision": 2, "canaryRevision": 3})
    assert waiter.settled({"phase": "Healthy", "stableRevision": 3})


def test_old_aborted_status_is_not_this_applys_outcome() -> None:
    waiter = wait.Waiter(name="chat", revision=3)
    assert not waiter.settled({"phase": "Aborted", "stableRevision": 1, "canaryRevision": 2})
    assert waiter.settled({"phase": "Aborted", "stableRevision": 1, "canaryRevision": 3})


def test_any_terminal_phase_after_movement_counts() -> None:
    waiter = wait.Waiter(name="chat", revision=3)
    waiter.settled({"phase": "Progressing"})
    assert waiter.settled({"phase": "Degraded", "stableRevision": 2})


def test_unchanged_apply_takes_the_current_phase() -> None:
    assert wait.Waiter(name="chat", revision=2, unchanged=True).settled({"phase": "Healthy"})


@pytest.mark.parametrize(
    ("percent", "width", "drawn"),
    [(25, 8, "██░░░░░░"), (0, 4, "░░░░"), (100, 4, "████"), (1, 20, "█" + "░" * 19)],
)
def test_bar(percent: float, width: int, drawn: str) -> None:
    assert render.bar(percent, width).plain == drawn


@pytest.mark.parametrize(
    ("index", "total", "shown"), [(0, 4, "1/4"), (3, 4, "4/4"), (4, 4, "4/4"), (None, 4, "-")]
)
def test_step_text(index: int | None, total: int, shown: str) -> None:
    assert render.step_text({"currentStepIndex": index, "totalSteps": total}) == shown


def test_rollout_view_shows_each_revision_with_its_role_and_weight() -> None:
    status = {
        "name": "chat",
        "phase": "Paused",
        "message": "paused at step 2 of 4",
        "strategy": "canary",
        "revision": 2,
        "stableRevision": 1,
        "canaryRevision": 2,
        "currentStepIndex": 1,
        "totalSteps": 4,
        "weights": {"1": 80, "2": 20},
        "replicas": {"1": 3, "2": 1},
        "analysis": {"error-rate": {"phase": "Successful", "value": 0.01}},
        "endpoint": "http://127.0.0.1:8080",
    }
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(render.rollout_view(status, [{"time": 0, "reason": "R", "message": "m"}]))
    text = console.export_text()
    assert "chat" in text
    assert "Paused" in text
    assert "step 2/4" in text
    assert "1         stable" in text
    assert "2         canary" in text
    assert " 80%" in text
    assert "error-rate" in text


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:7070", ("127.0.0.1", 7070)),
        ("[::1]:7070", ("::1", 7070)),
        (":7070", ("127.0.0.1", 7070)),
    ],
)
def test_parse_listen(given: str, expected: tuple[str, int]) -> None:
    assert server_registry.parse_listen(given) == expected


def test_url_for_any_address_is_reached_on_loopback() -> None:
    assert server_registry.url_for("0.0.0.0", 7070) == "http://127.0.0.1:7070"
    assert server_registry.url_for("::", 7070) == "http://[::1]:7070"
