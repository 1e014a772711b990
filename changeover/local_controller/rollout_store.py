"""Durable state of the local platform: rollouts, their revisions and events, in SQLite.

The controller is the only writer (one ``changeover serve`` per state directory); the API
reads through the service. Every write is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``),
so a crash leaves either the old row or the new one, never half of each. The database runs
in WAL mode with ``synchronous=FULL``: the controller persists status *before* acting, and a
status that vanished on power loss after its actions ran would break resume-after-crash.

sqlite3 errors are translated to ``errors.BackendError`` at this boundary.

Revision numbers follow Argo Rollouts: re-applying the template the rollout is already
moving to keeps its number; any other template, even one seen before (a rollback), gets
the next number. Numbers are never reused, even after pruning::

    apply v1 → 1 (created)   apply v1 → 1 (not created)   apply v2 → 2   apply v1 → 3
"""

from __future__ import annotations

import contextlib
import errno
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from changeover import errors

JSON = dict[str, Any]

# Per rollout: older events are dropped so a long-lived rollout does not grow without bound.
MAX_EVENTS_PER_ROLLOUT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    generation INTEGER NOT NULL,
    status TEXT,
    -- The revision the stored spec's template maps to (what the rollout moves towards).
    revision INTEGER,
    -- The highest revision number ever issued, so numbers survive pruning unreused.
    last_revision INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revisions (
    rollout TEXT NOT NULL REFERENCES rollouts(name) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    template_hash TEXT NOT NULL,
    template TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (rollout, number)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout TEXT NOT NULL REFERENCES rollouts(name) ON DELETE CASCADE,
    time REAL NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    revision INTEGER
);
CREATE INDEX IF NOT EXISTS events_by_rollout ON events (rollout, id);
"""


@dataclass(frozen=True, kw_only=True)
class StoredRollout:
    name: str
    spec: JSON
    # Bumped each time a *different* spec is stored (Kubernetes' metadata.generation).
    generation: int
    # None until the controller first persists a status.
    status: JSON | None
    # The revision the spec's template maps to; 0 before any revision was numbered.
    revision: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, kw_only=True)
class StoredRevision:
    rollout: str
    number: int
    template_hash: str
    template: JSON
    spec: JSON
    created_at: float


class EventLike(Protocol):
    """An event object such as ``engine.actions.Event``. ``add_events`` and ``put_status``
    also take plain ``{"reason", "message", "revision"}`` mappings."""

    @property
    def reason(self) -> str: ...

    @property
    def message(self) -> str: ...

    @property
    def revision(self) -> int | None: ...


Events = Iterable[EventLike | Mapping[str, Any]]


def _event_row(name: str, now: float, event: EventLike | Mapping[str, Any]) -> tuple[Any, ...]:
    if isinstance(event, Mapping):
        reason, message, revision = event["reason"], event["message"], event.get("revision")
    else:
        reason, message, revision = event.reason, event.message, event.revision
    return (name, now, str(reason), str(message), revision)


def _dumps(value: JSON) -> str:
    # Sorted keys make equal documents equal strings: put_spec compares them.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Store:
    """One SQLite database file. Safe to share between threads (one connection, one lock)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        """Open (or create) the database. ``busy_timeout``: how long a write waits for a
        lock another process holds before it fails with "locked by another process"."""
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so every write is
            # exactly the transaction we wrote and never an implicit one left open.
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            # A truncated or overwritten file can open cleanly and fail mid-rollout later:
            # check every page now (milliseconds for a state database) and refuse to start.
            check = self._db.execute("PRAGMA quick_check(1)").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed: {check}")
        except (sqlite3.Error, OSError) as exc:
            raise self._error(exc, opening=True) from exc

    def _error(self, exc: Exception, *, opening: bool = False) -> errors.BackendError:
        """A sqlite3/OS error as a one-line BackendError naming the file and what to do."""
        text = str(exc)
        if "locked" in text or "busy" in text:
            return errors.TemporaryBackendError(
                f"the state database {self.path} is locked by another process (waited "
                f"{self.busy_timeout:g} s); nothing was changed: retry once it is released "
                f"(`fuser {self.path}` names the process)"
            )
        if "disk is full" in text or getattr(exc, "errno", None) == errno.ENOSPC:
            return errors.TemporaryBackendError(
                f"no space left on the device of the state database {self.path}; nothing was "
                "changed: free space there and retry"
            )
        if "malformed" in text or "not a database" in text:
            return errors.PermanentBackendError(
                f"the state database {self.path} is damaged ({text}): restore it from a "
                "backup, or move it aside to start with no rollouts; the routers and "
                "replicas keep serving meanwhile"
            )
        if opening:
            return errors.BackendError(f"cannot open the state database {self.path}: {text}")
        return errors.BackendError(f"state database {self.path}: {text}")

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()

    # --- plumbing ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed if the block returns, rolled back if it raises."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            try:
                yield self._db
            except sqlite3.Error as exc:
                self._rollback()
                raise self._error(exc) from exc
            except BaseException:
                self._rollback()
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise self._error(exc) from exc

    def _rollback(self) -> None:
        # A failed ROLLBACK means SQLite already rolled back (e.g. on a full disk).
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    @staticmethod
    def _require(db: sqlite3.Connection, name: str) -> None:
        if db.execute("SELECT 1 FROM rollouts WHERE name = ?", (name,)).fetchone() is None:
            raise errors.NotFound(f"rollout {name!r} not found")

    # --- rollouts ----------------------------------------------------------------------

    def get_rollout(self, name: str, *, spec: bool = True) -> StoredRollout | None:
        """``name``'s row; with ``spec=False`` the spec is not read (``spec`` is ``{}``):
        the controller's tick needs the status and generation, and parses a spec once per
        generation (``Controller.parsed``), however large it is."""
        columns = _ROLLOUT_COLUMNS if spec else _ROLLOUT_COLUMNS.replace("spec", "NULL", 1)
        rows = self._read(
            f"SELECT {columns} FROM rollouts WHERE name = ?",
            (name,),
        )
        return _rollout(rows[0]) if rows else None

    def list_rollouts(self) -> list[StoredRollout]:
        """Every rollout, sorted by name."""
        rows = self._read(f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts ORDER BY name")
        return [_rollout(row) for row in rows]

    def rollout_names(self) -> list[str]:
        """Every rollout's name, sorted (cheaper than ``list_rollouts`` for the loop)."""
        return [row[0] for row in self._read("SELECT name FROM rollouts ORDER BY name")]

    def put_spec(
        self,
        name: str,
        spec_json: JSON,
        *,
        template: JSON,
        template_hash: str,
        now: float,
        current: int | None = None,
    ) -> tuple[int, bool]:
        """Store ``name``'s spec (creating the rollout) and number its template, in one
        transaction: a crash can never leave a spec without its revision. Returns
        ``(revision, created)`` as ``revision_for`` does (``current`` too); the generation
        is on ``get_rollout``."""
        with self._write() as db:
            self._put_spec(db, name, spec_json, now)
            return self._revision_for(db, name, template_hash, template, spec_json, now, current)

    def _put_spec(self, db: sqlite3.Connection, name: str, spec_json: JSON, now: float) -> int:
        text = _dumps(spec_json)
        row = db.execute("SELECT spec, generation FROM rollouts WHERE name = ?", (name,)).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO rollouts (name, spec, generation, created_at, updated_at) "
                "VALUES (?, ?, 1, ?, ?)",
                (name, text, now, now),
            )
            return 1
        if row[0] == text:
            return int(row[1])
        generation = int(row[1]) + 1
        db.execute(
            "UPDATE rollouts SET spec = ?, generation = ?, updated_at = ? WHERE name = ?",
            (text, generation, now, name),
        )
        return generation

    def put_status(
        self, name: str, status_json: JSON, *, events: Events = (), now: float | None = None
    ) -> None:
        """Replace ``name``'s status and append ``events`` in one transaction (a status
        and the events that explain it are never split). NotFound if there is no rollout."""
        now = time.time() if now is None else now
        with self._write() as db:
            cursor = db.execute(
                "UPDATE rollouts SET status = ?, updated_at = ? WHERE name = ?",
                (_dumps(status_json), now, name),
            )
            if cursor.rowcount == 0:
                raise errors.NotFound(f"rollout {name!r} not found")
            self._insert_events(db, name, [_event_row(name, now, e) for e in events])

    def delete_rollout(self, name: str) -> bool:
        """Forget ``name``, its revisions and its events. False if it did not exist."""
        with self._write() as db:
            db.execute("DELETE FROM events WHERE rollout = ?", (name,))
            db.execute("DELETE FROM revisions WHERE rollout = ?", (name,))
            return db.execute("DELETE FROM rollouts WHERE name = ?", (name,)).rowcount > 0

    # --- revisions ---------------------------------------------------------------------

    def revision_for(
        self,
        name: str,
        template_hash: str,
        template_json: JSON,
        spec_json: JSON,
        now: float,
        *,
        current: int | None = None,
    ) -> tuple[int, bool]:
        """The revision number for a template, and whether it was just created.

        ``current`` is the revision the rollout is moving to; by default the one the store
        last numbered for it (``StoredRollout.revision``). If that revision has
        ``template_hash`` its number is returned unchanged; else the newest kept revision
        with that hash (going back to it, as Argo Rollouts reuses a ReplicaSet); else a new
        number (one past the highest ever issued). It becomes the rollout's ``revision``.
        """
        with self._write() as db:
            self._require(db, name)
            return self._revision_for(
                db, name, template_hash, template_json, spec_json, now, current
            )

    def _revision_for(
        self,
        db: sqlite3.Connection,
        name: str,
        template_hash: str,
        template_json: JSON,
        spec_json: JSON,
        now: float,
        current: int | None,
    ) -> tuple[int, bool]:
        target, last = db.execute(
            "SELECT revision, last_revision FROM rollouts WHERE name = ?", (name,)
        ).fetchone()
        current = target if current is None else current
        row = db.execute(
            "SELECT number, template_hash FROM revisions WHERE rollout = ? AND number = ?",
            (name, current),
        ).fetchone()
        if row is None or row[1] != template_hash:
            # A template equal to an earlier kept revision's is that revision again (a
            # reverted commit re-applied): its number, its replicas if any still run.
            row = db.execute(
                "SELECT number, template_hash FROM revisions WHERE rollout = ? "
                "AND template_hash = ? ORDER BY number DESC LIMIT 1",
                (name, template_hash),
            ).fetchone()
        if row is not None:
            # Same template, maybe other fields changed (steps, replicas): keep the
            # revision but remember the latest full spec for undo.
            number, created = int(row[0]), False
            db.execute(
                "UPDATE revisions SET spec = ? WHERE rollout = ? AND number = ?",
                (_dumps(spec_json), name, number),
            )
        else:
            number, created = int(last) + 1, True
            db.execute(
                "INSERT INTO revisions "
                "(rollout, number, template_hash, template, spec, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, number, template_hash, _dumps(template_json), _dumps(spec_json), now),
            )
        db.execute(
            "UPDATE rollouts SET revision = ?, last_revision = max(last_revision, ?) "
            "WHERE name = ?",
            (number, number, name),
        )
        return number, created

    def revisions(self, name: str) -> list[StoredRevision]:
        """Kept revisions of ``name``, oldest first (empty if the rollout is unknown)."""
        rows = self._read(
            "SELECT rollout, number, template_hash, template, spec, created_at "
            "FROM revisions WHERE rollout = ? ORDER BY number",
            (name,),
        )
        return [
            StoredRevision(
                rollout=row[0],
                number=int(row[1]),
                template_hash=row[2],
                template=json.loads(row[3]),
                spec=json.loads(row[4]),
                created_at=float(row[5]),
            )
            for row in rows
        ]

    def revision(self, name: str, number: int) -> StoredRevision | None:
        return next((r for r in self.revisions(name) if r.number == number), None)

    def template(self, name: str, number: int) -> JSON | None:
        """The template of one kept revision (None if unknown or pruned)."""
        rows = self._read(
            "SELECT template FROM revisions WHERE rollout = ? AND number = ?", (name, number)
        )
        return json.loads(rows[0][0]) if rows else None

    def prune_revisions(self, name: str, keep: int, protect: set[int]) -> list[int]:
        """Apply ``revisionHistoryLimit``: keep the ``keep`` newest revisions that are not
        protected, plus every protected one (stable, canary, target); delete the rest.
        Returns the pruned numbers, oldest first.

        Revisions 1..6, keep=2, protect={6, 3} → pruned [1, 2], kept 3, 4, 5, 6.
        """
        if keep < 0:
            raise ValueError("keep must be >= 0")
        with self._write() as db:
            numbers = [
                int(n)
                for (n,) in db.execute(
                    "SELECT number FROM revisions WHERE rollout = ? ORDER BY number DESC",
                    (name,),
                )
            ]
            unprotected = [n for n in numbers if n not in protect]
            doomed = sorted(unprotected[keep:])
            db.executemany(
                "DELETE FROM revisions WHERE rollout = ? AND number = ?",
                [(name, n) for n in doomed],
            )
            return doomed

    # --- events ------------------------------------------------------------------------

    def add_events(self, name: str, events: Events, *, now: float) -> None:
        """Append events (in order) at time ``now``; keeps the newest
        ``MAX_EVENTS_PER_ROLLOUT``. NotFound if there is no such rollout."""
        rows = [_event_row(name, now, e) for e in events]
        if not rows:
            return
        with self._write() as db:
            self._require(db, name)
            self._insert_events(db, name, rows)

    @staticmethod
    def _insert_events(db: sqlite3.Connection, name: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        db.executemany(
            "INSERT INTO events (rollout, time, reason, message, revision) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        db.execute(
            "DELETE FROM events WHERE rollout = ? AND id <= ("
            " SELECT id FROM events WHERE rollout = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (name, name, MAX_EVENTS_PER_ROLLOUT),
        )

    def events(self, name: str, limit: int = 50) -> list[JSON]:
        """The newest ``limit`` events of ``name``, newest last, in the API's shape:
        ``{"time", "reason", "message", "revision"}``."""
        rows = self._read(
            "SELECT time, reason, message, revision FROM events WHERE rollout = ? "
            "ORDER BY id DESC LIMIT ?",
            (name, max(0, limit)),
        )
        return [
            {"time": float(t), "reason": r, "message": m, "revision": rev}
            for t, r, m, rev in reversed(rows)
        ]


_ROLLOUT_COLUMNS = "name, spec, generation, status, revision, created_at, updated_at"


def _rollout(row: tuple[Any, ...]) -> StoredRollout:
    return StoredRollout(
        name=row[0],
        spec={} if row[1] is None else json.loads(row[1]),
        generation=int(row[2]),
        status=None if row[3] is None else json.loads(row[3]),
        revision=int(row[4] or 0),
        created_at=float(row[5]),
        updated_at=float(row[6]),
    )
