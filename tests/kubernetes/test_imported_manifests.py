"""Manifests shaped after the Argo Rollouts and Flagger examples (tests/fixtures/imports),
run for real on the test cluster: an Argo Rollout read directly by the operator
(``--argo-rollouts``) walks its steps, one with ``workloadRef`` takes its Deployment's pod
template, and a Flagger Canary imported with ``changeover import`` progresses through its
weights on NGINX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from conftest import helper_operator
from k8s_helpers import Kube, eventually, healthy_on, phase_is

from changeover import importers
from changeover.kube import client as kube
from changeover.operator.argo_bridge import DEPLOYMENTS
from changeover.operator.runtime import Operator
from changeover.operator.service import KubeService

JSON = dict[str, Any]
# Pods become Ready through the testbed's fake kubelet, which other test sessions and the
# scale benchmark share: waits for replicas are generous so a busy box does not fail them.
SLOW = 180.0
FIXTURES = Path(__file__).parents[1] / "fixtures" / "imports"


def _docs(name: str) -> list[JSON]:
    text = (FIXTURES / name).read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def _of_kind(name: str, kind: str) -> JSON:
    (doc,) = [d for d in _docs(name) if d["kind"] == kind]
    return doc


async def _step_is(k: Kube, name: str, index: int, phase: str) -> JSON:
    return await eventually(
        lambda: k.status(name),
        lambda s: s.get("currentStepIndex") == index and s.get("phase") == phase,
        what=f"{name} {phase} at step {index}",
        within=SLOW,
    )


async def test_argo_canary_walks_its_steps_read_directly(kube_: Kube) -> None:
    k = kube_
    argo = _of_kind("argo/rollout-canary.yaml", "Rollout")
    # The fixture's timed pauses (30s, 15s, 15s) shortened so the test takes seconds; the
    # `pause: {}` after 25% stays and is promoted by hand.
    for step in argo["spec"]["strategy"]["canary"]["steps"]:
        if (step.get("pause") or {}).get("duration"):
            step["pause"]["duration"] = 1
    svc = KubeService(k.client, namespace=k.namespace)
    async with helper_operator(k, argo_rollouts=True):
        await k.create(kube.ARGO_ROLLOUTS, argo)
        await healthy_on(k, "lantern-canary", 1, within=SLOW)
        assert await k.rs_counts("lantern-canary") == {1: (4, 4)}
        notes = (await k.rollout("lantern-canary"))["metadata"]["annotations"]
        assert "spec.selector: changed" in notes["changeover.dev/import-notes"]
        # `kubectl argo rollouts set image`: the Argo manifest changes, ours follows.
        # Retried on conflict: the operator writes the Argo Rollout's status, as Argo does.
        await k.update(
            kube.ARGO_ROLLOUTS,
            "lantern-canary",
            lambda r: r["spec"]["template"]["spec"]["containers"][0].update(
                image="registry.example.org/lights/lantern:1.1.0"
            ),
        )
        st = await _step_is(k, "lantern-canary", 1, "Paused")
        assert st["weightsText"] == "1:75 2:25"
        # No trafficRouting: Argo's basic canary, 25% of 4 is 1 canary and 3 stable pods.
        assert await k.rs_counts("lantern-canary") == {1: (3, 3), 2: (1, 1)}
        await svc.promote("lantern-canary")
        st = await healthy_on(k, "lantern-canary", 2, within=SLOW)
        assert st["weightsText"] == "2:100"
        await eventually(lambda: k.reasons("lantern-canary"), lambda r: "RolloutCompleted" in r)
    events = await k.events("lantern-canary")
    steps = [m for r, m in events if r == "RolloutStepCompleted"]
    # Every step in order; the `pause: {}` (step 2) is left by the promote instead.
    assert steps == [f"step {i}/8 completed" for i in (1, 3, 4, 5, 6, 7, 8)]
    assert [r for r, _ in events].count("RolloutPromoted") == 1


async def test_argo_workload_ref_runs_the_deployments_pods(kube_: Kube) -> None:
    k = kube_
    deployment = _of_kind("argo/workload-ref.yaml", "Deployment")
    argo = _of_kind("argo/workload-ref.yaml", "Rollout")
    await k.create(DEPLOYMENTS, deployment)
    async with helper_operator(k, argo_rollouts=True):
        await k.create(kube.ARGO_ROLLOUTS, argo)
        await healthy_on(k, "pinger", 1, within=SLOW)
        ours = await k.rollout("pinger")
        (container,) = ours["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "registry.example.org/netops/pinger:0.6.0"
        assert ours["spec"]["strategy"]["canary"]["steps"] == [
            {"setWeight": 30},
            {"pause": {"duration": "5s"}},
        ]
        assert await k.rs_counts("pinger") == {1: (3, 3)}


async def test_flagger_canary_imported_progresses_on_nginx(kube_: Kube, operator: Operator) -> None:
    k = kube_
    source = "flagger/nginx-canary.yaml"
    result = importers.import_path(str(FIXTURES / source))
    (body,) = [d for d in result.documents if d["kind"] == "Rollout"]
    # Its Deployment is the workload of another fixture shaped after the same Flagger e2e test.
    deployment = _of_kind("flagger/gatewayapi-ab-headers.yaml", "Deployment")
    body = importers.convert(
        [d for d in _docs(source) if d["kind"] == "Canary"], source, context=[deployment]
    ).documents[0]
    spec = body["spec"]
    assert [s.get("setWeight") for s in spec["strategy"]["canary"]["steps"]] == [25, None, 50, None]
    # No Prometheus and no Flagger load tester here (test_flagger_checks.py has both): the
    # checks measure nothing and pass an interval after each weight.
    del spec["checks"]["metrics"], spec["webhooks"]
    body["metadata"]["namespace"] = k.namespace
    ingress = _of_kind(source, "Ingress")
    ingress["metadata"]["namespace"] = k.namespace
    await k.create(kube.INGRESSES, ingress)
    await k.apply_rollout(body)
    await healthy_on(k, "quill", 1, within=SLOW)
    assert await k.rs_counts("quill") == {1: (1, 1)}
    await k.set_image("quill", "registry.example.org/writers/quill:2.4.0")
    p = "nginx.ingress.kubernetes.io/"

    async def weight() -> str | None:
        doc = await k.client.get_or_none(kube.INGRESSES, "quill-canary", namespace=k.namespace)
        return ((doc or {}).get("metadata", {}).get("annotations") or {}).get(p + "canary-weight")

    # stepWeight 25 up to maxWeight 50, a check of 20s at each: 25, then 50, then promoted.
    await eventually(weight, lambda w: w == "25", what="canary weight 25", within=SLOW)
    assert (await k.status("quill"))["currentStepIndex"] in (0, 1)
    await eventually(weight, lambda w: w == "50", what="canary weight 50", within=SLOW)
    await healthy_on(k, "quill", 2, within=SLOW)
    assert await weight() == "0"
    reasons = await k.reasons("quill")
    assert reasons.count("RolloutStepCompleted") >= 4 and "RolloutCompleted" in reasons
    await phase_is(k, "quill", "Healthy")


async def test_argo_rollout_changeover_cannot_run_is_refused_with_an_event(kube_: Kube) -> None:
    k = kube_
    argo = _of_kind("argo/istio-mirror.yaml", "Rollout")
    # Without its istio trafficRouting, the example's setMirrorRoute step has no router
    # that can mirror: `changeover import` refuses that, and so does the operator.
    del argo["spec"]["strategy"]["canary"]["trafficRouting"]
    async with helper_operator(k, argo_rollouts=True):
        await k.create(kube.ARGO_ROLLOUTS, argo)
        events = await eventually(
            lambda: k.events("orders-shadow"),
            lambda e: any(r == "InvalidSpec" for r, _ in e),
            what="an InvalidSpec event on the Argo Rollout",
        )
        message = next(m for r, m in events if r == "InvalidSpec")
        assert "spec.strategy.canary.steps[1].setMirrorRoute" in message
        assert "mirroring" in message
        # Argo CD and the plugin read it off the Argo Rollout: Degraded, InvalidSpec.
        shown = await k.client.get(kube.ARGO_ROLLOUTS, "orders-shadow", namespace=k.namespace)
        assert shown["status"]["phase"] == "Degraded"
        assert shown["status"]["message"].startswith("InvalidSpec: ")
        assert shown["status"]["observedGeneration"] == str(shown["metadata"]["generation"])
        assert (
            await k.client.get_or_none(kube.ROLLOUTS, "orders-shadow", namespace=k.namespace)
            is None
        )
