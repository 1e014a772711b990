"""Analysis and webhook spec: ``AnalysisTemplate`` resources, the ``analysis`` blocks of a
Rollout, and Flagger-style ``webhooks``. Field names and defaults are Argo Rollouts' (and
Flagger's for webhooks), so templates written from their documentation read as they are.

An AnalysisTemplate::

    apiVersion: changeover.dev/v1alpha1
    kind: AnalysisTemplate
    metadata: {name: error-rate}
    spec:
      args:
        - name: max-error-rate
          value: "0.05"                  # a default; the Rollout may override it
      metrics:
        - name: error-rate
          interval: 5s
          count: 6
          failureLimit: 1                # more than 1 failed measurement fails the metric
          successCondition: result <= {{args.max-error-rate}}
          provider:
            builtin: {metric: error-rate, revision: canary, window: 30s}
      dryRun:
        - metricName: latency-.*          # regular expressions, as in Argo Rollouts

Where a Rollout runs analysis: ``strategy.canary.steps[].analysis`` (blocks the step),
``strategy.canary.analysis`` (background, from ``startingStep``),
``strategy.blueGreen.prePromotionAnalysis`` / ``postPromotionAnalysis``, and
``strategy.abTest.analysis`` / ``strategy.shadow.analysis`` (while the experiment runs).
Each names ``templates`` and passes ``args``; ``metrics`` may also be written inline (a
changeover addition: one metric rarely deserves its own resource).

Values stay as written until a run starts (``analysis.templates`` substitutes
``{{args.x}}`` then): ``count: "{{args.count}}"`` is valid until the run says otherwise.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from changeover.spec.fields import Duration, Metadata, Model, parse_duration

API_VERSION: Literal["changeover.dev/v1alpha1"] = "changeover.dev/v1alpha1"

# Argo Rollouts' defaults.
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
DEFAULT_MEASUREMENT_RETENTION = 10
# Argo Rollouts retries a metric whose measurement errored, and which has no interval,
# after this long.
ERROR_RETRY_SECONDS = 10.0

_PLACEHOLDER = re.compile(r"\{\{\s*[^{}]+?\s*\}\}")
NAME = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


def _int_or_placeholder(value: object) -> int | str:
    """An integer, or a string with ``{{args.x}}`` to become one when a run starts."""
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("expected a non-negative integer")
        return value
    if isinstance(value, str):
        if value.strip().isdigit():
            return int(value)
        if _PLACEHOLDER.search(value):
            return value
    raise ValueError(f"expected a non-negative integer or {{{{args.name}}}}, got {value!r}")


IntOrArg = Annotated[int | str, BeforeValidator(_int_or_placeholder)]


def _limit_or_placeholder(value: object) -> int | str:
    """``failureLimit`` also takes -1: failures alone never fail the metric (Argo)."""
    if value == -1 or value == "-1":
        return -1
    return _int_or_placeholder(value)


LimitOrArg = Annotated[int | str, BeforeValidator(_limit_or_placeholder)]


def _duration_or_placeholder(value: object) -> float | str:
    if isinstance(value, str) and _PLACEHOLDER.search(value):
        return value
    return parse_duration(value)


DurationOrArg = Annotated[float | str, BeforeValidator(_duration_or_placeholder)]


# --- arguments -------------------------------------------------------------------------


class FieldRef(Model):
    field_path: str


class SecretKeyRef(Model):
    name: Annotated[str, Field(min_length=1)]
    key: Annotated[str, Field(min_length=1)]


class ValueFrom(Model):
    """Where an argument's value comes from when the run starts.

    ``podTemplateHashValue: Stable`` / ``Latest`` is the stable / new revision's
    pod-template hash on Kubernetes (its ReplicaSet's ``rollouts-pod-template-hash``, as
    Argo Rollouts passes it); on the local platform, which has no hashes, its number.
    ``fieldRef: {fieldPath: metadata.name}`` reads the Rollout (also
    ``metadata.namespace`` and ``metadata.labels['app']``). ``secretKeyRef: {name, key}``
    reads a key of a Kubernetes Secret in the rollout's namespace when the run starts, as
    Argo Rollouts does (Kubernetes only: on the local platform the run cannot start and
    says so)."""

    pod_template_hash_value: Literal["Stable", "Latest"] | None = None
    field_ref: FieldRef | None = None
    secret_key_ref: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _one(self) -> ValueFrom:
        given = [self.pod_template_hash_value, self.field_ref, self.secret_key_ref]
        if sum(g is not None for g in given) != 1:
            raise ValueError("expected exactly one of podTemplateHashValue, fieldRef, secretKeyRef")
        return self


class Argument(Model):
    """``{name, value}``. In a template, ``value`` (or ``default``) is a default the Rollout
    may override; without one, the Rollout must pass the argument."""

    name: Annotated[str, Field(min_length=1)]
    value: str | None = None
    default: str | None = None
    value_from: ValueFrom | None = None

    @field_validator("value", "default", mode="before")
    @classmethod
    def _scalar(cls, value: object) -> object:
        # YAML reads `value: 0.05` as a float; an argument is text that gets substituted.
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value) if isinstance(value, float) else str(value)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Argument:
        given = [n for n in ("value", "default", "value_from") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError("expected at most one of value, default, valueFrom")
        return self

    @property
    def given(self) -> str | None:
        return self.value if self.value is not None else self.default


class DryRun(Model):
    """A metric (or a regular expression over metric names) whose verdict is only shown."""

    metric_name: Annotated[str, Field(min_length=1)]


class MeasurementRetention(Model):
    metric_name: Annotated[str, Field(min_length=1)]
    limit: Annotated[int, Field(ge=1)]


# --- metrics ---------------------------------------------------------------------------


class Metric(Model):
    """One metric: measured every ``interval`` (after ``initialDelay``), ``count`` times.

    Without ``interval`` and ``count`` a metric is measured once. With ``interval`` but no
    ``count`` it is measured until the run is stopped (background analysis only).
    A measurement is Successful when ``successCondition`` holds, Failed when
    ``failureCondition`` holds (or, with only a success condition, when it does not),
    Inconclusive when neither, Error when it could not be taken. The metric fails once
    more than ``failureLimit`` measurements failed, is Inconclusive once more than
    ``inconclusiveLimit`` were, and errs after more than ``consecutiveErrorLimit`` errors
    in a row. With ``consecutiveSuccessLimit`` (Argo Rollouts 1.8) it succeeds as soon as
    that many measurements in a row passed; reaching ``count`` without that is a failure,
    or Inconclusive when ``failureLimit`` applies too (``failureLimit: -1`` turns it off).
    """

    name: Annotated[str, Field(pattern=NAME, max_length=63)]
    interval: DurationOrArg | None = None
    initial_delay: DurationOrArg | None = None
    count: IntOrArg | None = None
    success_condition: str | None = None
    failure_condition: str | None = None
    failure_limit: LimitOrArg = 0
    inconclusive_limit: IntOrArg = 0
    consecutive_error_limit: IntOrArg = DEFAULT_CONSECUTIVE_ERROR_LIMIT
    consecutive_success_limit: IntOrArg = 0
    # Exactly one provider: {builtin: {...}}, {prometheus: {...}}, {web: ...}, {job: ...}
    provider: dict[str, dict[str, Any]]

    @field_validator("provider", mode="before")
    @classmethod
    def _bare_provider(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("provider")
    @classmethod
    def _one_provider(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if len(value) != 1:
            got = ", ".join(value) or "none"
            raise ValueError(f"expected exactly one provider (such as builtin), got {got}")
        return value

    @property
    def provider_name(self) -> str:
        return next(iter(self.provider))

    @property
    def provider_config(self) -> dict[str, Any]:
        return self.provider[self.provider_name]


class AnalysisTemplateSpec(Model):
    metrics: Annotated[list[Metric], Field(min_length=1)]
    args: list[Argument] = Field(default_factory=list)
    dry_run: list[DryRun] = Field(default_factory=list)
    measurement_retention: list[MeasurementRetention] = Field(default_factory=list)


class AnalysisTemplate(Model):
    api_version: Literal["changeover.dev/v1alpha1"] = API_VERSION
    kind: Literal["AnalysisTemplate"] = "AnalysisTemplate"
    metadata: Metadata
    spec: AnalysisTemplateSpec

    @property
    def name(self) -> str:
        return self.metadata.name


# --- in a Rollout ----------------------------------------------------------------------


class TemplateRef(Model):
    template_name: Annotated[str, Field(min_length=1)]
    # Argo Rollouts' ClusterAnalysisTemplate; one server has one scope, so it is accepted
    # and means the same template.
    cluster_scope: bool = False


class RolloutAnalysis(Model):
    """An ``analysis`` block: templates (merged, Argo-style), inline metrics, arguments."""

    templates: list[TemplateRef] = Field(default_factory=list)
    metrics: list[Metric] = Field(default_factory=list)
    args: list[Argument] = Field(default_factory=list)
    dry_run: list[DryRun] = Field(default_factory=list)
    measurement_retention: list[MeasurementRetention] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> RolloutAnalysis:
        if not self.templates and not self.metrics:
            raise ValueError("expected templates, metrics, or both")
        return self


class Checks(RolloutAnalysis):
    """``spec.checks``: Flagger's analysis, a *check* every ``interval`` that gates steps.

    A check calls every ``rollout`` webhook once as it starts and measures every metric
    once, ``interval`` later; it passes when all of them pass (a metric that fails, errs,
    is inconclusive or finds no value fails it). A canary's ``check`` step waits for
    passing checks, one interval each. A failed check is retried an interval later, and
    once ``threshold`` checks failed since the revision started rolling out (Flagger's
    ``failedChecks``: counted across the steps, never reset by a pass) the rollout is
    aborted. With ``spec.checks``, a failed ``pre-rollout`` webhook is a failed check too,
    retried every interval. A metric's own ``interval``, ``count`` and limits are not used:
    one measurement per check. Metrics and templates may both be empty (webhooks only)."""

    interval: Duration = 60.0
    threshold: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _something(self) -> Checks:
        if self.interval <= 0:
            raise ValueError("interval: expected a positive duration")
        return self


class BackgroundAnalysis(RolloutAnalysis):
    """``strategy.canary.analysis``: runs from step ``startingStep`` (0-based, as in Argo
    Rollouts; default 0) until the rollout completes, aborting it whenever it fails."""

    starting_step: Annotated[int, Field(ge=0)] | None = None


# --- webhooks (Flagger) ------------------------------------------------------------------

WebhookType = Literal[
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "post-rollout",
    "rollback",
    "event",
]
WEBHOOK_TYPES: tuple[str, ...] = WebhookType.__args__  # type: ignore[attr-defined]


class Webhook(Model):
    """A Flagger webhook: changeover POSTs ``{name, namespace, phase, revision, type,
    metadata}`` to ``url``; an answer in 2xx is a pass, anything else (or no answer within
    ``timeoutSeconds``) a failed check. What each type gates:

    - ``confirm-rollout``: the new revision is not started until the hook passes (polled
      every ``interval``); ``confirm-traffic-increase`` (canary): each weight increase waits
      for it; ``confirm-promotion``: the final cut-over waits for it.
    - ``pre-rollout``: called (with ``retries``) before the new revision gets any traffic;
      a failure aborts the rollout.
    - ``rollout``: called every ``interval`` while the rollout is in flight (a load
      generator, a smoke test); more than ``failureLimit`` failed calls abort it.
    - ``rollback``: polled every ``interval`` while in flight; a 2xx answer *asks for* a
      rollback and aborts the rollout (Flagger's manual-rollback gate).
    - ``post-rollout``: called once the rollout completed or was aborted; ``event``: called
      for every event. Their failures are only reported.

    Why ``spec.webhooks`` and not ``strategy.<x>.webhooks``: a webhook is about the life of
    a rollout (may it start, is it being load-tested, may it finish, tell me what happened),
    and six of the eight types mean the same under every strategy. Under the strategy,
    switching canary → blueGreen would silently drop the gates a team relies on, and the
    same list would be written out once per strategy. Flagger keeps them under
    ``analysis`` only because it has one strategy engine. The two strategy-shaped types
    (``confirm-traffic-increase``: canary; ``confirm-promotion``: not rollingUpdate or
    recreate) earn a lint warning where they can never fire.
    """

    name: Annotated[str, Field(pattern=NAME, max_length=63)]
    type: WebhookType = "rollout"
    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
    timeout_seconds: Annotated[float, Field(gt=0)] | None = None
    # Flagger spells the timeout as a duration; either is accepted.
    timeout: Duration | None = None
    retries: Annotated[int, Field(ge=0, le=100)] = 0
    interval: Duration = 10.0
    failure_limit: Annotated[int, Field(ge=0)] = 3
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("metadata", mode="before")
    @classmethod
    def _text_values(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else str(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _positive_interval(self) -> Webhook:
        if self.interval <= 0:
            raise ValueError("interval: expected a positive duration")
        if self.timeout_seconds is not None and self.timeout is not None:
            raise ValueError("expected one of timeoutSeconds, timeout")
        return self

    @property
    def timeout_s(self) -> float:
        if self.timeout_seconds is not None:
            return self.timeout_seconds
        return self.timeout if self.timeout is not None else 10.0
