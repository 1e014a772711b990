"""One connection to a SQLite state database, for stores that keep tables of their own in it.

``runners.analysis_store.AnalysisStore`` and ``flags.flag_store.FlagStore`` share the state
database of ``changeover serve`` with ``local_controller.rollout_store`` (WAL mode lets each have
its own connection). This is their common plumbing: open (creating the tables), one write
transaction at a time (committed if the block returns, rolled back if it raises), reads,
and sqlite3 errors as ``errors.BackendError`` naming the file.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from changeover import errors


class StateDb:
    """Safe to share between threads (one connection, one lock)."""

    def __init__(self, path: str | Path, schema: str, *, foreign_keys: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            if foreign_keys:
                self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(schema)
        except (sqlite3.Error, OSError) as exc:
            raise errors.BackendError(f"cannot open the state database {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise errors.BackendError(f"state database {self.path}: {exc}") from exc
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise errors.BackendError(f"state database {self.path}: {exc}") from exc
