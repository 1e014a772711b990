"""The control API's documents as pydantic models: request bodies the handlers validate
with, and the answers they send. ``api.openapi`` turns them into the OpenAPI schema that
``serve`` publishes at ``/api/openapi.json``, so the schema is the code's own contract.

Request models are strict (``"yes"`` is not a bool, ``true`` is not a revision number) and
a failure becomes a 400 whose problems name each bad field (``validate``). Answer models
describe the documents ``RolloutService`` returns; fields the server may add later are
allowed (``extra="allow"``) so an older schema never rejects a newer answer.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from changeover import errors

M = TypeVar("M", bound=BaseModel)


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# --- requests ------------------------------------------------------------------------------


class ApplyRequest(_Request):
    documents: list[dict[str, Any]] = Field(
        description="Rollout and AnalysisTemplate documents, as parsed from YAML."
    )
    source: str = Field("<api>", description="A name for the documents, used in errors.")


class PromoteRequest(_Request):
    full: bool = Field(False, description="Skip every remaining step and analysis.")


class UndoRequest(_Request):
    to_revision: int | None = Field(
        None,
        alias="toRevision",
        ge=1,
        description="The revision to go back to (default: the previous one).",
    )


class SessionRequest(_Request):
    token: str = Field(min_length=1, max_length=4096, description="The API token.")


# --- answers -------------------------------------------------------------------------------


class Problem(_Answer):
    file: str
    path: str
    message: str


class ErrorDocument(_Answer):
    error: str
    type: str | None = None
    problems: list[Problem] | None = None


class Health(_Answer):
    ok: bool


class RevisionState(_Answer):
    desired: int
    ready: int
    restarts: int | None = None
    notReady: str | None = None


class Status(_Answer):
    """One rollout's status document (``status -o json``; ``rollout_service``)."""

    name: str
    phase: str
    message: str | None = None
    strategy: str | None = None
    revision: int | None = None
    stableRevision: int | None = None
    canaryRevision: int | None = None
    currentStepIndex: int | None = None
    totalSteps: int | None = None
    weights: dict[str, float] = Field(default_factory=dict)
    replicas: dict[str, int] = Field(default_factory=dict)
    revisionStates: dict[str, RevisionState] = Field(default_factory=dict)
    analysis: dict[str, Any] = Field(default_factory=dict)
    analysisRuns: list[dict[str, Any]] = Field(default_factory=list)
    shadow: dict[str, dict[str, Any]] | None = None
    variants: dict[str, dict[str, dict[str, dict[str, Any]]]] | None = Field(
        None,
        description="Per revision, per flag the builtin router evaluates, per variant: "
        "requests, errors (5xx), errorRate, latency p50/p99",
    )
    endpoint: str | None = None
    updatedAt: float | None = None


class RolloutList(_Answer):
    rollouts: list[Status]


class NamespaceList(_Answer):
    namespaces: list[str] = Field(
        description="Sorted; the starting one alone when listing is forbidden."
    )
    start: str = Field(description="The namespace the dashboard was started in.")
    listed: bool = Field(description="False when the user may not list namespaces.")
    all: bool = Field(description="Whether GET /api/v1/rollouts lists every namespace's.")


class Event(_Answer):
    time: float
    reason: str
    message: str
    revision: int | None = None


class EventList(_Answer):
    events: list[Event]


class Revision(_Answer):
    revision: int
    createdAt: float
    command: list[str] = Field(default_factory=list)
    stable: bool
    current: bool


class History(_Answer):
    revisions: list[Revision]


class Measurement(_Answer):
    phase: str
    value: Any = None
    message: str = ""
    finishedAt: float | None = None


class Threshold(_Answer):
    operator: str
    value: float


class RunMetric(_Answer):
    name: str
    successCondition: str | None = None
    failureCondition: str | None = None
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    phase: str
    message: str = ""
    measurements: list[Measurement] = Field(default_factory=list)


class AnalysisRunDetail(_Answer):
    id: str
    kind: str
    revision: int
    phase: str
    message: str = ""
    startedAt: float | None = None
    finishedAt: float | None = None
    metrics: list[RunMetric]


class AnalysisList(_Answer):
    runs: list[AnalysisRunDetail]


class ApplyResult(_Answer):
    name: str
    action: str
    revision: int | None = None
    kind: str | None = None


class ApplyAnswer(_Answer):
    results: list[ApplyResult]


class Deleted(_Answer):
    deleted: str


class Logs(_Answer):
    logs: list[dict[str, Any]]


class Shadow(_Answer):
    shadow: dict[str, dict[str, Any]] = Field(
        description="Per shadow revision: compared, matched, mismatched by kind, "
        "latency delta p50/p99, and the recent differences with both answers"
    )


class Session(_Answer):
    authenticated: bool
    csrf: str | None = Field(None, description="Send back as X-CSRF-Token with each action.")


# --- validation ----------------------------------------------------------------------------

_EXPECTED = {
    "bool_type": "a boolean",
    "int_type": "an integer",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "missing": "a value (required)",
}


def validate(model: type[M], doc: dict[str, Any], *, source: str = "") -> M:
    """``model`` from a request body, or a SpecError with one problem per bad field, its
    path written as in the body (``documents[0]``) and what was expected."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = ""
            for part in err["loc"]:
                path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
            expected = _EXPECTED.get(err["type"], err["msg"].lower())
            got = "" if err["type"] == "missing" else f", got {_shown(err.get('input'))}"
            problems.append(
                errors.SpecProblem(file=source, path=path, message=f"expected {expected}{got}")
            )
        raise errors.SpecError(problems) from None


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
