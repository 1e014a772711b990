"""Canary on Kubernetes without a router (replica ratio): ReplicaSets per revision,
Services, status and events at every step, promote, abort, retry."""

from __future__ import annotations

from k8s_helpers import Kube, eventually, healthy_on, phase_is, rollout

from changeover.operator.runtime import Operator


async def test_canary_replica_ratio_steps_promote_and_complete(
    kube_: Kube, operator: Operator
) -> None:
    k = kube_
    await k.apply_rollout(
        rollout(
            "web",
            strategy={
                "canary": {
                    "steps": [
                        {"setWeight": 25},
                        {"pause": {}},
                        {"setWeight": 50},
                        {"pause": {"duration": "1s"}},
                    ]
                }
            },
        )
    )
    st = await phase_is(k, "web", "Healthy")
    assert st["stableRevision"] == 1 and st["weightsText"] == "1:100"
    assert await k.rs_counts("web") == {1: (4, 4)}
    rs = (await k.replicasets("web"))[1]
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Rollout"
    assert rs["metadata"]["annotations"]["rollout.changeover.dev/revision"] == "1"
    # Without a router the stable Service spreads over every pod of the rollout.
    assert await k.selects("web") is None

    await k.set_image("web", "app:v2")
    st = await phase_is(k, "web", "Paused")
    assert st["canaryRevision"] == 2 and st["currentStepIndex"] == 1 and st["stepText"] == "2/4"
    assert st["weightsText"] == "1:75 2:25"
    # Argo's basic canary: 25% of 4 is 1 canary and 3 stable pods behind the Service.
    assert await k.rs_counts("web") == {1: (3, 3), 2: (1, 1)}
    assert await k.selects("web-canary") == await k.hash_of("web", 2)

    await k.patch_status("web", lambda s: s.update(promote="step"))
    st = await healthy_on(k, "web", 2)
    assert st["stableRevision"] == 2 and st["canaryRevision"] is None
    assert await eventually(lambda: k.rs_counts("web"), lambda c: c.get(2) == (4, 4))
    reasons = await k.reasons_through("web", "RolloutPaused", "RolloutPromoted", "RolloutCompleted")
    assert reasons.index("RolloutPaused") < reasons.index("RolloutPromoted")
    assert reasons.count("RolloutStepCompleted") == 3  # the pause was promoted past
    assert reasons[-1] in ("RolloutCompleted", "ScalingReplicaSet")
    assert "RolloutCompleted" in reasons
