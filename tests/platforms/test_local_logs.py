"""Reading the local platform's log files for `changeover logs`: tails, offsets, which
files belong to a revision, and what is never read."""

from __future__ import annotations

import os
from pathlib import Path

from changeover.platforms.local import logs


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_tails_offsets_and_revisions(tmp_path: Path) -> None:
    base = tmp_path / "logs" / "chat"
    write(base / "1" / "chat-1-a.log", "one\ntwo\nthree\n")
    write(base / "2" / "chat-2-b.log", "v2 up\n")
    write(base / "hooks" / "chat_2_mid_1.log", "migrating\n")
    write(base / "hooks" / "chat_1_pre_1.log", "old hook\n")
    write(tmp_path / "logs" / "other" / "1" / "other-1-a.log", "not ours\n")

    found = logs.read(tmp_path, "chat", revision=None, tail=2, since={})
    assert {e["id"]: e["text"] for e in found} == {
        "1/chat-1-a.log": "two\nthree\n",
        "2/chat-2-b.log": "v2 up\n",
        "hooks/chat_1_pre_1.log": "old hook\n",
        "hooks/chat_2_mid_1.log": "migrating\n",
    }
    only_2 = logs.read(tmp_path, "chat", revision=2, tail=10, since={})
    assert [(e["id"], e["kind"], e["revision"]) for e in only_2] == [
        ("2/chat-2-b.log", "replica", 2),
        ("hooks/chat_2_mid_1.log", "hook", 2),
    ]

    # Following: only what was appended since; a file that shrank starts over.
    end = next(e["end"] for e in found if e["id"] == "1/chat-1-a.log")
    with open(base / "1" / "chat-1-a.log", "a") as f:
        f.write("four\n")
    again = logs.read(tmp_path, "chat", revision=1, tail=0, since={"1/chat-1-a.log": end})
    assert [(e["id"], e["text"]) for e in again] == [
        ("1/chat-1-a.log", "four\n"),
        ("hooks/chat_1_pre_1.log", ""),  # tail=0 for a file not followed yet
    ]
    shrank = logs.read(tmp_path, "chat", revision=1, tail=0, since={"1/chat-1-a.log": 999})
    assert shrank[0]["text"] == "one\ntwo\nthree\nfour\n"


def test_symlinks_and_unknown_rollouts_are_never_read(tmp_path: Path) -> None:
    secret = write(tmp_path / "secret.txt", "token\n")
    link_dir = tmp_path / "logs" / "chat" / "1"
    link_dir.mkdir(parents=True)
    os.symlink(secret, link_dir / "chat-1-a.log")
    os.symlink(tmp_path, tmp_path / "logs" / "chat" / "2")
    assert logs.read(tmp_path, "chat", revision=None, tail=10, since={}) == []
    assert logs.read(tmp_path, "nothing", revision=None, tail=10, since={}) == []
