"""Checking specs against the rest of changeover before anything runs: every problem at once.

A spec that parses can still ask for what nothing here does: a canary step the chosen router
cannot carry (``validation.routers``), a metric provider that is not registered or a
condition that does not parse (``validation.analysis_checks``). This module runs those with
the spec's own cross-field rules (``spec.rules``, ``spec.limits``) in one pass. Problems
come back as ``SpecProblem``\\ s; those with ``severity="warning"`` are worth saying but do
not block an apply.

Who calls it: the CLI's ``lint`` (``lint``) and ``apply`` (``read``); the local controller's
and the operator's ``apply`` (``validate_rollouts`` on rollouts they already hold);
``importers`` (``check_documents`` on what a conversion wrote).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from changeover import errors
from changeover.spec import limits, load, models, rules
from changeover.validation import analysis_checks, routers


def lint(path: str | os.PathLike[str]) -> list[errors.SpecProblem]:
    """Every problem and warning in the file or directory at ``path``; never raises."""
    docs, problems = load.collect_path(path)
    return check_documents(docs, problems)[1]


def read(path: str | os.PathLike[str]) -> load.Specs:
    """The specs at ``path``, checked; SpecError with every error if any. Warnings ride
    along in ``Specs.warnings`` for the caller to show."""
    return _checked(*load.collect_path(path))


def read_text(text: str, *, source: str = "<string>") -> load.Specs:
    """``read`` for YAML (or JSON) already in memory, such as an HTTP request body."""
    try:
        docs = load.load_text(text, source=source)
    except errors.SpecError as exc:
        return _checked([], exc.problems)
    return _checked(docs, [])


def validate_rollouts(
    rollouts: Sequence[models.Rollout],
    *,
    source: str = "",
    sources: Sequence[str] | None = None,
) -> list[errors.SpecProblem]:
    """Cross-field problems (and warnings: filter on ``severity``) of rollouts applied
    together. Messages name ``sources[i]`` (parallel to ``rollouts``) or else ``source``."""
    labels = list(sources) if sources is not None else [source] * len(rollouts)
    problems: list[errors.SpecProblem] = []
    for rollout, label in zip(rollouts, labels, strict=True):
        problems += check_rollout(rollout, source=label)
    problems += rules.apply_problems(rollouts, labels)
    return problems


def check_rollout(rollout: models.Rollout, *, source: str = "") -> list[errors.SpecProblem]:
    """Problems within one rollout."""
    problems = [
        *limits.check_rollout(rollout),  # size limits: spec.limits, kept apart from the rest
        *routers.problems(rollout),
        *rules.rollout_problems(rollout),
    ]
    return [dataclasses.replace(p, file=source) for p in problems]


def check_documents(
    docs: Sequence[load.LoadedDocument], problems: Sequence[errors.SpecProblem] = ()
) -> tuple[load.Specs, list[errors.SpecProblem]]:
    """``docs`` parsed, and every problem of them after ``problems`` (those found while
    loading): the Rollouts', the AnalysisTemplates', and their analysis blocks' (a template
    that is not among ``docs`` is only a warning)."""
    specs, found = load.collect_documents(docs)
    parsed, template_problems, broken = analysis_checks.parse_templates(specs.other)
    known = {template.name: template for template, _ in parsed}
    analysis_problems = analysis_checks.check_rollouts(
        specs.rollouts, specs.sources, known, strict=False, broken=broken
    )
    return specs, [
        *problems,
        *found,
        *template_problems,
        *validate_rollouts(specs.rollouts, sources=specs.sources),
        *analysis_problems,
    ]


def _checked(docs: list[load.LoadedDocument], problems: list[errors.SpecProblem]) -> load.Specs:
    specs, found = check_documents(docs, problems)
    failures = [p for p in found if p.severity != "warning"]
    if failures:
        raise errors.SpecError(failures)
    return dataclasses.replace(specs, warnings=[p for p in found if p.severity == "warning"])
