"""The history a Flag resource keeps in its status on Kubernetes: bounded in count and in
bytes, hostile entries ignored, and the rows and undo choice both platforms share."""

from __future__ import annotations

from typing import Any

import pytest

from changeover import errors
from changeover.flags import flag_history

JSON = dict[str, Any]


def spec(weight: int, *, padding: int = 0) -> JSON:
    doc: JSON = {
        "type": "string",
        "variants": {"old": "v1", "new": "v2"},
        "defaultVariant": "old",
        "split": [{"variant": "new", "weight": weight}],
    }
    if padding:
        doc["variants"]["big"] = "x" * padding
    return doc


def kept_numbers(history: list[JSON]) -> list[int]:
    return [e["revision"] for e in history if e["spec"] is not None]


def test_the_newest_ten_revisions_are_kept_without_a_word() -> None:
    history: list[JSON] = []
    for n in range(1, 15):
        history, message = flag_history.record(history, n, spec(n), now=float(n))
        assert message == ""
    assert kept_numbers(history) == list(range(5, 15))
    # A revision recorded already is left as it was (the operator looks many times).
    again, message = flag_history.record(history, 14, spec(99), now=99.0)
    assert again == history and message == ""


def test_large_specs_drop_the_oldest_and_say_so() -> None:
    third = flag_history.MAX_BYTES // 3
    history: list[JSON] = []
    messages = []
    for n in range(1, 6):
        history, message = flag_history.record(history, n, spec(n, padding=third), now=n)
        messages.append(message)
        assert flag_history.size(history) <= flag_history.MAX_BYTES
    assert kept_numbers(history) == [4, 5]
    assert messages[:2] == ["", ""]
    assert messages[2] == "revision 1 not kept: the kept specs are bounded at 256 KiB (kept: 2, 3)"
    assert messages[4].startswith("revision 3 not kept")


def test_a_spec_too_large_alone_is_noted_not_kept_and_not_tried_again() -> None:
    history, _ = flag_history.record([], 1, spec(10), now=1.0)
    huge = spec(20, padding=flag_history.MAX_BYTES + 1)
    history, message = flag_history.record(history, 2, huge, now=2.0)
    assert "revision 1, 2 not kept" in message and "(kept: none)" in message
    assert history == [{"revision": 2, "appliedAt": 2.0, "spec": None}]
    again, message = flag_history.record(history, 2, huge, now=3.0)
    assert again == history and message == ""
    # The current spec is still listed (from the resource) though its copy was not kept.
    listed = flag_history.revisions(flag_history.parse(history), 2, huge)
    assert [(n, at) for n, _, at in listed] == [(2, 2.0)]


def test_hostile_entries_are_ignored() -> None:
    raw: list[Any] = [
        "text",
        {"revision": True, "spec": {}},
        {"revision": "2", "spec": {}},
        {"revision": 0, "spec": {}},
        {"revision": 3, "spec": ["not", "a", "map"]},
        {"revision": 4, "spec": {"split": "nonsense"}, "appliedAt": "soon"},
        {"revision": 5, "spec": spec(50), "appliedAt": 5},
        {"revision": 5, "spec": spec(60), "appliedAt": 6},
    ]
    assert flag_history.parse({"not": "a list"}) == []
    parsed = flag_history.parse(raw)
    assert [(e["revision"], e["appliedAt"]) for e in parsed] == [(4, None), (5, 6.0)]
    rows = flag_history.rows(flag_history.revisions(parsed, 6, spec(70)), 6)
    assert [(r["revision"], r["split"], r["current"]) for r in rows] == [
        (4, {}, False),
        (5, {"new": 60}, False),
        (6, {"new": 70}, True),
    ]
    assert rows[1]["changes"] == ["defaultVariant", "split", "type", "variants"]


def test_undo_picks_the_newest_earlier_revision_or_names_the_kept_ones() -> None:
    assert flag_history.undo_target("f", [1, 2, 3], 3, None) == 2
    assert flag_history.undo_target("f", [1, 2, 3], 3, 1) == 1
    with pytest.raises(errors.NotFound, match=r"flag 'f' has no revision 7 \(kept: 1, 2, 3\)"):
        flag_history.undo_target("f", [3, 1, 2], 3, 7)
    with pytest.raises(errors.StateError, match="already the current one"):
        flag_history.undo_target("f", [1, 2, 3], 3, 3)
    with pytest.raises(errors.StateError, match="no earlier revision"):
        flag_history.undo_target("f", [1], 1, None)
