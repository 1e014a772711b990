"""The flag rollout state machine (``flags.progress``), step by step, without I/O."""

from __future__ import annotations

from typing import Any

from changeover.flags import progress
from changeover.spec import flag as spec_flag

ANALYSIS = {"analysis": {"templates": [{"templateName": "error-rate"}]}}


def spec(*steps: dict[str, Any]) -> spec_flag.FlagSpec:
    return spec_flag.FlagSpec.model_validate(
        {
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "split": [{"variant": "on", "weight": 80}],
            "rollout": {"variant": "on", "target": "web", "steps": list(steps)},
        }
    )


def step(s: spec_flag.FlagSpec, status: dict[str, Any], now: float, run: str | None = None):  # type: ignore[no-untyped-def]
    return progress.advance("f", 3, s, status, now=now, run_phase=run, run_message="5xx 0.3")


def test_weights_pause_and_analysis_walk_to_the_destination() -> None:
    s = spec({"setWeight": 10}, {"pause": {"duration": "30s"}}, ANALYSIS, {"setWeight": 50})
    out = step(s, {}, 100.0)
    assert out.status["rollout"]["weight"] == 10 and out.status["phase"] == "Paused"
    assert step(s, out.status, 129.0).status["phase"] == "Paused"
    out = step(s, out.status, 130.0)
    assert out.start == progress.StartRun("flag-f-3-2-0", 2)
    assert step(s, out.status, 131.0, "Running").status["phase"] == "Progressing"
    out = step(s, out.status, 140.0, "Successful")
    # after the last step the variant has the spec's weight, not the last setWeight
    assert (out.status["phase"], out.status["rollout"]["weight"]) == ("Healthy", 80)
    assert [e[0] for e in out.events] == ["AnalysisPassed", "SetWeight", "Completed"]


def test_a_failed_analysis_turns_the_flag_off_where_it_was() -> None:
    s = spec({"setWeight": 30}, ANALYSIS, {"setWeight": 100})
    out = step(s, {}, 0.0)
    out = step(s, out.status, 5.0, "Failed")
    assert out.status["off"] is True and out.status["phase"] == "Aborted"
    assert out.status["message"] == "turned off: analysis at step 2 failed: 5xx 0.3"
    assert out.status["rollout"]["weight"] == 30
    assert (out.status["rollout"]["runPhase"], out.status["rollout"]["runMessage"]) == (
        "Failed",
        "5xx 0.3",
    )
    assert step(s, out.status, 9.0, "Successful").status == out.status  # off stays off


def test_promote_pause_resume_and_retry() -> None:
    s = spec({"setWeight": 5}, {"pause": {}}, {"setWeight": 60})
    out = step(s, {}, 0.0)
    assert out.status["message"] == "paused at step 2 (until promote)"
    paused = progress.pause(out.status)
    assert step(s, progress.promote(paused, full=False), 1.0).status["rollout"]["weight"] == 80
    assert step(s, paused, 1.0).status["phase"] == "Paused"
    assert step(s, progress.promote(out.status, full=True), 1.0).status["phase"] == "Healthy"
    again = progress.retry({**out.status, "off": True}, s, 2.0)
    assert again["rollout"]["attempt"] == 1 and again["rollout"]["stepIndex"] == 0


def test_served_lays_the_walk_and_the_off_switch_over_the_spec() -> None:
    s = spec({"setWeight": 10}).to_json_dict()
    at_10 = progress.served(s, {"rollout": {"variant": "on", "weight": 10}})
    assert at_10["split"] == [{"variant": "on", "weight": 10}] and at_10.get("enabled", True)
    assert progress.served(s, {})["split"][0]["weight"] == 0  # before the first step
    assert progress.served(s, {"off": True})["enabled"] is False
    assert s["split"][0]["weight"] == 80  # the input is left as it was


def test_conditions_keep_their_transition_time_while_they_hold() -> None:
    paused = {"phase": "Paused", "rollout": {"done": False}}
    first = progress.conditions(paused, [], 1_700_000_000.0)
    assert {c["type"]: c["status"] for c in first} == {
        "Progressing": "True",
        "Paused": "True",
        "Completed": "False",
    }
    aborted = {"phase": "Aborted", "off": True, "rollout": {"done": False}}
    later = progress.conditions(aborted, first, 1_700_000_600.0)
    by_type = {c["type"]: c for c in later}
    assert by_type["Progressing"]["status"] == "False"
    assert by_type["Progressing"]["reason"] == "RolloutAborted"
    assert by_type["Progressing"]["lastTransitionTime"] == "2023-11-14T22:23:20Z"
    assert by_type["Completed"]["lastTransitionTime"] == "2023-11-14T22:13:20Z"


def hooked(*hooks: dict[str, Any], steps: list[dict[str, Any]] | None = None) -> spec_flag.FlagSpec:
    return spec_flag.FlagSpec.model_validate(
        {
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "split": [{"variant": "on", "weight": 80}],
            "rollout": {
                "variant": "on",
                "steps": steps or [{"setWeight": 20}, {"setWeight": 60}],
                "webhooks": [{"url": "http://127.0.0.1:9/h", **h} for h in hooks],
            },
        }
    )


def test_webhooks_gate_the_walk_and_a_failed_one_turns_the_flag_off() -> None:
    s = hooked(
        {"name": "pre", "type": "pre-rollout"},
        {"name": "more", "type": "confirm-traffic-increase"},
        {"name": "done", "type": "post-rollout"},
    )
    states: dict[str, tuple[str, str]] = {}

    def walk(status: dict[str, Any]) -> progress.Outcome:
        return progress.advance("f", 3, s, status, now=0.0, run_phase=None, hooks=states.get)

    out = walk({})
    assert [c.call_id for c in out.calls] == ["flag-f-3-0-start-pre"]
    assert out.status["rollout"]["weight"] == 0
    assert out.status["message"] == "waiting for pre-rollout webhook pre"
    states["flag-f-3-0-start-pre"] = ("passed", "HTTP 200")
    out = walk(out.status)
    assert out.stops == ["flag-f-3-0-start-pre"]
    assert [c.call_id for c in out.calls] == ["flag-f-3-0-step0-more"]
    states["flag-f-3-0-step0-more"] = ("waiting", "not yet (HTTP 409)")
    out = walk(out.status)
    assert (out.status["rollout"]["weight"], out.calls) == (0, [])
    assert (
        out.status["message"]
        == "waiting for confirm-traffic-increase webhook more not yet (HTTP 409)"
    )
    states["flag-f-3-0-step0-more"] = ("passed", "HTTP 200")
    out = walk(out.status)  # 20%, then the gate of the next increase
    assert out.status["rollout"]["weight"] == 20
    assert [c.call_id for c in out.calls] == ["flag-f-3-0-step1-more"]
    states["flag-f-3-0-step1-more"] = ("passed", "HTTP 200")
    out = walk(out.status)
    assert (out.status["phase"], out.status["rollout"]["weight"]) == ("Healthy", 80)
    assert [c.call_id for c in out.calls] == ["flag-f-3-0-post-done"]
    assert walk(out.status).calls == []  # post-rollout once

    failing = hooked({"name": "pre", "type": "pre-rollout"})
    states["flag-f-3-0-start-pre"] = ("failed", "HTTP 500 after 3 calls")
    out = progress.advance("f", 3, failing, {}, now=0.0, run_phase=None, hooks=states.get)
    assert (out.status["phase"], out.status["off"]) == ("Aborted", True)
    assert out.status["message"] == (
        "turned off: pre-rollout webhook pre failed: HTTP 500 after 3 calls"
    )


def test_rollout_and_rollback_hooks_run_in_flight_and_stop_at_the_end() -> None:
    s = hooked(
        {"name": "load", "type": "rollout"},
        {"name": "undo", "type": "rollback"},
        steps=[{"setWeight": 20}, {"pause": {}}],
    )
    states: dict[str, tuple[str, str]] = {}
    out = progress.advance("f", 3, s, {}, now=0.0, run_phase=None, hooks=states.get)
    assert {c.call_id for c in out.calls} == {"flag-f-3-0-flight-load", "flag-f-3-0-flight-undo"}
    assert out.status["phase"] == "Paused"
    states["flag-f-3-0-flight-load"] = ("waiting", "2 calls, 0 failed")
    states["flag-f-3-0-flight-undo"] = ("passed", "HTTP 200")
    out = progress.advance("f", 3, s, out.status, now=1.0, run_phase=None, hooks=states.get)
    assert out.status["off"] is True
    assert out.status["message"] == "turned off: rollback webhook undo asked for it: HTTP 200"
    assert set(out.stops) == {"flag-f-3-0-flight-load", "flag-f-3-0-flight-undo"}
