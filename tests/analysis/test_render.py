"""``get`` shows the analysis: the newest run's verdict, then a line per metric."""

from __future__ import annotations

from rich.console import Console

from changeover.cli import render

STATUS = {
    "name": "chat",
    "phase": "Aborted",
    "strategy": "canary",
    "revision": 3,
    "stableRevision": 2,
    "canaryRevision": 3,
    "weights": {"2": 100},
    "replicas": {"2": 2, "3": 1},
    "message": "Rollout aborted: step 2/4 analysis Failed: metric error-rate Failed = 0.2824",
    "analysis": {
        "error-rate": {
            "phase": "Failed",
            "value": 0.2823529411764706,
            "successful": 0,
            "failed": 2,
            "inconclusive": 0,
            "error": 1,
            "dryRun": False,
        },
        "latency-p99": {
            "phase": "Successful",
            "value": {"requests": 44.0, "p99": 0.02463, "errorRate": 0.2955},
            "successful": 4,
            "failed": 0,
            "inconclusive": 0,
            "error": 1,
            "dryRun": True,
        },
    },
    "analysisRuns": [
        {
            "id": "chat-3-1-background",
            "kind": "background",
            "phase": "Successful",
            "message": "1 metric Successful",
            "startedAt": 10.0,
        },
        {
            "id": "chat-3-1-step1",
            "kind": "step",
            "phase": "Failed",
            "startedAt": 11.0,
            "message": "metric error-rate Failed = 0.2824 (...); 2 failed > failureLimit 1",
        },
    ],
}


def test_get_shows_the_verdict_and_each_metric() -> None:
    console = Console(width=140, record=True, color_system=None)
    console.print(render.rollout_view(STATUS))
    text = console.export_text()
    assert (
        "Analysis  step analysis Failed: metric error-rate Failed = 0.2824 (...); "
        "2 failed > failureLimit 1" in text
    )
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert lines["error-rate"].split()[1:4] == ["Failed", "0.2824", "0"]
    assert "Successful (dry run)" in lines["latency-p99"]
    assert "errorRate=0.2955 p99=0.02463 requests=44" in lines["latency-p99"]
    assert "…" not in text.split("METRIC", 1)[1].splitlines()[0]  # no undecided column


def test_an_undecided_ab_test_gets_its_own_count_column() -> None:
    status = {
        **STATUS,
        "analysis": {
            "conversion": {
                "phase": "Running",
                "value": {"decided": False, "reason": "collecting: 412 of 2000 per arm"},
                "successful": 0,
                "failed": 0,
                "inconclusive": 0,
                "error": 0,
                "undecided": 3,
            }
        },
    }
    console = Console(width=140, record=True, color_system=None)
    console.print(render.rollout_view(status))
    text = console.export_text()
    header = next(line for line in text.splitlines() if line.lstrip().startswith("METRIC"))
    assert header.split()[-5:] == ["✓", "✗", "?", "!", "…"]
    row = next(line for line in text.splitlines() if line.lstrip().startswith("conversion"))
    assert row.split()[-5:] == ["0", "0", "0", "0", "3"]
    assert "decided=false" in row


def test_a_metric_never_measured_shows_not_measured() -> None:
    """Issue 12: it showed as ``Successful`` with a value of nil."""
    from changeover.analysis import templates
    from changeover.analysis.run import AnalysisRun

    late = templates.MetricSpec(
        name="late", provider="builtin", config={}, interval=5.0, initial_delay=60.0
    )
    run = AnalysisRun(id="r", rollout="chat", kind="background", revision=3, metrics=(late,))
    status = {**STATUS, "analysis": run.assessed(0.0).stop(1.0).summary()}
    console = Console(width=140, record=True, color_system=None)
    console.print(render.rollout_view(status))
    text = console.export_text()
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert lines["late"].split()[1:4] == ["Successful", "not", "measured"]
    assert "nil" not in text
