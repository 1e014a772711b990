"""abort, retry, promote --full, undo and pause/resume on Rollout resources."""

from __future__ import annotations

from k8s_helpers import Kube, eventually, healthy_on, phase_is, rollout

from changeover.kube import client as kube
from changeover.operator.runtime import Operator
from changeover.operator.service import KubeService

STEPS = {
    "canary": {
        "abortScaleDownDelaySeconds": "1s",
        "steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}],
    }
}


async def test_abort_retry_promote_full(kube_: Kube, operator: Operator) -> None:
    k = kube_
    svc = KubeService(k.client, namespace=k.namespace)
    await k.apply_rollout(rollout("web", strategy=STEPS))
    await phase_is(k, "web", "Healthy")
    await k.set_image("web", "app:v2")
    await phase_is(k, "web", "Paused")

    doc = await svc.abort("web")
    assert doc["abort"] is True
    st = await phase_is(k, "web", "Aborted")
    assert st["message"] == "Rollout aborted: traffic back on stable revision 1"
    # Without a router the canary's pods serve until they are gone: it is scaled down at
    # once (stable back to 4 within maxSurge), and the weights say so when it is.
    assert await eventually(
        lambda: k.rs_counts("web"),
        lambda c: c[2][0] == 0 and c[1] == (4, 4),
        what="aborted canary scaled down",
    )
    await eventually(lambda: k.status("web"), lambda s: s.get("weightsText") == "1:100")
    assert (await svc.status("web"))["phase"] == "Aborted"

    await svc.retry("web")
    st = await phase_is(k, "web", "Paused")
    assert st["currentStepIndex"] == 1 and st["weightsText"] == "1:75 2:25"

    await svc.promote("web", full=True)
    st = await healthy_on(k, "web", 2)
    assert st["stableRevision"] == 2
    reasons = await k.reasons_through(
        "web", "RolloutAborted", "RolloutRetried", "RolloutPromoted", "RolloutCompleted"
    )
    for a, b in [
        ("RolloutAborted", "RolloutRetried"),
        ("RolloutRetried", "RolloutPromoted"),
        ("RolloutPromoted", "RolloutCompleted"),
    ]:
        assert reasons.index(a) < len(reasons) - 1 - reasons[::-1].index(b)


async def test_undo_reuses_the_earlier_revision(kube_: Kube, operator: Operator) -> None:
    k = kube_
    svc = KubeService(k.client, namespace=k.namespace)
    await k.apply_rollout(rollout("web", replicas=2, strategy={"canary": {"steps": []}}))
    await phase_is(k, "web", "Healthy")
    await k.set_image("web", "app:v2")
    await eventually(
        lambda: k.status("web"), lambda s: s.get("stableRevision") == 2, what="revision 2 stable"
    )
    history = await svc.history("web")
    assert [(h["revision"], h["stable"]) for h in history] == [(1, False), (2, True)]
    await svc.undo("web")
    st = await eventually(
        lambda: k.status("web"),
        lambda s: s.get("stableRevision") == 1 and s.get("phase") == "Healthy",
        what="back on revision 1",
    )
    assert st["lastRevision"] == 2  # no third revision: the ReplicaSet of 1 was reused
    assert set(await k.rs_counts("web")) == {1, 2}


def race_a_status_write(k: Kube, name: str) -> list[bool]:
    """Make the next spec write find the Rollout changed since it was read, as when the
    operator writes status at that moment; the returned list fills when it happened."""
    real_replace = k.client.replace
    raced: list[bool] = []

    async def replace_after_a_status_write(res, body, **kw):  # type: ignore[no-untyped-def]
        if res is kube.ROLLOUTS and kw.get("sub") is None and not raced:
            raced.append(True)
            await k.patch_status(name, lambda st: st.update(message="written meanwhile"))
        return await real_replace(res, body, **kw)

    k.client.replace = replace_after_a_status_write  # type: ignore[method-assign]
    return raced


async def test_undo_and_apply_survive_a_status_write_between_read_and_write(
    kube_: Kube, operator: Operator
) -> None:
    k = kube_
    svc = KubeService(k.client, namespace=k.namespace)
    await k.apply_rollout(rollout("web", replicas=1, strategy={"canary": {"steps": []}}))
    await phase_is(k, "web", "Healthy")
    await k.set_image("web", "app:v2")
    await eventually(
        lambda: k.status("web"), lambda s: s.get("stableRevision") == 2, what="revision 2 stable"
    )
    raced = race_a_status_write(k, "web")
    doc = await svc.undo("web")
    assert raced and doc["undoneTo"] == 1
    st = await eventually(
        lambda: k.status("web"),
        lambda s: s.get("stableRevision") == 1 and s.get("phase") == "Healthy",
        what="back on revision 1",
    )
    assert st["lastRevision"] == 2

    raced = race_a_status_write(k, "web")
    changed = rollout("web", replicas=1, strategy={"canary": {"steps": []}}, image="app:v3")
    (result,) = await svc.apply([changed], source="web.yaml")
    assert raced and result["action"] == "updated"
    await eventually(
        lambda: k.status("web"), lambda s: s.get("stableRevision") == 3, what="revision 3 stable"
    )


async def test_pause_and_resume(kube_: Kube, operator: Operator) -> None:
    k = kube_
    svc = KubeService(k.client, namespace=k.namespace)
    await k.apply_rollout(
        rollout(
            "web",
            replicas=2,
            strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}]}},
        )
    )
    await phase_is(k, "web", "Healthy")
    await svc.pause("web")
    st = await phase_is(k, "web", "Paused")
    assert st["message"] == "paused by user"
    await svc.resume("web")
    await phase_is(k, "web", "Healthy")
    await eventually(
        lambda: k.reasons("web"),
        lambda r: r[-2:] == ["RolloutPaused", "RolloutResumed"],
        what="paused then resumed events",
    )
