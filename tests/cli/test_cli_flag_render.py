"""The CLI's flag views: what `get flags`, `get flag/NAME` and `history flag/NAME` print."""

from __future__ import annotations

from rich.console import Console

from changeover.cli import render_flag

STATUS = {
    "kind": "Flag",
    "name": "checkout",
    "revision": 3,
    "phase": "Paused",
    "message": "paused at step 2 (until promote)",
    "enabled": True,
    "type": "boolean",
    "defaultVariant": "off",
    "split": {"on": 10},
    "rules": 2,
    "rollout": {"variant": "on", "stepIndex": 1, "totalSteps": 4, "weight": 10},
}


def text(renderable: object) -> str:
    console = Console(width=120, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_one_flag_shows_its_state_split_and_rollout_step() -> None:
    out = text(
        render_flag.flag_view(STATUS, [{"time": 0, "reason": "SetWeight", "message": "on at 10%"}])
    )
    assert "checkout" in out and "Paused" in out and "revision 3" in out
    assert "default off   split on 10%   2 rules" in out
    assert "rollout of on: step 2/4" in out
    assert "SetWeight" in out and "on at 10%" in out
    off = text(render_flag.flag_view({**STATUS, "enabled": False, "rollout": None}))
    assert "OFF (everyone gets the default)" in off


def test_the_list_and_the_history() -> None:
    table = text(render_flag.flags_table([STATUS]))
    assert "checkout" in table and "on 10%" in table
    history = text(
        render_flag.history_table(
            [
                {"revision": 1, "createdAt": 0, "enabled": True, "split": {"on": 5}, "changes": []},
                {
                    "revision": 2,
                    "createdAt": 0,
                    "enabled": False,
                    "split": {},
                    "changes": ["enabled", "split"],
                    "current": True,
                },
            ]
        )
    )
    assert "on 5%" in history and "enabled, split" in history and "current" in history
    assert render_flag.is_flag("flag/x") and not render_flag.is_flag("x")
