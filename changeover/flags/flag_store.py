"""Durable flags: each flag's spec, numbered revisions, status and events, in SQLite.

Kept in the state database of ``changeover serve`` (``controller.store``'s file, its own
connection and tables, as ``controller.analysis_store`` does). Revision numbers follow the
rollouts' rule: storing the spec the flag already has keeps its number; any other spec, even
one seen before (an undo), gets the next number, and numbers are never reused.

    apply A → 1 (created)   apply A → 1 (unchanged)   apply B → 2   undo --to-revision 1 → 3
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from changeover import errors
from changeover.state_db import StateDb

JSON = dict[str, Any]

REVISIONS_KEPT = 10  # as a Rollout's revisionHistoryLimit default
EVENTS_KEPT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS flags (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    revision INTEGER NOT NULL,
    last_revision INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS flag_revisions (
    flag TEXT NOT NULL REFERENCES flags(name) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (flag, number)
);
CREATE TABLE IF NOT EXISTS flag_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flag TEXT NOT NULL REFERENCES flags(name) ON DELETE CASCADE,
    time REAL NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    revision INTEGER
);
CREATE INDEX IF NOT EXISTS flag_events_by_flag ON flag_events (flag, id);
"""


@dataclass(frozen=True, kw_only=True)
class StoredFlag:
    name: str
    spec: JSON  # the whole document as applied (camelCase)
    revision: int
    status: JSON
    created_at: float
    updated_at: float


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class FlagStore(StateDb):
    """The flags' tables in the state database; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA, foreign_keys=True)
        # Bumped by every write: serve is the only writer of its state database, so this
        # tells evaluation when to recompile without a query per request.
        self._generation = 0

    # --- flags --------------------------------------------------------------------------

    def put(
        self, name: str, spec: JSON, *, now: float, status: JSON | None = None, reason: str = ""
    ) -> tuple[int, str]:
        """Store ``spec`` as ``name``'s current spec; ``(revision, action)`` with action
        "created", "updated" or "unchanged". ``status`` replaces the status when the spec
        changed; ``reason`` names the event recorded then (default Applied)."""
        text = _dumps(spec)
        with self._write() as db:
            row = db.execute(
                "SELECT spec, revision, last_revision FROM flags WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and row[0] == text:
                return int(row[1]), "unchanged"
            number = 1 if row is None else int(row[2]) + 1
            status_text = _dumps(status or {})
            if row is None:
                db.execute(
                    "INSERT INTO flags (name, spec, revision, last_revision, status, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, text, number, number, status_text, now, now),
                )
            else:
                db.execute(
                    "UPDATE flags SET spec = ?, revision = ?, last_revision = ?, status = ?,"
                    " updated_at = ? WHERE name = ?",
                    (text, number, number, status_text, now, name),
                )
            db.execute(
                "INSERT INTO flag_revisions (flag, number, spec, created_at) VALUES (?, ?, ?, ?)",
                (name, number, text, now),
            )
            db.execute(
                "DELETE FROM flag_revisions WHERE flag = ? AND number <= ?",
                (name, number - REVISIONS_KEPT),
            )
            self._generation += 1
            action = "created" if row is None else "updated"
            message = f"revision {number} {'created' if row is None else 'applied'}"
            self._event(db, name, now, reason or "Applied", message, number)
            return number, action

    def get(self, name: str) -> StoredFlag | None:
        rows = self._read(
            "SELECT name, spec, revision, status, created_at, updated_at FROM flags WHERE name = ?",
            (name,),
        )
        return _flag(rows[0]) if rows else None

    def all(self) -> list[StoredFlag]:
        rows = self._read(
            "SELECT name, spec, revision, status, created_at, updated_at FROM flags ORDER BY name"
        )
        return [_flag(row) for row in rows]

    def version(self) -> int:
        """Changes whenever this store changed a flag's spec or status."""
        return self._generation

    def put_status(
        self, name: str, status: JSON, *, now: float, events: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Replace the status and record ``events`` ((reason, message)) in one transaction."""
        with self._write() as db:
            row = db.execute("SELECT revision FROM flags WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise errors.NotFound(f"no flag named {name!r}")
            db.execute(
                "UPDATE flags SET status = ?, updated_at = ? WHERE name = ?",
                (_dumps(status), now, name),
            )
            for reason, message in events:
                self._event(db, name, now, reason, message, int(row[0]))
            self._generation += 1

    def delete(self, name: str) -> bool:
        with self._write() as db:
            db.execute("DELETE FROM flag_events WHERE flag = ?", (name,))
            db.execute("DELETE FROM flag_revisions WHERE flag = ?", (name,))
            self._generation += 1
            return db.execute("DELETE FROM flags WHERE name = ?", (name,)).rowcount > 0

    # --- revisions and events -------------------------------------------------------

    def revisions(self, name: str) -> list[tuple[int, JSON, float]]:
        """Kept revisions, oldest first: (number, spec document, created at)."""
        rows = self._read(
            "SELECT number, spec, created_at FROM flag_revisions WHERE flag = ? ORDER BY number",
            (name,),
        )
        return [(int(n), json.loads(spec), float(at)) for n, spec, at in rows]

    def events(self, name: str, *, limit: int = 50) -> list[JSON]:
        rows = self._read(
            "SELECT time, reason, message, revision FROM ("
            " SELECT id, time, reason, message, revision FROM flag_events WHERE flag = ?"
            " ORDER BY id DESC LIMIT ?) ORDER BY id",
            (name, limit),
        )
        return [
            {"time": t, "reason": reason, "message": message, "revision": revision}
            for t, reason, message, revision in rows
        ]

    @staticmethod
    def _event(
        db: sqlite3.Connection, name: str, now: float, reason: str, message: str, revision: int
    ) -> None:
        db.execute(
            "INSERT INTO flag_events (flag, time, reason, message, revision)"
            " VALUES (?, ?, ?, ?, ?)",
            (name, now, reason, message, revision),
        )
        db.execute(
            "DELETE FROM flag_events WHERE flag = ? AND id <= ("
            " SELECT id FROM flag_events WHERE flag = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (name, name, EVENTS_KEPT),
        )


def _flag(row: tuple[Any, ...]) -> StoredFlag:
    name, spec, revision, status, created, updated = row
    return StoredFlag(
        name=name,
        spec=json.loads(spec),
        revision=int(revision),
        status=json.loads(status or "{}"),
        created_at=float(created),
        updated_at=float(updated),
    )
