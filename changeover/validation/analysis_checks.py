"""Checking analysis before anything runs: AnalysisTemplate documents, the ``analysis``
blocks of Rollouts, and ``webhooks``. Every problem names its file and field path::

    rollout.yaml: spec.strategy.canary.steps[1].analysis.templates[0].templateName:
      unknown AnalysisTemplate 'error-rat' (known: error-rate)
    templates.yaml: spec.metrics[0].successCondition: unexpected character '=' ...
      result[0] = 1
                ^

What is checked: conditions parse (``analysis.conditions``), the provider is registered and
its config is sound (each provider's ``problems``), ``{{args.x}}`` names a declared
argument, every argument without a default is passed, templates exist, metric names are
unique, and a metric that would run forever (``interval`` without ``count``) is only used
where the run is stopped for it (background and experiment analysis), as Argo Rollouts
requires.

Who calls it: ``validation.specs`` for ``lint`` and ``apply`` on the client
(``strict=False``: a template in another file only earns a warning) and the controller's
``apply`` (``strict=True``: stored templates count, a missing one is an error).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence

import pydantic

from changeover import errors
from changeover.analysis import conditions, notify, templates
from changeover.analysis.providers import base as providers_base
from changeover.spec import analysis as spec
from changeover.spec import messages, models
from changeover.spec.load import LoadedDocument

Templates = Mapping[str, spec.AnalysisTemplate]
_ABSENT = re.compile(r"^AnalysisTemplate '([^']+)' is not in these files")


def absent_template(problem: errors.SpecProblem) -> str | None:
    """The template a "not in these files" warning is about (None for other problems): the
    CLI drops the warning when another file of the same apply defines it."""
    match = _ABSENT.match(problem.message) if problem.severity == "warning" else None
    return match.group(1) if match else None


def parse_templates(
    docs: Sequence[LoadedDocument],
) -> tuple[list[tuple[spec.AnalysisTemplate, str]], list[errors.SpecProblem], set[str]]:
    """The AnalysisTemplates among ``docs`` (with their labels), their problems, and the
    names of those too broken to parse (so rollouts naming them are not told twice)."""
    found: list[tuple[spec.AnalysisTemplate, str]] = []
    problems: list[errors.SpecProblem] = []
    broken: set[str] = set()
    seen: dict[str, str] = {}
    for doc in docs:
        if doc.data.get("kind") != "AnalysisTemplate":
            continue
        data = {**doc.data, "apiVersion": spec.API_VERSION}
        try:
            template = spec.AnalysisTemplate.model_validate(data)
        except pydantic.ValidationError as exc:
            problems += messages.translate(exc, doc, root=spec.AnalysisTemplate)
            metadata = doc.data.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            if isinstance(name, str):
                broken.add(name)
            continue
        if template.name in seen:
            problems.append(
                _problem(
                    doc.label,
                    "metadata.name",
                    f"another AnalysisTemplate named '{template.name}' is in this apply "
                    f"({seen[template.name]}); expected each name once",
                )
            )
            continue
        seen[template.name] = doc.label
        problems += check_template(template, source=doc.label)
        found.append((template, doc.label))
    return found, problems, broken


def check_template(template: spec.AnalysisTemplate, *, source: str) -> list[errors.SpecProblem]:
    declared = {arg.name: arg.given for arg in template.spec.args}
    problems = _metrics_problems(template.spec.metrics, "spec.metrics", declared, source)
    problems += _dry_run_problems(template.spec.dry_run, "spec.dryRun", source)
    return problems


def check_rollouts(
    rollouts: Sequence[models.Rollout],
    sources: Sequence[str],
    known: Templates,
    *,
    strict: bool,
    broken: Collection[str] = (),
) -> list[errors.SpecProblem]:
    problems: list[errors.SpecProblem] = []
    for rollout, source in zip(rollouts, sources, strict=True):
        problems += check_rollout(rollout, known, source=source, strict=strict, broken=broken)
    return problems


def blocks(rollout: models.Rollout) -> Iterator[tuple[str, spec.RolloutAnalysis, bool]]:
    """Every analysis block: (path, block, whether the rollout waits for it to end)."""
    strategy = rollout.spec.strategy
    if strategy.canary is not None:
        for i, step in enumerate(strategy.canary.steps):
            if step.analysis is not None:
                yield f"spec.strategy.canary.steps[{i}].analysis", step.analysis, True
        if strategy.canary.analysis is not None:
            yield "spec.strategy.canary.analysis", strategy.canary.analysis, False
    if strategy.blue_green is not None:
        for name in ("pre_promotion_analysis", "post_promotion_analysis"):
            block = getattr(strategy.blue_green, name)
            if block is not None:
                camel = (
                    "prePromotionAnalysis" if name.startswith("pre") else "postPromotionAnalysis"
                )
                yield f"spec.strategy.blueGreen.{camel}", block, True
    for name, holder in (("abTest", strategy.ab_test), ("shadow", strategy.shadow)):
        if holder is not None and holder.analysis is not None:
            yield f"spec.strategy.{name}.analysis", holder.analysis, False
    if rollout.spec.checks is not None:
        # Each metric is measured once per check, so an interval without a count is fine.
        yield "spec.checks", rollout.spec.checks, False


def check_rollout(
    rollout: models.Rollout,
    known: Templates,
    *,
    source: str,
    strict: bool,
    broken: Collection[str] = (),
) -> list[errors.SpecProblem]:
    problems = _webhook_problems(rollout, source)
    try:
        notify.parse_targets(rollout.spec.notifications)
    except ValueError as exc:
        where, _, message = str(exc).partition(": ")
        problems.append(_problem(source, f"spec.{where}", message))
    canary = rollout.spec.strategy.canary
    problems += _check_step_problems(rollout, source)
    if canary is not None and canary.analysis is not None:
        start = canary.analysis.starting_step
        if start is not None and start >= max(1, len(canary.steps)):
            problems.append(
                _problem(
                    source,
                    "spec.strategy.canary.analysis.startingStep",
                    f"expected a step index below {len(canary.steps)} (steps count from 0), "
                    f"got {start}",
                )
            )
    for path, block, blocking in blocks(rollout):
        declared = {arg.name: arg.given for arg in block.args}
        problems += _metrics_problems(block.metrics, f"{path}.metrics", declared, source)
        problems += _dry_run_problems(block.dry_run, f"{path}.dryRun", source)
        missing = [
            (i, ref.template_name)
            for i, ref in enumerate(block.templates)
            if ref.template_name not in known
        ]
        for i, name in missing:
            if name in broken:
                continue  # its own document's problems say what is wrong with it
            where = f"{path}.templates[{i}].templateName"
            if strict:
                have = ", ".join(sorted(known)) or "none applied"
                message = f"unknown AnalysisTemplate '{name}' (known: {have})"
                problems.append(_problem(source, where, message))
            else:
                message = (
                    f"AnalysisTemplate '{name}' is not in these files: it must be applied "
                    "(changeover apply -f) before the rollout runs this analysis"
                )
                problems.append(_problem(source, where, message, warning=True))
        if missing:
            continue
        problems += _resolution_problems(rollout, path, block, blocking, known, source)
    return problems


def _check_step_problems(rollout: models.Rollout, source: str) -> list[errors.SpecProblem]:
    """A ``check`` step (or ``prePromotionChecks``) waits for ``spec.checks``: without it,
    it could never pass."""
    if rollout.spec.checks is not None:
        return []
    blue_green = rollout.spec.strategy.blue_green
    if blue_green is not None and blue_green.pre_promotion_checks is not None:
        return [
            _problem(
                source,
                "spec.strategy.blueGreen.prePromotionChecks",
                "expected spec.checks (interval, threshold, metrics) for promotion to wait for",
            )
        ]
    canary = rollout.spec.strategy.canary
    if canary is None:
        return []
    return [
        _problem(
            source,
            f"spec.strategy.canary.steps[{i}].check",
            "expected spec.checks (interval, threshold, metrics) for this step to wait for",
        )
        for i, step in enumerate(canary.steps)
        if step.check is not None
    ]


def _resolution_problems(
    rollout: models.Rollout,
    path: str,
    block: spec.RolloutAnalysis,
    blocking: bool,
    known: Templates,
    source: str,
) -> list[errors.SpecProblem]:
    try:
        resolved = templates.resolve(block, known, rollout=rollout, stable=1, latest=2)
    except templates.TemplateError as exc:
        where = f"{path}.{exc.path}" if exc.path and not exc.path.startswith("Analysis") else path
        prefix = f"{exc.path}: " if exc.path.startswith("Analysis") else ""
        return [_problem(source, where, f"{prefix}{exc}")]
    problems = [
        _problem(
            source,
            f"{path}.args",
            f"argument '{name}' is not declared by any of the templates; it is ignored",
            warning=True,
        )
        for name in resolved.unused_args
    ]
    if blocking:
        for metric in resolved.metrics:
            if metric.effective_count is None and not metric.dry_run:
                problems.append(
                    _problem(
                        source,
                        path,
                        f"metric '{metric.name}' has an interval but no count, so it would run "
                        "forever and the rollout would never go on; give it a count "
                        "(only background analysis may run until stopped)",
                    )
                )
    return problems


_ARG_REF = re.compile(r"\{\{\s*args\.([^{}\s]+)\s*\}\}")


def _metrics_problems(
    metrics: Sequence[spec.Metric], path: str, declared: Mapping[str, str | None], source: str
) -> list[errors.SpecProblem]:
    """Conditions, providers and ``{{args.x}}`` of ``metrics``; ``declared`` maps each
    argument to its default (None: known only when a run starts)."""
    problems: list[errors.SpecProblem] = []
    seen: set[str] = set()
    for i, metric in enumerate(metrics):
        where = f"{path}[{i}]"
        if metric.name in seen:
            problems.append(
                _problem(source, f"{where}.name", f"metric '{metric.name}' is defined twice")
            )
        seen.add(metric.name)
        for field, text in (
            ("successCondition", metric.success_condition),
            ("failureCondition", metric.failure_condition),
        ):
            if text is None:
                continue
            checked = _ARG_REF.sub("0", text)  # {{args.x}} is a value once substituted
            error = conditions.check(checked)
            if error is not None:
                problems.append(_problem(source, f"{where}.{field}", error))
        if isinstance(metric.interval, float) and metric.interval <= 0:
            problems.append(
                _problem(
                    source,
                    f"{where}.interval",
                    "expected a positive duration such as 30s: an interval of 0 would measure "
                    "on every controller tick",
                )
            )
        if isinstance(metric.count, int) and metric.count > 1 and metric.interval is None:
            problems.append(
                _problem(
                    source,
                    f"{where}.interval",
                    f"metric '{metric.name}' has count {metric.count} but no interval, so "
                    "there is no time between its measurements; give an interval such as 30s",
                )
            )
        name = metric.provider_name
        if name not in providers_base.registered():
            known = ", ".join(providers_base.registered())
            problems.append(
                _problem(
                    source,
                    f"{where}.provider",
                    f"unknown metric provider '{name}'; expected one of {known}",
                )
            )
        else:
            config = templates.substitute(metric.provider_config, _Defaults(declared))
            for message in providers_base.problems(name, config):
                if "{{" not in message:  # about a value only a run will know
                    problems.append(_problem(source, f"{where}.provider.{name}", message))
        dumped = metric.model_dump(mode="json", by_alias=True, exclude_none=True)
        for ref in sorted(set(_ARG_REF.findall(str(dumped)))):
            if ref not in declared:
                have = ", ".join(sorted(declared)) or "none"
                message = f"{{{{args.{ref}}}}} is not a declared argument (declared: {have})"
                problems.append(_problem(source, where, message))
    return problems


class _Defaults(dict[str, str]):
    """Arguments for lint-time substitution: a default where there is one, else the
    placeholder itself (providers leave ``{{...}}`` values to the run)."""

    def __init__(self, declared: Mapping[str, str | None]) -> None:
        super().__init__({k: v for k, v in declared.items() if v is not None})

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return dict.get(self, key) or f"{{{{args.{key}}}}}"


def _dry_run_problems(
    entries: Sequence[spec.DryRun], path: str, source: str
) -> list[errors.SpecProblem]:
    problems = []
    for i, entry in enumerate(entries):
        try:
            re.compile(entry.metric_name)
        except re.error as exc:
            message = f"not a valid regular expression: {exc}"
            problems.append(_problem(source, f"{path}[{i}].metricName", message))
    return problems


def _webhook_problems(rollout: models.Rollout, source: str) -> list[errors.SpecProblem]:
    problems = []
    seen: set[str] = set()
    strategy = rollout.spec.strategy.name
    for i, hook in enumerate(rollout.spec.webhooks):
        if hook.name in seen:
            problems.append(
                _problem(
                    source,
                    f"spec.webhooks[{i}].name",
                    f"another webhook is named '{hook.name}'; expected each name once",
                )
            )
        seen.add(hook.name)
        if hook.type == "confirm-traffic-increase" and strategy != "canary":
            problems.append(
                _problem(
                    source,
                    f"spec.webhooks[{i}].type",
                    f"confirm-traffic-increase only gates canary weight increases; a "
                    f"{strategy} rollout never calls it",
                    warning=True,
                )
            )
        if hook.type == "confirm-promotion" and strategy in ("rollingUpdate", "recreate"):
            problems.append(
                _problem(
                    source,
                    f"spec.webhooks[{i}].type",
                    f"confirm-promotion gates a final cut-over, which a {strategy} rollout "
                    "does not have",
                    warning=True,
                )
            )
    return problems


def _problem(source: str, path: str, message: str, *, warning: bool = False) -> errors.SpecProblem:
    return errors.SpecProblem(
        file=source, path=path, message=message, severity="warning" if warning else "error"
    )
