"""``changeover lint`` on analysis: every mistake reported at once, with file, field path
and (for conditions) a caret under the column."""

from __future__ import annotations

from pathlib import Path

from changeover import validation

TEMPLATE = """\
apiVersion: changeover.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: error-rate}
spec:
  args:
    - name: max
      value: "0.05"
    - name: url
  metrics:
    - name: error-rate
      interval: 5s
      count: 3
      successCondition: result <= {{args.max}}
      failureCondition: result = 1
      provider:
        builtin: {metric: error-rat}
    - name: health
      count: 1
      provider:
        web: {url: "{{args.url}}", jsonPath: "{$.ok}", timeoutSeconds: "{{args.nope}}"}
    - name: mystery
      provider: {datadog: {query: x}}
"""

ROLLOUT = """\
apiVersion: changeover.dev/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  template: {command: [python3, app.py]}
  service: {port: 8080}
  webhooks:
    - {name: gate, type: confirm-promotion, url: "http://127.0.0.1:9/gate"}
    - {name: gate, type: pre-rollout, url: "http://127.0.0.1:9/pre"}
  notifications:
    - {url: "slack.example", format: slack}
  strategy:
    canary:
      analysis:
        startingStep: 5
        templates: [{templateName: error-rate}]
        args: [{name: url, value: "http://127.0.0.1:9/health"}]
      steps:
        - setWeight: 20
        - analysis:
            templates: [{templateName: other}]
        - analysis:
            metrics:
              - name: forever
                interval: 5s
                successCondition: result.p99 < 0.5 &&
                provider: {builtin: {}}
"""


def lint(tmp_path: Path, *texts: str) -> list[str]:
    for i, text in enumerate(texts):
        (tmp_path / f"{i}.yaml").write_text(text)
    return [str(p) for p in validation.lint(tmp_path)]


def test_every_analysis_mistake_is_reported_with_its_path(tmp_path: Path) -> None:
    found = lint(tmp_path, TEMPLATE, ROLLOUT)
    t, r = f"{tmp_path}/0.yaml", f"{tmp_path}/1.yaml"
    expected = [
        f"{t}: spec.metrics[0].failureCondition: unexpected character '=' (use == to compare)"
        " at column 8\n  result = 1\n         ^",
        f"{t}: spec.metrics[0].provider.builtin: metric: unknown 'error-rat'; expected one of",
        f"{t}: spec.metrics[1]: {{{{args.nope}}}} is not a declared argument (declared: max, url)",
        f"{t}: spec.metrics[2].provider: unknown metric provider 'datadog'; expected one of",
        f"{r}: spec.webhooks[1].name: another webhook is named 'gate'; expected each name once",
        f"{r}: spec.notifications[0].url: expected an http(s) URL, got 'slack.example'",
        f"{r}: spec.strategy.canary.analysis.startingStep: expected a step index below 3",
        f"{r}: spec.strategy.canary.steps[1].analysis.templates[0].templateName: warning: "
        "AnalysisTemplate 'other' is not in these files",
        f"{r}: spec.strategy.canary.steps[2].analysis.metrics[0].successCondition: expected a "
        "value, found the end at column 20\n  result.p99 < 0.5 &&\n                     ^",
        f"{r}: spec.strategy.canary.steps[2].analysis: metric 'forever' has an interval but no "
        "count, so it would run forever",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in found), f"missing: {want}\nin: {found}"
    # the template is known (it is in the same directory), so its use is resolved: no
    # "missing argument url" for the background analysis, which passes it
    assert not any("argument 'url' has no value" in p for p in found)


def test_a_missing_argument_and_an_unknown_template_field(tmp_path: Path) -> None:
    template = TEMPLATE.replace("      interval: 5s\n", "      intervall: 5s\n", 1)
    rollout = ROLLOUT.replace(
        '        args: [{name: url, value: "http://127.0.0.1:9/health"}]\n', ""
    )
    found = lint(tmp_path, template, rollout)
    assert any(
        "0.yaml: spec.metrics[0]: unknown field 'intervall' (did you mean 'interval'?)" in p
        for p in found
    ), found
    lint(tmp_path, TEMPLATE, rollout)  # with the template parsing again: the missing arg
    found = lint(tmp_path, TEMPLATE, rollout)
    assert any(
        "spec.strategy.canary.analysis.args: argument 'url' has no value" in p for p in found
    ), found


def test_clean_examples_lint_clean() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    problems = validation.lint(examples)
    assert [str(p) for p in problems if p.severity == "error"] == []


def test_a_count_without_an_interval_is_caught_at_lint_time(tmp_path: Path) -> None:
    template = TEMPLATE.replace("      interval: 5s\n", "", 1)
    found = lint(tmp_path, template)
    assert any(
        p.startswith(
            f"{tmp_path}/0.yaml: spec.metrics[0].interval: metric 'error-rate' has count 3 "
            "but no interval"
        )
        for p in found
    ), found
    # count 1 without an interval is one measurement: fine
    assert not any("metrics[1].interval" in p for p in found), found
