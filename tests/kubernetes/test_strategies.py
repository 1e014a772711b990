"""Rolling update over two ReplicaSets (maxSurge/maxUnavailable held at every moment) and
recreate with hooks as Jobs (pre/post run in order; a hook that overruns fails the
rollout through the Job controller's activeDeadlineSeconds)."""

from __future__ import annotations

import asyncio

from k8s_helpers import Kube, eventually, healthy_on, phase_is, rollout

from changeover.kube import client as kube
from changeover.operator.runtime import Operator


async def test_rolling_update_respects_surge_and_unavailable(
    kube_: Kube, operator: Operator
) -> None:
    k = kube_
    strategy = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    await k.apply_rollout(rollout("api", replicas=4, strategy=strategy))
    await phase_is(k, "api", "Healthy")
    assert await k.selects("api") is None  # the Service follows every ready pod
    await k.set_image("api", "app:v2")
    seen: list[dict[int, tuple[int, int]]] = []

    async def sample() -> None:
        while True:
            seen.append(await k.rs_counts("api"))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    st = await healthy_on(k, "api", 2, within=90)
    sampler.cancel()
    assert st["stableRevision"] == 2
    # The old ReplicaSet's readyReplicas reaches 0 when its controller next writes status.
    await eventually(
        lambda: k.rs_counts("api"),
        lambda c: c == {1: (0, 0), 2: (4, 4)},
        what="revision 1 scaled to 0, revision 2 ready",
    )
    # Never more than replicas + maxSurge asked for, never fewer than replicas ready.
    assert max(sum(d for d, _ in c.values()) for c in seen) <= 5
    assert any(c.get(2, (0, 0))[0] not in (0, 4) for c in seen)  # it went step by step


async def _hook_jobs(k: Kube) -> list[str]:
    doc = await k.client.list(kube.JOBS, namespace=k.namespace)
    return sorted(j["metadata"]["name"] for j in doc["items"])


async def test_recreate_runs_hooks_as_jobs_in_order(kube_: Kube, operator: Operator) -> None:
    k = kube_
    hook = {"command": ["migrate"], "timeoutSeconds": 300}
    strategy = {"recreate": {"pre": hook, "post": hook}}
    await k.apply_rollout(rollout("db", replicas=2, strategy=strategy))
    await phase_is(k, "db", "Healthy")
    await k.set_image("db", "app:v2")
    jobs = await eventually(
        lambda: _hook_jobs(k), lambda j: any("-pre-" in n for n in j), what="pre hook Job"
    )
    pre = next(n for n in jobs if "-pre-" in n)
    job = await k.client.get(kube.JOBS, pre, namespace=k.namespace)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "app:v2" and container["command"] == ["migrate"]
    assert job["spec"]["activeDeadlineSeconds"] == 300 and job["spec"]["backoffLimit"] == 0
    # The old revision keeps serving while the pre hook runs.
    assert (await k.rs_counts("db"))[1] == (2, 2)
    await k.finish_job(pre)
    await eventually(
        lambda: k.rs_counts("db"),
        lambda c: c[1][0] == 0 and c.get(2, (0, 0))[0] == 2,
        what="old down, new up",
    )
    jobs = await eventually(
        lambda: _hook_jobs(k), lambda j: any("-post-" in n for n in j), what="post hook Job"
    )
    await k.finish_job(next(n for n in jobs if "-post-" in n))
    st = await healthy_on(k, "db", 2)
    assert st["stableRevision"] == 2
    reasons = await k.reasons_through(
        "db", "HookStarted", "HookSucceeded", "HookStarted", "HookSucceeded"
    )
    assert [r for r in reasons if r.startswith("Hook")] == [
        "HookStarted",
        "HookSucceeded",
        "HookStarted",
        "HookSucceeded",
    ]


async def test_recreate_hook_overrunning_its_timeout_degrades(
    kube_: Kube, operator: Operator
) -> None:
    k = kube_
    strategy = {"recreate": {"pre": {"command": ["slow"], "timeoutSeconds": 1}}}
    await k.apply_rollout(rollout("batch", replicas=1, strategy=strategy))
    await phase_is(k, "batch", "Healthy")
    await k.set_image("batch", "app:v2")
    st = await phase_is(k, "batch", "Degraded", within=60)
    assert st["message"].startswith("pre hook failed: Job batch-pre-")
    assert (await k.rs_counts("batch"))[1] == (1, 1)  # the old revision was never stopped
    assert "HookFailed" in await k.reasons("batch")
