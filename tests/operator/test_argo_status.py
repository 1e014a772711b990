"""The Argo Rollout status written from a changeover Rollout's, judged the way its readers
judge it: Argo CD's health check (resource_customizations/argoproj.io/Rollout/health.lua)
and ``kubectl argo rollouts status``/``get`` (utils/rollout GetRolloutPhase), both
re-implemented below from their source; and the plugin's patches read back as commands."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from changeover.engine.status import PauseState, RolloutStatus, TrafficState
from changeover.operator import argo_status
from changeover.platforms.kubernetes.replicasets import Counts

JSON = dict[str, Any]
NOW = 1_800_000_000.0


def argo_cd_health(obj: JSON) -> tuple[str, str]:
    """health.lua's decision, line for line (the parts a status with a phase reaches, and
    the fallbacks before it)."""
    status = obj.get("status")
    if status is None:
        return "Progressing", "Waiting for rollout spec update to be observed"
    try:
        observed = int(status.get("observedGeneration"))
    except (TypeError, ValueError):
        observed = None
    generation = obj["metadata"]["generation"]
    if observed is not None and observed <= generation and observed != generation:
        return "Progressing", "Waiting for rollout spec update to be observed"
    if status.get("phase") is not None:
        phase = status["phase"]
        return ("Suspended" if phase == "Paused" else phase), status.get("message") or ""
    return "Unknown", "no phase"


def argo_phase(obj: JSON) -> tuple[str, str]:
    """GetRolloutPhase (what ``kubectl argo rollouts status`` prints) for a status with a
    phase: not observed → Progressing; unpausing → Progressing; else the phase."""
    status = obj.get("status") or {}
    try:
        observed = int(status.get("observedGeneration"))
        if observed < obj["metadata"]["generation"]:
            return "Progressing", "waiting for rollout spec update to be observed"
    except (TypeError, ValueError):
        pass
    if status.get("controllerPause") and not status.get("pauseConditions"):
        return "Progressing", "waiting for rollout to unpause"
    return status.get("phase", ""), status.get("message", "")


STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 40}, {"pause": {"duration": 10}}]


def argo(generation: int = 3, **status: Any) -> JSON:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "rollouts-demo", "namespace": "ns", "generation": generation},
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": {"app": "rollouts-demo"}},
            "strategy": {
                "canary": {
                    "canaryService": "demo-canary",
                    "trafficRouting": {"nginx": {"stableIngress": "demo"}},
                    "steps": STEPS,
                }
            },
        },
        "status": status,
    }


COUNTS = {
    1: Counts(revision=1, name="demo-1", pod_hash="aaaa", desired=5, ready=5, available=5),
    2: Counts(revision=2, name="demo-2", pod_hash="bbbb", desired=1, ready=1, available=1),
}


def ours(**kw: Any) -> RolloutStatus:
    base: dict[str, Any] = {
        "phase": "Paused",
        "strategy": "canary",
        "stable_revision": 1,
        "target_revision": 2,
        "canary_revision": 2,
        "current_step_index": 1,
        "pause": PauseState(reason="step", started_at=NOW - 5),
        "traffic": TrafficState(weights={"1": 80, "2": 20}),
    }
    base.update(kw)
    return RolloutStatus(**base)


def written(obj: JSON, st: RolloutStatus, counts: dict[int, Counts] = COUNTS) -> JSON:
    out = copy.deepcopy(obj)
    out["status"] = argo_status.status(obj, st, counts, observed_generation="3", now=NOW)
    return out


def test_paused_at_a_step_reads_as_argo_writes_it() -> None:
    obj = written(argo(), ours())
    st = obj["status"]
    assert argo_cd_health(obj) == ("Suspended", "CanaryPauseStep")
    assert argo_phase(obj) == ("Paused", "CanaryPauseStep")
    assert st["currentStepIndex"] == 1 and st["observedGeneration"] == "3"
    assert st["currentPodHash"] == "bbbb" and st["stableRS"] == "aaaa"
    assert st["canary"]["weights"] == {
        "canary": {"weight": 20, "podTemplateHash": "bbbb", "serviceName": "demo-canary"},
        "stable": {"weight": 80, "podTemplateHash": "aaaa"},
    }
    assert st["pauseConditions"] == [
        {"reason": "CanaryPauseStep", "startTime": argo_status.stamp(NOW - 5)}
    ]
    assert st["controllerPause"] is True
    assert (st["replicas"], st["readyReplicas"], st["updatedReplicas"]) == (6, 6, 1)
    assert st["selector"] == "app=rollouts-demo"
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "Progressing": "Unknown",
        "Available": "True",
        "Paused": "True",
        "Healthy": "False",
        "Completed": "False",
    }


def test_healthy_after_the_last_step() -> None:
    done = ours(
        phase="Healthy",
        stable_revision=2,
        canary_revision=None,
        current_step_index=None,
        pause=None,
        traffic=TrafficState(weights={"2": 100}),
    )
    counts = {2: dataclasses.replace(COUNTS[2], desired=5, ready=5, available=5)}
    obj = written(argo(), done, counts)
    assert argo_cd_health(obj) == ("Healthy", "")
    assert argo_phase(obj) == ("Healthy", "")
    st = obj["status"]
    assert st["currentStepIndex"] == len(STEPS)
    assert st["stableRS"] == st["currentPodHash"] == "bbbb"
    assert st["canary"]["weights"]["canary"] == {
        "weight": 0,
        "podTemplateHash": "bbbb",
        "serviceName": "demo-canary",
    }
    assert "pauseConditions" not in st and "abort" not in st


def test_aborted_is_degraded_with_argos_reason() -> None:
    obj = written(argo(), ours(phase="Aborted", pause=None, message="analysis failed"))
    assert argo_cd_health(obj) == ("Degraded", "RolloutAborted: analysis failed")
    assert obj["status"]["abort"] is True and obj["status"]["abortedAt"]
    progressing = next(c for c in obj["status"]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "RolloutAborted")


def test_no_weights_without_a_traffic_router() -> None:
    obj = argo()
    del obj["spec"]["strategy"]["canary"]["trafficRouting"]
    assert "canary" not in written(obj, ours())["status"]


def test_a_spec_not_yet_observed_is_progressing() -> None:
    obj = written(argo(generation=4), ours(phase="Healthy", pause=None))
    assert argo_cd_health(obj)[0] == "Progressing"
    assert argo_phase(obj)[0] == "Progressing"


def test_condition_times_stay_while_nothing_changes() -> None:
    first = written(argo(), ours())
    again = argo_status.status(first, ours(), COUNTS, observed_generation="3", now=NOW + 60)
    assert again == first["status"]  # no write when nothing changed


# --- the plugin's patches (pkg/kubectl-argo-rollouts/cmd/promote, abort, retry) ----------


def patched(obj: JSON, patch: JSON) -> JSON:
    """A JSON merge patch of the status, as the plugin sends it."""
    out = copy.deepcopy(obj)
    for key, value in patch.items():
        if value is None:
            out["status"].pop(key, None)
        else:
            out["status"][key] = value
    return out


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"pauseConditions": None}, ["promote"]),  # promote while paused
        ({"promoteFull": True}, ["promote-full"]),  # promote --full
        ({"abort": True}, ["abort"]),  # abort
        ({"currentStepIndex": 4}, ["promote-full"]),  # promote --skip-all-steps
        ({}, []),  # what we wrote ourselves is no command
    ],
)
def test_plugin_patches_are_commands(patch: JSON, expected: list[str]) -> None:
    obj = patched(written(argo(), ours()), patch)
    assert argo_status.commands(obj, ours(), target_hash="bbbb") == expected


def test_promote_while_progressing_moves_the_step() -> None:
    running = ours(phase="Progressing", pause=None, current_step_index=0)
    obj = written(argo(), running)
    # not paused: the plugin sets currentStepIndex to the next step
    obj = patched(obj, {"pauseConditions": None, "currentStepIndex": 1})
    assert argo_status.commands(obj, running, target_hash="bbbb") == ["promote"]
    # ...but an index from an older revision (another pod hash) is no command
    assert argo_status.commands(obj, running, target_hash="cccc") == []


def test_retry_needs_our_abort_marker() -> None:
    aborted = ours(phase="Aborted", pause=None)
    obj = written(argo(), aborted)
    assert argo_status.commands(obj, aborted, target_hash="bbbb") == []
    retried = patched(obj, {"abort": False})
    assert argo_status.commands(retried, aborted, target_hash="bbbb") == ["retry"]
    # Aborted by the analysis just now, before its status reached the Argo Rollout: the
    # missing abort is not a retry.
    fresh = written(argo(), ours())
    assert argo_status.commands(fresh, aborted, target_hash="bbbb") == []


def test_a_retried_rollout_starting_over_is_not_promoted() -> None:
    # Aborted at the second pause; the retry is carried out while the Argo status still
    # shows the aborted attempt's step 3, then ours starts over on the same pod hash.
    aborted = ours(phase="Aborted", pause=None, current_step_index=3, retry=True)
    obj = written(argo(), aborted)
    restarted = ours(phase="Progressing", pause=None, current_step_index=0)
    assert argo_status.commands(obj, restarted, target_hash="bbbb") == []
    assert argo_status.commands(obj, ours(), target_hash="bbbb") == []


def test_a_pause_entered_before_it_was_written_is_not_promoted() -> None:
    # The Argo status still shows the previous step (not paused) while ours paused.
    before = written(argo(), ours(phase="Progressing", pause=None, current_step_index=1))
    assert argo_status.commands(before, ours(), target_hash="bbbb") == []


def test_blue_green_promote_reads_no_step_index() -> None:
    obj = argo()
    obj["spec"]["strategy"] = {"blueGreen": {"activeService": "a", "previewService": "p"}}
    # blue-green's stage index is internal: it is not written and not compared
    waiting = ours(
        strategy="blueGreen",
        canary_revision=None,
        current_step_index=1,
        pause=PauseState(reason="promotion", started_at=NOW),
        traffic=TrafficState(weights={"1": 100}),
    )
    obj = written(obj, waiting)
    st = obj["status"]
    assert "currentStepIndex" not in st and st["pauseConditions"][0]["reason"] == "BlueGreenPause"
    assert st["blueGreen"] == {"activeSelector": "aaaa", "previewSelector": "bbbb"}
    assert argo_cd_health(obj) == ("Suspended", "BlueGreenPause")
    promoted = patched(obj, {"pauseConditions": None})
    assert argo_status.commands(promoted, waiting, target_hash="bbbb") == ["promote"]
