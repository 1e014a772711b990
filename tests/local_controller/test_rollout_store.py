"""The SQLite store: specs and generations, revision numbering, pruning, events, atomicity."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from changeover import errors
from changeover.local_controller import rollout_store
from changeover.local_controller.rollout_store import Store

V1: dict[str, Any] = {"command": ["server", "--v", "1"]}
V2: dict[str, Any] = {"command": ["server", "--v", "2"]}


def spec(template: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "chat"}, "spec": {"replicas": replicas, "template": template}}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state" / "changeover.db")
    yield s
    s.close()


def revision(
    db: Store, template: dict[str, Any], h: str, current: int | None = None
) -> tuple[int, bool]:
    return db.revision_for("chat", h, template, spec(template), 100.0, current=current)


def test_database_runs_in_wal_mode(db: Store) -> None:
    con = sqlite3.connect(db.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def put(
    db: Store,
    template: dict[str, Any],
    h: str,
    *,
    replicas: int = 1,
    now: float = 1.0,
    name: str = "chat",
) -> tuple[int, bool]:
    return db.put_spec(name, spec(template, replicas), template=template, template_hash=h, now=now)


def test_put_spec_creates_then_bumps_generation_only_on_change(db: Store) -> None:
    assert db.get_rollout("chat") is None
    assert put(db, V1, "h1", now=1.0) == (1, True)
    assert put(db, V1, "h1", now=2.0) == (1, False)
    assert put(db, V1, "h1", replicas=3, now=3.0) == (1, False)
    got = db.get_rollout("chat")
    assert got is not None
    assert got.generation == 2
    assert got.revision == 1
    assert got.spec == spec(V1, replicas=3)
    assert got.status is None
    assert (got.created_at, got.updated_at) == (1.0, 3.0)


def test_put_status_round_trips_and_needs_a_rollout(db: Store) -> None:
    with pytest.raises(errors.NotFound):
        db.put_status("chat", {"phase": "Healthy"})
    put(db, V1, "h1")
    db.put_status(
        "chat",
        {"phase": "Paused", "weights": {"1": 80, "2": 20}},
        events=[{"reason": "RolloutPaused", "message": "step 2", "revision": 2}],
        now=5.0,
    )
    got = db.get_rollout("chat")
    assert got is not None
    assert got.status == {"phase": "Paused", "weights": {"1": 80, "2": 20}}
    assert db.events("chat") == [
        {"time": 5.0, "reason": "RolloutPaused", "message": "step 2", "revision": 2}
    ]


def test_put_status_with_events_is_one_transaction(
    db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(db, V1, "h1")
    db.put_status("chat", {"phase": "Progressing"})

    def boom(*args: object) -> None:
        raise sqlite3.OperationalError("disk full")

    monkeypatch.setattr(Store, "_insert_events", staticmethod(boom))
    with pytest.raises(errors.BackendError, match="disk full"):
        db.put_status("chat", {"phase": "Healthy"}, events=[{"reason": "R", "message": "m"}])
    got = db.get_rollout("chat")
    assert got is not None
    assert got.status == {"phase": "Progressing"}


def test_list_rollouts_sorted_by_name(db: Store) -> None:
    for name in ("web", "api", "chat"):
        put(db, V1, "h1", name=name)
    assert [r.name for r in db.list_rollouts()] == ["api", "chat", "web"]
    assert db.rollout_names() == ["api", "chat", "web"]


def test_revisions_same_template_reused_other_template_new_revert_is_the_old_one(
    db: Store,
) -> None:
    assert put(db, V1, "h1") == (1, True)
    assert revision(db, V1, "h1") == (1, False)
    assert revision(db, V2, "h2") == (2, True)
    # Re-applying v1's template (a reverted commit) is revision 1 again, not a copy.
    assert revision(db, V1, "h1") == (1, False)
    assert [(r.number, r.template_hash) for r in db.revisions("chat")] == [(1, "h1"), (2, "h2")]
    assert db.revisions("chat")[1].template == V2
    assert db.template("chat", 2) == V2
    assert db.template("chat", 9) is None
    got = db.get_rollout("chat")
    assert got is not None
    assert got.revision == 1
    # The next new template still gets a fresh number.
    assert revision(db, {"command": ["v3"]}, "h3") == (3, True)


def test_revision_compares_with_the_given_current_target(db: Store) -> None:
    put(db, V1, "h1")
    revision(db, V2, "h2")
    # The controller says it is still moving to 1 (e.g. 2 was never acted on).
    assert revision(db, V1, "h1", current=1) == (1, False)
    got = db.get_rollout("chat")
    assert got is not None
    assert got.revision == 1
    # The next number still skips past 2.
    assert revision(db, {"command": ["v3"]}, "h3") == (3, True)


def test_put_spec_with_current_reuses_that_revision_for_undo(db: Store) -> None:
    put(db, V1, "h1")
    put(db, V2, "h2")
    # Undo to 1 keeps revision 1 (its replicas may still be up), with the latest spec.
    got = db.put_spec("chat", spec(V1, 3), template=V1, template_hash="h1", now=2.0, current=1)
    assert got == (1, False)
    stored = db.get_rollout("chat")
    assert stored is not None and stored.revision == 1
    assert db.revision("chat", 1).spec == spec(V1, 3)


def test_same_template_updates_the_revision_spec(db: Store) -> None:
    put(db, V1, "h1", now=100.0)
    db.revision_for("chat", "h1", V1, spec(V1, replicas=5), 200.0)
    kept = db.revision("chat", 1)
    assert kept is not None
    assert kept.spec == spec(V1, replicas=5)
    assert kept.created_at == 100.0


def test_revision_for_unknown_rollout_is_not_found(db: Store) -> None:
    with pytest.raises(errors.NotFound):
        revision(db, V1, "h1")


def test_numbers_are_never_reused_after_pruning(db: Store) -> None:
    put(db, {"command": ["0"]}, "h0")
    for i in range(1, 5):
        revision(db, {"command": [str(i)]}, f"h{i}")
    assert db.prune_revisions("chat", keep=0, protect={5}) == [1, 2, 3, 4]
    assert revision(db, V1, "new") == (6, True)


def test_prune_keeps_newest_unprotected_plus_protected(db: Store) -> None:
    put(db, {"command": ["1"]}, "h1")
    for i in range(2, 7):
        revision(db, {"command": [str(i)]}, f"h{i}")
    assert db.prune_revisions("chat", keep=2, protect={6, 3}) == [1, 2]
    assert [r.number for r in db.revisions("chat")] == [3, 4, 5, 6]
    assert db.prune_revisions("chat", keep=2, protect={6, 3}) == []


def test_put_spec_is_one_transaction(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while numbering the revision leaves no spec behind either."""

    def boom(*args: object, **kwargs: object) -> tuple[int, bool]:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "_revision_for", boom)
    with pytest.raises(errors.BackendError, match="disk I/O error") as info:
        put(db, V1, "h1")
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert db.get_rollout("chat") is None
    monkeypatch.undo()
    assert put(db, V1, "h1") == (1, True)


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    first = Store(path)
    put(first, V1, "h1")
    first.put_status("chat", {"phase": "Healthy"})
    first.close()
    again = Store(path)
    got = again.get_rollout("chat")
    assert got is not None
    assert got.status == {"phase": "Healthy"}
    assert [r.number for r in again.revisions("chat")] == [1]
    again.close()


def test_events_newest_last_with_limit(db: Store) -> None:
    put(db, V1, "h1")
    db.add_events(
        "chat",
        [
            {"reason": "RolloutUpdated", "message": "a", "revision": 1},
            {"reason": "RolloutPaused", "message": "b"},
        ],
        now=10.0,
    )
    db.add_events("chat", [{"reason": "RolloutResumed", "message": "c"}], now=11.0)
    assert [(e["message"], e["time"]) for e in db.events("chat")] == [
        ("a", 10.0),
        ("b", 10.0),
        ("c", 11.0),
    ]
    assert [e["message"] for e in db.events("chat", limit=2)] == ["b", "c"]
    assert db.events("chat")[0]["revision"] == 1


def test_events_need_a_rollout(db: Store) -> None:
    with pytest.raises(errors.NotFound):
        db.add_events("ghost", [{"reason": "R", "message": "m"}], now=1.0)


def test_events_are_trimmed(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollout_store, "MAX_EVENTS_PER_ROLLOUT", 3)
    put(db, V1, "h1")
    for i in range(5):
        db.add_events("chat", [{"reason": "R", "message": str(i)}], now=i)
    assert [e["message"] for e in db.events("chat", limit=10)] == ["2", "3", "4"]


def test_delete_forgets_everything(db: Store) -> None:
    put(db, V1, "h1")
    db.add_events("chat", [{"reason": "R", "message": "m"}], now=1.0)
    assert db.delete_rollout("chat") is True
    assert db.delete_rollout("chat") is False
    assert db.get_rollout("chat") is None
    assert db.revisions("chat") == []
    assert db.events("chat") == []


def test_unopenable_database_is_a_backend_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(errors.BackendError):
        Store(tmp_path / "dir.db")


def test_a_write_blocked_by_another_lock_holder_fails_clearly_and_keeps_the_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "changeover.db"
    s = Store(path, busy_timeout=0.2)
    put(s, V1, "h1", now=1.0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(errors.TemporaryBackendError) as raised:
            put(s, V2, "h2", now=2.0)
        assert f"the state database {path} is locked by another process" in str(raised.value)
        assert "nothing was changed" in str(raised.value)
    finally:
        other.execute("COMMIT")
        other.close()
    stored = s.get_rollout("chat")
    assert stored is not None and stored.spec == spec(V1) and stored.generation == 1
    put(s, V2, "h2", now=3.0)
    s.close()


def test_a_truncated_database_is_refused_at_open_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "changeover.db"
    s = Store(path)
    for i in range(200):
        put(s, {"command": ["server", "x" * 500]}, f"h{i}", name=f"r{i}")
    s.close()
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(errors.PermanentBackendError) as raised:
        Store(path)
    assert f"the state database {path} is damaged" in str(raised.value)
    assert "restore it from a backup" in str(raised.value)
