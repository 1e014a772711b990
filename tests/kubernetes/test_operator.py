"""The operator as a process among others: a restart in the middle of a canary resumes
from the Rollout's status (no step repeated, no event twice), and of two operators
sharing a Lease only the leader acts; the other takes over when it goes."""

from __future__ import annotations

import asyncio
import time

from conftest import helper_operator
from k8s_helpers import Kube, eventually, healthy_on, phase_is, rollout

from changeover.kube import client as kube
from changeover.operator.runtime import Operator
from changeover.operator.service import KubeService

STEPS = {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}}


async def test_restart_mid_canary_resumes_from_status(kube_: Kube) -> None:
    k = kube_
    svc = KubeService(k.client, namespace=k.namespace)
    async with helper_operator(k):
        await k.apply_rollout(rollout("web", strategy=STEPS))
        await healthy_on(k, "web", 1)
        await k.set_image("web", "app:v2")
        await phase_is(k, "web", "Paused")
        await svc.promote("web")
        await eventually(
            lambda: k.status("web"),
            lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 3,
            what="paused at step 4",
        )
        await eventually(lambda: k.reasons("web"), lambda r: r.count("RolloutPaused") == 2)
    before = await k.events("web")
    status = await k.status("web")
    counts = await k.rs_counts("web")
    # While no operator runs, nothing moves; a user's promote waits in the status.
    await svc.promote("web")
    await asyncio.sleep(1)
    assert (await k.status("web"))["currentStepIndex"] == 3
    async with helper_operator(k):
        st = await healthy_on(k, "web", 2)
        # Events are recorded once the status is written: wait for them before stopping.
        await eventually(lambda: k.reasons("web"), lambda r: "RolloutCompleted" in r)
    assert counts == {1: (2, 2), 2: (2, 2)}  # 50% of 4 without a router: 2 and 2
    assert status["weightsText"] == "1:50 2:50"
    after = await k.events("web")
    assert after[: len(before)] == before
    new = [r for r, _ in after[len(before) :]]
    assert new.count("RolloutPaused") == 0 and "RolloutPromoted" in new
    assert "RolloutCompleted" in new and st["weightsText"] == "2:100"


async def test_two_operators_one_leader(kube_: Kube) -> None:
    k = kube_
    first = helper_operator(k, identity="op-a")
    op_a = await first.__aenter__()
    second_task = asyncio.create_task(_second(k))
    try:
        await k.apply_rollout(rollout("web", replicas=2, strategy=STEPS))
        await healthy_on(k, "web", 1)
        lease = await k.client.get(kube.LEASES, "changeover-operator", namespace=k.namespace)
        assert lease["spec"]["holderIdentity"] == "op-a"
        assert not second_task.done()
    finally:
        await first.__aexit__(None, None, None)
    assert op_a.stats.reconciles > 0
    # op-a released the lease on a clean stop: op-b takes over and carries on.
    await k.set_image("web", "app:v2")
    await phase_is(k, "web", "Paused")
    lease = await k.client.get(kube.LEASES, "changeover-operator", namespace=k.namespace)
    assert lease["spec"]["holderIdentity"] == "op-b"
    assert lease["spec"]["leaseTransitions"] >= 1
    second_task.cancel()
    await asyncio.gather(second_task, return_exceptions=True)


async def _second(k: Kube) -> None:
    async with helper_operator(k, identity="op-b", wait_ready=False) as op:
        await asyncio.Event().wait()
        del op


async def test_reads_an_argo_rollout_directly(kube_: Kube) -> None:
    k = kube_
    argo = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "legacy"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "legacy"}},
            "template": {
                "metadata": {"labels": {"app": "legacy"}},
                "spec": {"containers": [{"name": "app", "image": "legacy:1"}]},
            },
            "strategy": {
                "canary": {
                    "antiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}},
                    "steps": [{"setWeight": 50}, {"pause": {}}],
                }
            },
        },
    }
    async with helper_operator(k, argo_rollouts=True):
        created = await k.create(kube.ARGO_ROLLOUTS, argo)
        await healthy_on(k, "legacy", 1)
        ours = await k.rollout("legacy")
        assert ours["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
        assert "antiAffinity" in ours["metadata"]["annotations"]["changeover.dev/import-notes"]
        # Editing the Argo manifest rolls out through the converted copy. A patch, as
        # `kubectl argo rollouts set image` sends: the operator writes the Argo Rollout's
        # status meanwhile (as Argo's controller does), so a read-then-replace could conflict.
        image = {"containers": [{"name": "app", "image": "legacy:2"}]}
        await k.client.patch(
            kube.ARGO_ROLLOUTS,
            "legacy",
            {"spec": {"template": {"spec": image}}},
            namespace=k.namespace,
        )
        st = await phase_is(k, "legacy", "Paused")
        assert st["weightsText"] == "1:50 2:50"


async def test_progress_deadline_passes_on_time_with_nothing_else_happening(
    kube_: Kube, operator: Operator
) -> None:
    """No watch event comes when pods stay Pending: the operator's own timer must fire at
    the deadline (not at its next routine look, half a minute later)."""
    k = kube_
    await k.apply_rollout(rollout("stuck", replicas=1, progressDeadlineSeconds=3))
    await healthy_on(k, "stuck", 1)
    # Pods of the new revision can be scheduled nowhere: they stay Pending, nothing changes.
    await k.update(
        kube.ROLLOUTS,
        "stuck",
        lambda r: r["spec"]["template"]["spec"].update(
            nodeSelector={"changeover.dev/no-such-node": "x"}
        ),
    )
    started = time.monotonic()
    st = await phase_is(k, "stuck", "Degraded", within=20)
    assert time.monotonic() - started < 12
    assert "progressDeadlineSeconds" in st["message"]
    assert (await k.rs_counts("stuck"))[1] == (1, 1)  # the stable revision still serves
