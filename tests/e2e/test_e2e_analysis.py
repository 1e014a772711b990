"""Analysis that decides, end to end: a real ``changeover serve``, the real builtin router,
real replicas of examples/app.py and steady load. Nobody promotes or aborts by hand.

Given examples/analysis-template.yaml and the steps of examples/canary-analysis.yaml, when
a good v2 is applied it is promoted by its analysis; when a bad v3 (30% errors) is applied
it is aborted by its analysis, all traffic is back on v2, and ``status -o json`` names the
failing metric and its value.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from e2e_helpers import EXAMPLES, JSON
from e2e_load import BackgroundLoad, describe
from e2e_serve import Serve
from e2e_specs import example_rollout, with_version, write_rollout

pytestmark = pytest.mark.slow


def test_good_canary_promoted_and_bad_canary_aborted_by_analysis(
    serve: Serve, tmp_path: Path
) -> None:
    example = yaml.safe_load((EXAMPLES / "canary-analysis.yaml").read_text())
    canary = example["spec"]["strategy"]["canary"]
    v1 = example_rollout(
        "canary",
        name="judged",
        version="v1",
        mark=serve.mark,
        replicas=2,
        env={"ERROR_RATE": "0", "LATENCY_MS": "5"},
        strategy_patch={"steps": canary["steps"], "analysis": canary["analysis"]},
    )
    spec = write_rollout(tmp_path / "judged.yaml", v1)
    templates = EXAMPLES / "analysis-template.yaml"
    applied = serve.cli("apply", "-f", str(spec), "-f", str(templates), "--wait")
    assert applied.code == 0, str(applied)
    assert "analysistemplate/error-rate created" in applied.stdout
    url = serve.status("judged")["endpoint"]

    with BackgroundLoad(url, rate=60) as load:
        # A good v2: promoted by analysis, no human in the loop.
        write_rollout(spec, with_version(v1, "v2"))
        started = time.monotonic()
        good = serve.cli("apply", "-f", str(spec), "--wait", "--timeout", "120", timeout=150)
        promoted_after = time.monotonic() - started
        assert good.code == 0, str(good)
        status = serve.status("judged")
        assert status["phase"] == "Healthy" and status["stableRevision"] == 2
        assert status["analysis"]["error-rate"]["phase"] == "Successful"
        assert {run["phase"] for run in status["analysisRuns"]} == {"Successful"}
        load.wait_for("2", 50)

        # A bad v3: 30% of its answers are 500s. Aborted by analysis.
        bad_doc = with_version(v1, "v3")
        bad_doc["spec"]["template"]["env"]["ERROR_RATE"] = "0.3"
        write_rollout(spec, bad_doc)
        started = time.monotonic()
        bad = serve.cli("apply", "-f", str(spec), "--wait", "--timeout", "120", timeout=150)
        aborted_after = time.monotonic() - started
        assert bad.code == 1, str(bad)  # --wait exits 1 on Aborted: a CI gate
        status = serve.status("judged")
        assert status["phase"] == "Aborted", status
        assert status["weights"] == {"2": 100} and status["stableRevision"] == 2
        failing = status["analysis"]["error-rate"]
        assert failing["phase"] == "Failed" and failing["value"] > 0.05, failing
        assert "error-rate" in status["message"] and "Failed" in status["message"]

        # After the abort every request is answered by v2 again: wait long enough (~5 s at
        # 60/s) that the last three whole seconds of the timeline all follow the abort.
        after = load.wait_for("2", 300)
        report = load.stop()
    tail = report.timeline[-3:]
    assert all(set(second) <= {"2"} for second in tail), describe(report)
    print(f"v2 promoted by analysis in {promoted_after:.1f}s; v3 aborted in {aborted_after:.1f}s")
    print(describe(after))


def test_kill_9_mid_analysis_resumes_the_run_where_it_stopped(serve: Serve, tmp_path: Path) -> None:
    """The run and its measurements are in the database: after ``kill -9`` and a restart
    the same run goes on counting (no measurement lost, none taken twice) and decides."""
    analysis = {
        "metrics": [
            {
                "name": "error-rate",
                "interval": "1s",
                "count": 8,
                "successCondition": "result < 0.05",
                # the load generator reconnects after the crash: "no traffic yet" errors
                # are expected for a moment, and are not what this test is about
                "consecutiveErrorLimit": 30,
                "provider": {"builtin": {"metric": "error-rate", "window": "5s"}},
            }
        ]
    }
    v1 = example_rollout(
        "canary",
        name="resumed",
        version="v1",
        mark=serve.mark,
        replicas=1,
        strategy_patch={"steps": [{"setWeight": 50}, {"analysis": analysis}]},
    )
    spec = write_rollout(tmp_path / "resumed.yaml", v1)
    assert serve.apply(spec).code == 0
    serve.wait_phase("resumed", "Healthy", stableRevision=1)
    url = serve.status("resumed")["endpoint"]
    with BackgroundLoad(url, rate=40) as load:
        write_rollout(spec, with_version(v1, "v2"))
        assert serve.apply(spec).code == 0

        def measured(doc: JSON) -> bool:
            result = (doc.get("analysis") or {}).get("error-rate") or {}
            return 2 <= result.get("count", 0) < 8

        before = serve.wait_status("resumed", measured, within=60)["analysis"]["error-rate"]
        serve.kill9()
        serve.start()
        done = serve.wait_status(
            "resumed", lambda d: d["phase"] in ("Healthy", "Aborted", "Degraded"), within=90
        )
        load.stop()
    assert done["phase"] == "Healthy" and done["stableRevision"] == 2, done
    after = done["analysis"]["error-rate"]
    assert after["run"] == before["run"]  # the same run, resumed, not a new one
    # counted on from where it was: the measurements before the crash are in the 8
    assert after["phase"] == "Successful" and after["count"] == 8
