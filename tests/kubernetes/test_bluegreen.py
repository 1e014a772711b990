"""Blue-green on Kubernetes: the active Service's selector switches pod-template hash on
promote; the preview Service shows the new revision meanwhile; the old ReplicaSet is
scaled down after scaleDownDelaySeconds."""

from __future__ import annotations

from k8s_helpers import Kube, eventually, healthy_on, phase_is, rollout

from changeover.operator.runtime import Operator

BG = {
    "blueGreen": {
        "activeService": "shop-active",
        "previewService": "shop-preview",
        "autoPromotionEnabled": False,
        "scaleDownDelaySeconds": "1s",
    }
}


async def test_blue_green_preview_promote_switches_active(kube_: Kube, operator: Operator) -> None:
    k = kube_
    await k.apply_rollout(rollout("shop", replicas=3, strategy=BG))
    await phase_is(k, "shop", "Healthy")
    h1 = await k.hash_of("shop", 1)
    assert await k.selects("shop-active") == h1
    assert await k.selects("shop-preview") == h1  # no preview: it shows the active revision

    await k.set_image("shop", "app:v2")
    st = await phase_is(k, "shop", "Paused")
    h2 = await k.hash_of("shop", 2)
    assert st["message"] == "revision 2 is on preview: waiting for promote"
    assert await k.rs_counts("shop") == {1: (3, 3), 2: (3, 3)}
    assert await k.selects("shop-active") == h1
    assert await k.selects("shop-preview") == h2

    await k.patch_status("shop", lambda s: s.update(promote="step"))
    st = await healthy_on(k, "shop", 2)
    assert st["stableRevision"] == 2
    assert await k.selects("shop-active") == h2
    assert await eventually(
        lambda: k.rs_counts("shop"),
        lambda c: c[1][0] == 0,
        what="old revision scaled down after the delay",
    )
    events = await k.events("shop")
    order = [
        r
        for r, m in events
        if r in ("RolloutPaused", "RolloutPromoted", "RolloutCompleted")
        or m.startswith("active service switched")
    ]
    assert order[-4:] == [
        "RolloutPaused",
        "RolloutPromoted",
        "RolloutCompleted",
        "SwitchActiveService",
    ]
