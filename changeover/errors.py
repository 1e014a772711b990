"""The one tree of changeover's errors.

Every layer raises from here; foreign exceptions (OSError, httpx, sqlite3, yaml) are
translated at the boundary with ``raise ... from exc`` so the CLI can map any error to a
clear message and an exit code without ever showing a traceback.

    ChangeoverError
    ├── SpecError            bad user input: file, field path, expectation (exit 2)
    ├── StateError           an operation that does not fit the current state (exit 1)
    │   └── IllegalTransition   the phase table refused a transition (a bug if it escapes)
    ├── NotFound             no such rollout / revision (exit 1)
    └── BackendError         a platform, router or server call failed
        ├── TemporaryBackendError   worth retrying (connection refused, timeout)
        └── PermanentBackendError   not worth retrying (bad command, no such file)
"""

from __future__ import annotations

from dataclasses import dataclass


class ChangeoverError(Exception):
    """Base of every error changeover raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a spec: where, and what was expected there.

    >>> str(SpecProblem(file="r.yaml", path="spec.strategy.canary.steps[2].setWeight",
    ...                 message="expected an integer from 0 to 100, got 150"))
    'r.yaml: spec.strategy.canary.steps[2].setWeight: expected an integer from 0 to 100, got 150'
    """

    file: str
    path: str
    message: str
    # "error" blocks an apply; "warning" is reported by lint but lets the spec through.
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        field = f"{self.path}: " if self.path else ""
        level = "warning: " if self.severity == "warning" else ""
        return f"{where}{field}{level}{self.message}"


class SpecError(ChangeoverError):
    """A spec (or any user input) is invalid. Carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, *, file: str, path: str, message: str) -> SpecError:
        return cls([SpecProblem(file=file, path=path, message=message)])


class StateError(ChangeoverError):
    """The operation does not fit the rollout's current state (e.g. promote when Healthy)."""


class IllegalTransition(StateError):
    """The phase table has no such transition."""


class NotFound(ChangeoverError):
    """No rollout, revision or resource of that name."""


class BackendError(ChangeoverError):
    """A platform, router or remote-server operation failed."""


class TemporaryBackendError(BackendError):
    """Failed in a way that may succeed on retry."""


class PermanentBackendError(BackendError):
    """Failed in a way that retrying will not fix."""


class Forbidden(PermanentBackendError):
    """The backend refused the user this (a cluster's RBAC: HTTP 403)."""
