"""The rollout phase machine, as a table. Nothing else changes a phase.

The engine asks ``transition(old, new)`` for every phase change it plans; an edge that is
not in the table raises ``IllegalTransition`` (a bug in a strategy, never a user error).

    Healthy ──new revision──► Progressing ──pause step / pause cmd──► Paused
       ▲                        │  ▲  │                                  │
       └──────── completed ─────┘  │  └──── abort / failed ──► Aborted   │
                                   └──────── resume / promote ───────────┘
    Progressing ──deadline exceeded / hook failed──► Degraded
    Aborted, Degraded ──retry / new revision──► Progressing
"""

from __future__ import annotations

from enum import StrEnum

from changeover import errors


class Phase(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    DEGRADED = "Degraded"
    ABORTED = "Aborted"


H, PR, PA, D, A = Phase.HEALTHY, Phase.PROGRESSING, Phase.PAUSED, Phase.DEGRADED, Phase.ABORTED

# old phase → the phases it may move to. Staying in the same phase is always allowed.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    # A Healthy rollout pauses when the user pauses it, degrades when a replica dies.
    H: frozenset({PR, PA, D}),
    PR: frozenset({H, PA, D, A}),
    PA: frozenset({PR, H, D, A}),
    # Degraded heals by itself (a replica comes back) or is aborted/retried.
    D: frozenset({PR, H, PA, A}),
    # Aborted stays aborted until retry, undo or a new revision.
    A: frozenset({PR, H, PA}),
}


def is_terminal(phase: Phase) -> bool:
    """A rollout in a terminal phase waits for a human or a new revision; ``apply --wait``
    returns. Healthy (exit 0), Aborted and Degraded (exit 1)."""
    return phase in (H, A, D)


def can_transition(old: Phase, new: Phase) -> bool:
    return old == new or new in TRANSITIONS[old]


def transition(old: Phase, new: Phase) -> Phase:
    """Return ``new`` if the table allows ``old → new``, else raise ``IllegalTransition``."""
    if not can_transition(old, new):
        raise errors.IllegalTransition(f"phase {old} cannot move to {new}")
    return new
