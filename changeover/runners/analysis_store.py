"""Durable analysis state: AnalysisTemplates and analysis runs (with their measurements).

Kept in the same SQLite file as ``local_controller.rollout_store`` (its own connection, WAL
mode allows that), in tables of its own, so a restarted ``changeover serve`` resumes every
run where it stopped: the runner reloads runs that had not completed and goes on measuring.

One run is one row holding its JSON document (``analysis.run.AnalysisRun.to_json``),
rewritten after each measurement: a run has a handful of metrics with at most
``measurementRetention`` measurements each, so the row stays small.

sqlite3 errors are translated to ``errors.BackendError`` here, as in
``local_controller.rollout_store``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from changeover.state_db import StateDb

JSON = dict[str, Any]


def scoped(name: str, namespace: str = "default") -> str:
    """How rollouts and templates are keyed here: the name in the default namespace (the
    local platform's only one), ``namespace/name`` elsewhere (Kubernetes).

    >>> scoped("web"), scoped("web", "prod")
    ('web', 'prod/web')
    """
    return name if namespace == "default" else f"{namespace}/{name}"


def unscoped(key: str, namespace: str) -> str | None:
    """The name under ``key`` if it belongs to ``namespace``, else None.

    >>> unscoped("prod/web", "prod"), unscoped("web", "default"), unscoped("web", "prod")
    ('web', 'web', None)
    """
    space, _, name = key.rpartition("/")
    return name if (space or "default") == namespace else None


# Completed runs kept per rollout (newest); older ones are dropped as new runs start.
RUNS_KEPT_PER_ROLLOUT = 50

_SCHEMA = """
CREATE TABLE IF NOT EXISTS analysis_templates (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS analysis_runs (
    id TEXT PRIMARY KEY,
    rollout TEXT NOT NULL,
    revision INTEGER NOT NULL,
    started_at REAL NOT NULL,
    completed INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS analysis_runs_by_rollout ON analysis_runs (rollout, started_at);
"""


class AnalysisStore(StateDb):
    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA)

    # --- templates --------------------------------------------------------------------

    def put_template(self, name: str, spec: JSON, *, now: float) -> str:
        """Store an AnalysisTemplate; returns "created", "updated" or "unchanged"."""
        text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        with self._write() as db:
            row = db.execute("SELECT spec FROM analysis_templates WHERE name = ?", (name,))
            old = row.fetchone()
            if old is not None and old[0] == text:
                return "unchanged"
            db.execute(
                "INSERT INTO analysis_templates (name, spec, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, "
                "updated_at = excluded.updated_at",
                (name, text, now),
            )
            return "created" if old is None else "updated"

    def templates(self) -> dict[str, JSON]:
        rows = self._read("SELECT name, spec FROM analysis_templates ORDER BY name")
        return {name: json.loads(spec) for name, spec in rows}

    def delete_template(self, name: str) -> bool:
        with self._write() as db:
            cursor = db.execute("DELETE FROM analysis_templates WHERE name = ?", (name,))
            return cursor.rowcount > 0

    # --- runs -------------------------------------------------------------------------

    def put_run(self, doc: JSON, *, completed: bool) -> None:
        rollout = scoped(doc["rollout"], doc.get("namespace", "default"))
        with self._write() as db:
            db.execute(
                "INSERT INTO analysis_runs (id, rollout, revision, started_at, completed, doc) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "completed = excluded.completed, doc = excluded.doc",
                (
                    doc["id"],
                    rollout,
                    doc["revision"],
                    doc["startedAt"],
                    int(completed),
                    json.dumps(doc, separators=(",", ":")),
                ),
            )
            db.execute(
                "DELETE FROM analysis_runs WHERE rollout = ? AND completed = 1 AND id NOT IN ("
                " SELECT id FROM analysis_runs WHERE rollout = ?"
                " ORDER BY started_at DESC LIMIT ?)",
                (rollout, rollout, RUNS_KEPT_PER_ROLLOUT),
            )

    def run(self, run_id: str) -> JSON | None:
        rows = self._read("SELECT doc FROM analysis_runs WHERE id = ?", (run_id,))
        return json.loads(rows[0][0]) if rows else None

    def runs(self, rollout: str) -> list[JSON]:
        """Every kept run of ``rollout`` (``scoped``: namespace/name outside the default
        namespace), oldest first."""
        rows = self._read(
            "SELECT doc FROM analysis_runs WHERE rollout = ? ORDER BY started_at, id", (rollout,)
        )
        return [json.loads(doc) for (doc,) in rows]

    def active_runs(self) -> list[JSON]:
        """Runs that had not completed (to resume after a restart)."""
        rows = self._read("SELECT doc FROM analysis_runs WHERE completed = 0 ORDER BY started_at")
        return [json.loads(doc) for (doc,) in rows]

    def delete_rollout(self, rollout: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM analysis_runs WHERE rollout = ?", (rollout,))
