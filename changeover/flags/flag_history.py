"""A flag's kept revisions, as ``history`` lists them and ``undo`` goes back to them; and
the bounded history a Flag resource keeps in its status on Kubernetes.

Both platforms list revisions with ``rows`` and pick undo's revision with ``undo_target``,
so ``changeover history flag/NAME`` and ``undo`` print and refuse alike. The local platform
keeps revisions in its state database (``flags.flag_store``). A Flag resource has nowhere
but itself: the operator records the spec of each generation it sees in
``status.history`` (``record``), at most ``KEPT`` entries and ``MAX_BYTES`` of JSON, oldest
dropped first. Pure: no I/O.

    status.history: [{"revision": 3, "appliedAt": 1765000000.0, "spec": {...as applied}}]

``revision`` is the Flag's ``metadata.generation``: a changed spec gets the next number, and
an undo writes an earlier spec back as a new generation, as the local store numbers them.
Anyone allowed to write the status can write anything there: ``parse`` keeps only
well-formed entries, and undo checks a kept spec with the spec models before writing it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from changeover import errors
from changeover.flags.flag_store import REVISIONS_KEPT

JSON = dict[str, Any]
KEPT = REVISIONS_KEPT  # as a Rollout's revisionHistoryLimit default
# A Flag, status included, is one etcd object (1.5 MiB by default): the kept specs get at
# most this much of it.
MAX_BYTES = 256 * 1024

Revision = tuple[int, JSON, float | None]  # (number, spec, applied at: epoch seconds)


def rows(revisions: Iterable[Revision], current: int) -> list[JSON]:
    """``history``'s answer: one row per kept revision, oldest first, with what changed
    (top-level spec fields) since the revision before it."""
    out: list[JSON] = []
    previous: JSON | None = None
    for number, spec, created in sorted(revisions, key=lambda r: r[0]):
        split = spec.get("split")
        out.append(
            {
                "revision": number,
                "createdAt": created,
                "current": number == current,
                "enabled": spec.get("enabled", True),
                "split": {
                    e["variant"]: e["weight"]
                    for e in (split if isinstance(split, list) else [])
                    if isinstance(e, dict) and "variant" in e and "weight" in e
                },
                "changes": _changes(previous, spec) if previous is not None else [],
            }
        )
        previous = spec
    return out


def undo_target(name: str, kept: Iterable[int], current: int, to_revision: int | None) -> int:
    """The revision ``undo`` writes back: ``to_revision``, or the newest one before the
    current. StateError or NotFound (naming the kept revisions) when there is none."""
    numbers = sorted(set(kept))
    if to_revision is None:
        earlier = [n for n in numbers if n < current]
        if not earlier:
            raise errors.StateError(f"flag {name!r} has no earlier revision to undo to")
        return earlier[-1]
    if to_revision not in numbers:
        have = ", ".join(str(n) for n in numbers) or "none"
        raise errors.NotFound(f"flag {name!r} has no revision {to_revision} (kept: {have})")
    if to_revision == current:
        raise errors.StateError(f"revision {to_revision} is already the current one")
    return to_revision


def _changes(before: JSON, after: JSON) -> list[str]:
    """Top-level spec fields that differ, by name (``history`` shows what an apply did)."""
    keys = sorted(set(before) | set(after))
    return [k for k in keys if before.get(k) != after.get(k)]


# --- the history a Flag resource keeps in its status -----------------------------------


def parse(raw: object) -> list[JSON]:
    """The well-formed entries of ``status.history``, by revision (one per number). An
    entry whose ``spec`` is null is a revision seen but not kept (``record``)."""
    found: dict[int, JSON] = {}
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, dict):
            continue
        number, spec, at = entry.get("revision"), entry.get("spec"), entry.get("appliedAt")
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            continue
        if spec is not None and not isinstance(spec, dict):
            continue
        applied = float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None
        found[number] = {"revision": number, "appliedAt": applied, "spec": spec}
    return [found[n] for n in sorted(found)]


def record(history: list[JSON], revision: int, spec: JSON, now: float) -> tuple[list[JSON], str]:
    """``history`` (as ``parse`` gives it) with ``spec`` kept as ``revision``: the newest
    ``KEPT`` revisions, and the oldest specs dropped while they take more than
    ``MAX_BYTES`` (a spec too large on its own is not kept: its entry says so with a null
    spec, so it is not tried again). Also a message when the byte bound dropped anything
    ("" otherwise). A revision already recorded is left as it is."""
    if any(e["revision"] == revision for e in history):
        return history, ""
    entry: JSON = {"revision": revision, "appliedAt": now, "spec": spec}
    kept = sorted([*history, entry], key=lambda e: int(e["revision"]))[-KEPT:]
    dropped: list[int] = []
    while size(kept) > MAX_BYTES:
        oldest = next((e for e in kept if e["spec"] is not None and e is not entry), None)
        if oldest is None:
            entry["spec"] = None
            dropped.append(revision)
            break
        kept.remove(oldest)
        dropped.append(oldest["revision"])
    if not dropped:
        return kept, ""
    left = ", ".join(str(e["revision"]) for e in kept if e["spec"] is not None) or "none"
    which = ", ".join(str(n) for n in sorted(dropped))
    return kept, (
        f"revision {which} not kept: the kept specs are bounded at {MAX_BYTES // 1024} KiB "
        f"(kept: {left})"
    )


def size(history: list[JSON]) -> int:
    """Bytes of ``history`` as JSON (about what it adds to the stored object)."""
    return len(json.dumps(history, separators=(",", ":")).encode())


def revisions(history: list[JSON], current: int, spec: JSON) -> list[Revision]:
    """The revisions of a Flag resource ``history`` can list and ``undo`` go to: the kept
    ones, and the current one (its ``spec`` as it is now, whether kept or not)."""
    out: list[Revision] = [
        (e["revision"], e["spec"], e["appliedAt"])
        for e in history
        if e["spec"] is not None and e["revision"] != current
    ]
    at = next((e["appliedAt"] for e in history if e["revision"] == current), None)
    if current >= 1:
        out.append((current, spec, at))
    return out
