"""From an ``analysis`` block to the metrics a run measures: templates merged, arguments
resolved and substituted, limits turned into numbers.

    analysis: {templates: [{templateName: error-rate}], args: [{name: max, value: "0.05"}]}
      + AnalysisTemplate error-rate (args: [{name: max, value: "0.1"}], metrics: [...])
      → metrics with every ``{{args.max}}`` replaced by ``0.05`` (the Rollout wins over the
        template's default), dryRun and measurementRetention merged.

Argo Rollouts' rules: an argument the template declares without a value must be passed by
the Rollout; ``valueFrom.podTemplateHashValue`` is the stable or latest revision's
pod-template hash (on Kubernetes, the ReplicaSet's ``rollouts-pod-template-hash``; locally
the revision number stands in); two
templates may not define the same metric. ``{{args.x}}`` that nothing declares is an error.

Who calls it: the controller's analysis runner when a run starts (``resolve``), and
``validation.analysis_checks`` at ``lint``/``apply`` time (``resolve`` with placeholder
revisions, to report the same errors before anything runs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from changeover.spec import analysis as spec
from changeover.spec import models

_ARG = re.compile(r"\{\{\s*args\.([^{}\s]+)\s*\}\}")


class TemplateError(ValueError):
    """The analysis cannot be resolved; ``path`` is relative to the analysis block."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(message)


@dataclass(frozen=True, kw_only=True)
class MetricSpec:
    """One metric ready to measure: every value a number, every ``{{args.x}}`` replaced."""

    name: str
    provider: str
    config: Mapping[str, Any]
    interval: float | None = None
    initial_delay: float = 0.0
    count: int | None = None
    success_condition: str | None = None
    failure_condition: str | None = None
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = spec.DEFAULT_CONSECUTIVE_ERROR_LIMIT
    consecutive_success_limit: int = 0  # 0: not applicable
    dry_run: bool = False
    retention: int = spec.DEFAULT_MEASUREMENT_RETENTION

    @property
    def effective_count(self) -> int | None:
        """Argo's EffectiveCount: no count and no interval means one measurement; an
        interval without a count means until stopped (None)."""
        if self.count is not None:
            return self.count
        return None if self.interval is not None else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "provider": self.provider,
            "config": dict(self.config),
            "interval": self.interval,
            "initialDelay": self.initial_delay,
            "count": self.count,
            "successCondition": self.success_condition,
            "failureCondition": self.failure_condition,
            "failureLimit": self.failure_limit,
            "inconclusiveLimit": self.inconclusive_limit,
            "consecutiveErrorLimit": self.consecutive_error_limit,
            "consecutiveSuccessLimit": self.consecutive_success_limit,
            "dryRun": self.dry_run,
            "retention": self.retention,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> MetricSpec:
        return MetricSpec(
            name=data["name"],
            provider=data["provider"],
            config=data.get("config") or {},
            interval=data.get("interval"),
            initial_delay=data.get("initialDelay") or 0.0,
            count=data.get("count"),
            success_condition=data.get("successCondition"),
            failure_condition=data.get("failureCondition"),
            failure_limit=data.get("failureLimit", 0),
            inconclusive_limit=data.get("inconclusiveLimit", 0),
            consecutive_error_limit=data.get(
                "consecutiveErrorLimit", spec.DEFAULT_CONSECUTIVE_ERROR_LIMIT
            ),
            consecutive_success_limit=data.get("consecutiveSuccessLimit", 0),
            dry_run=bool(data.get("dryRun", False)),
            retention=data.get("retention", spec.DEFAULT_MEASUREMENT_RETENTION),
        )


@dataclass(frozen=True, kw_only=True)
class Resolved:
    metrics: list[MetricSpec]
    args: dict[str, str] = field(default_factory=dict)
    # Arguments the Rollout passed that no template declares (lint warns about them).
    unused_args: list[str] = field(default_factory=list)


# (Secret name, key) → the value; raises TemplateError when it cannot be read.
SecretFn = Callable[[str, str], str]


def _placeholder_secret(name: str, key: str) -> str:
    return f"secret-{name}-{key}"


def resolve(
    analysis: spec.RolloutAnalysis,
    templates: Mapping[str, spec.AnalysisTemplate],
    *,
    rollout: models.Rollout,
    stable: int | None,
    latest: int,
    secret: SecretFn = _placeholder_secret,
    hashes: Mapping[int, str] | None = None,
) -> Resolved:
    """The metrics of ``analysis``; TemplateError naming what is wrong and where.
    ``secret`` reads a ``valueFrom.secretKeyRef`` argument (lint checks with a placeholder).
    ``hashes`` maps revisions to their pod-template hash (Kubernetes), which is what
    ``podTemplateHashValue`` passes; without one a revision's number stands in."""
    metrics: list[tuple[str, spec.Metric]] = []  # (path, metric)
    declared: dict[str, spec.Argument] = {}
    dry_run = list(analysis.dry_run)
    retention = list(analysis.measurement_retention)
    for i, ref in enumerate(analysis.templates):
        template = templates.get(ref.template_name)
        if template is None:
            known = ", ".join(sorted(templates)) or "none applied"
            raise TemplateError(
                f"unknown AnalysisTemplate {ref.template_name!r} (known: {known})",
                f"templates[{i}].templateName",
            )
        for arg in template.spec.args:
            declared.setdefault(arg.name, arg)
        dry_run += template.spec.dry_run
        retention += template.spec.measurement_retention
        where = f"AnalysisTemplate {template.name}: spec.metrics"
        metrics += [(f"{where}[{j}]", m) for j, m in enumerate(template.spec.metrics)]
    metrics += [(f"metrics[{j}]", m) for j, m in enumerate(analysis.metrics)]
    seen: dict[str, str] = {}
    for path, metric in metrics:
        if metric.name in seen:
            raise TemplateError(
                f"metric {metric.name!r} is defined twice ({seen[metric.name]} and {path})",
                path,
            )
        seen[metric.name] = path
    revisions = _Revisions(stable=stable, latest=latest, hashes=hashes or {})
    values, unused = _arguments(
        analysis, declared, rollout=rollout, revisions=revisions, secret=secret
    )
    out = [
        _resolve_metric(metric, path, values, dry_run=dry_run, retention=retention)
        for path, metric in metrics
    ]
    return Resolved(metrics=out, args=values, unused_args=unused)


@dataclass(frozen=True, kw_only=True)
class _Revisions:
    """The revisions ``podTemplateHashValue`` names, and their pod-template hashes."""

    stable: int | None
    latest: int
    hashes: Mapping[int, str]

    def value(self, which: str) -> str:
        revision = self.stable if which == "Stable" and self.stable is not None else self.latest
        return self.hashes.get(revision, str(revision))


def _arguments(
    analysis: spec.RolloutAnalysis,
    declared: Mapping[str, spec.Argument],
    *,
    rollout: models.Rollout,
    revisions: _Revisions,
    secret: SecretFn,
) -> tuple[dict[str, str], list[str]]:
    passed = {arg.name: arg for arg in analysis.args}
    values: dict[str, str] = {}
    for name in [*declared, *(n for n in passed if n not in declared)]:
        arg = passed.get(name) or declared[name]
        value = _value(arg, rollout=rollout, revisions=revisions, secret=secret)
        if value is None and name in passed and name in declared:
            value = _value(declared[name], rollout=rollout, revisions=revisions, secret=secret)
        if value is None:
            raise TemplateError(
                f"argument {name!r} has no value: pass it in the Rollout's analysis args "
                f"(args: [{{name: {name}, value: ...}}])",
                "args",
            )
        values[name] = value
    unused = [n for n in passed if n not in declared] if analysis.templates else []
    return values, unused


def _value(
    arg: spec.Argument, *, rollout: models.Rollout, revisions: _Revisions, secret: SecretFn
) -> str | None:
    if arg.value_from is None:
        return arg.given
    ref = arg.value_from.secret_key_ref
    if ref is not None:
        return secret(ref.name, ref.key)
    which = arg.value_from.pod_template_hash_value
    if which is not None:
        return revisions.value(which)
    path = arg.value_from.field_ref.field_path if arg.value_from.field_ref else ""
    meta = rollout.metadata
    label = re.fullmatch(r"metadata\.labels\[['\"]?([^'\"\]]+)['\"]?\]", path)
    if path == "metadata.name":
        return meta.name
    if path == "metadata.namespace":
        return meta.namespace
    if label is not None and label.group(1) in meta.labels:
        return meta.labels[label.group(1)]
    raise TemplateError(
        f"argument {arg.name!r}: fieldRef {path!r} is not available "
        "(expected metadata.name, metadata.namespace or metadata.labels['key'])",
        "args",
    )


def substitute(value: Any, args: Mapping[str, str], path: str = "") -> Any:
    """Replace ``{{args.x}}`` in every string of ``value`` (recursively).

    >>> substitute({"query": "rate(x{job='{{args.job}}'}[1m])"}, {"job": "web"})
    {'query': "rate(x{job='web'}[1m])"}
    """
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in args:
                known = ", ".join(sorted(args)) or "none"
                raise TemplateError(
                    f"{{{{args.{name}}}}} is not a declared argument (declared: {known})", path
                )
            return args[name]

        return _ARG.sub(one, value)
    if isinstance(value, Mapping):
        return {k: substitute(v, args, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, args, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _matches(patterns: list[spec.DryRun] | list[spec.MeasurementRetention], name: str) -> bool:
    return any(_full_match(p.metric_name, name) for p in patterns)


def _full_match(pattern: str, name: str) -> bool:
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return pattern == name


def _resolve_metric(
    metric: spec.Metric,
    path: str,
    args: Mapping[str, str],
    *,
    dry_run: list[spec.DryRun],
    retention: list[spec.MeasurementRetention],
) -> MetricSpec:
    raw = substitute(metric.model_dump(mode="json", by_alias=True, exclude_none=True), args, path)
    try:
        done = spec.Metric.model_validate(raw)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TemplateError(f"{where}: {first['msg']}", path) from None
    numbers: dict[str, int] = {}
    for name in (
        "count",
        "failure_limit",
        "inconclusive_limit",
        "consecutive_error_limit",
        "consecutive_success_limit",
    ):
        value = getattr(done, name)
        if isinstance(value, str):
            raise TemplateError(f"{name}: expected an integer, got {value!r}", path)
        if value is not None:
            numbers[name] = value
    times: dict[str, float | None] = {}
    for name in ("interval", "initial_delay"):
        value = getattr(done, name)
        if isinstance(value, str):
            raise TemplateError(f"{name}: expected a duration, got {value!r}", path)
        times[name] = value
    if times["interval"] is not None and times["interval"] <= 0:  # {{args.x}} resolved to 0
        raise TemplateError("interval: expected a positive duration such as 30s", path)
    if numbers.get("count", 1) > 1 and times["interval"] is None:
        # Argo Rollouts refuses this too: with no interval the second measurement never
        # comes, and the run would wait forever.
        raise TemplateError(
            f"count: {numbers['count']} measurements need an interval between them", path
        )
    keep = [r.limit for r in retention if _full_match(r.metric_name, done.name)]
    return MetricSpec(
        name=done.name,
        provider=done.provider_name,
        config=done.provider_config,
        interval=times["interval"],
        initial_delay=times["initial_delay"] or 0.0,
        count=numbers.get("count"),
        success_condition=done.success_condition,
        failure_condition=done.failure_condition,
        failure_limit=numbers["failure_limit"],
        inconclusive_limit=numbers["inconclusive_limit"],
        consecutive_error_limit=numbers["consecutive_error_limit"],
        consecutive_success_limit=numbers["consecutive_success_limit"],
        dry_run=_matches(dry_run, done.name),
        retention=keep[0] if keep else spec.DEFAULT_MEASUREMENT_RETENTION,
    )
