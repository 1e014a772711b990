"""Templates and arguments: merged, resolved and substituted as Argo Rollouts does."""

from __future__ import annotations

from typing import Any

import pytest

from changeover.analysis import templates
from changeover.spec import analysis as spec
from changeover.spec import models

ROLLOUT = models.Rollout.model_validate(
    {
        "metadata": {"name": "web", "labels": {"app": "chat"}},
        "spec": {
            "template": {"command": ["app"]},
            "service": {"port": 8080},
            "strategy": {"canary": {}},
        },
    }
)


def template(
    name: str, *metrics: dict[str, Any], args: list[Any] | None = None, **spec_fields: Any
) -> spec.AnalysisTemplate:
    return spec.AnalysisTemplate.model_validate(
        {
            "metadata": {"name": name},
            "spec": {"metrics": list(metrics), "args": args or [], **spec_fields},
        }
    )


def metric(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": {"web": {"url": "http://127.0.0.1:1/{{args.path}}"}},
        **fields,
    }


def resolve(block: dict[str, Any], *known: spec.AnalysisTemplate) -> templates.Resolved:
    return templates.resolve(
        spec.RolloutAnalysis.model_validate(block),
        {t.name: t for t in known},
        rollout=ROLLOUT,
        stable=1,
        latest=2,
    )


def test_the_rollout_overrides_the_templates_defaults_and_values_are_substituted() -> None:
    t = template(
        "health",
        metric(
            "ok", count="{{args.count}}", interval="5s", successCondition="result < {{args.max}}"
        ),
        args=[
            {"name": "path", "value": "health"},
            {"name": "max", "value": 0.05},
            {"name": "count"},
        ],
    )
    resolved = resolve(
        {
            "templates": [{"templateName": "health"}],
            "args": [{"name": "max", "value": "0.01"}, {"name": "count", "value": "3"}],
        },
        t,
    )
    (m,) = resolved.metrics
    assert m.config == {"url": "http://127.0.0.1:1/health"}
    assert m.success_condition == "result < 0.01" and m.count == 3
    assert resolved.args == {"path": "health", "max": "0.01", "count": "3"}


def test_an_argument_without_a_value_must_be_passed() -> None:
    t = template("health", metric("ok"), args=[{"name": "path"}])
    with pytest.raises(templates.TemplateError, match="argument 'path' has no value"):
        resolve({"templates": [{"templateName": "health"}]}, t)


def test_value_from_names_revisions_and_rollout_fields() -> None:
    t = template(
        "health",
        metric("ok", successCondition="'{{args.stable}}-{{args.latest}}-{{args.app}}' != ''"),
        args=[
            {"name": "path", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "stable", "valueFrom": {"podTemplateHashValue": "Stable"}},
            {"name": "latest", "valueFrom": {"podTemplateHashValue": "Latest"}},
            {"name": "app", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        ],
    )
    (m,) = resolve({"templates": [{"templateName": "health"}]}, t).metrics
    assert m.config["url"].endswith("/web") and m.success_condition == "'1-2-chat' != ''"


def test_templates_merge_and_a_metric_defined_twice_is_an_error() -> None:
    a = template(
        "a", metric("one"), args=[{"name": "path", "value": "x"}], dryRun=[{"metricName": "tw.*"}]
    )
    b = template("b", metric("two", interval="5s", count=2))
    resolved = resolve({"templates": [{"templateName": "a"}, {"templateName": "b"}]}, a, b)
    assert [(m.name, m.dry_run) for m in resolved.metrics] == [("one", False), ("two", True)]
    c = template("c", metric("one"))
    with pytest.raises(templates.TemplateError, match="'one' is defined twice"):
        resolve({"templates": [{"templateName": "a"}, {"templateName": "c"}]}, a, c)


def test_unknown_templates_and_undeclared_placeholders_are_errors() -> None:
    with pytest.raises(templates.TemplateError, match="unknown AnalysisTemplate 'nope'") as e:
        resolve({"templates": [{"templateName": "nope"}]})
    assert e.value.path == "templates[0].templateName"
    with pytest.raises(templates.TemplateError, match=r"\{\{args.path\}\} is not a declared"):
        resolve({"metrics": [metric("inline")]})


def test_inline_metrics_take_the_rollouts_args() -> None:
    resolved = resolve(
        {
            "metrics": [metric("inline", interval="{{args.every}}", count=2)],
            "args": [{"name": "path", "value": "p"}, {"name": "every", "value": "2s"}],
        }
    )
    (m,) = resolved.metrics
    assert m.interval == 2.0 and m.effective_count == 2 and m.config["url"].endswith("/p")


def test_a_placeholder_that_does_not_become_a_number_is_reported() -> None:
    with pytest.raises(templates.TemplateError, match="count"):
        resolve(
            {
                "metrics": [metric("m", count="{{args.n}}")],
                "args": [{"name": "path", "value": "p"}, {"name": "n", "value": "many"}],
            }
        )


def test_measurement_retention_matches_metric_names() -> None:
    t = template(
        "a",
        metric("one"),
        args=[{"name": "path", "value": "x"}],
        measurementRetention=[{"metricName": "one", "limit": 3}],
    )
    (m,) = resolve({"templates": [{"templateName": "a"}]}, t).metrics
    assert m.retention == 3
