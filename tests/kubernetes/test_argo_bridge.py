"""Argo Rollouts' own resources run by ``serve --argo-rollouts``, and Argo's tools reading
and commanding them (manifests written from Argo Rollouts' documentation):

- AnalysisTemplates and ClusterAnalysisTemplates already in the cluster are read, as the
  Rollouts are (docs/features/analysis.md: a canary with an analysis step);
- the Argo Rollout's ``.status`` is what ``kubectl argo rollouts get/status`` and Argo CD's
  health check read (phase, observedGeneration, step, weights, pause conditions), and the
  merge patches the plugin sends (promote, abort, retry, promote --full) are carried out;
- an import that loses a field says so in a Warning event; Secret references are carried.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import helper_operator
from k8s_helpers import Kube, eventually, healthy_on, json_server

from changeover.kube import client as kube
from changeover.operator.service import KubeService
from changeover.platforms.kubernetes.events import list_events

JSON = dict[str, Any]
SLOW = 180.0
ARGO_TEMPLATES = kube.ARGO_ANALYSIS_TEMPLATES
CLUSTER_TEMPLATES = kube.ARGO_CLUSTER_ANALYSIS_TEMPLATES


@pytest.fixture
def health_url() -> Iterator[str]:
    """A metrics endpoint on this machine's loopback answering ``{"data": {"ok": true}}``."""
    with json_server(lambda _: {"data": {"ok": True}}) as url:
        yield f"{url}/api/health"


def web_template(kind: str, name: str, url: str) -> JSON:
    """docs/analysis/web.md's shape: a web metric with a jsonPath and a successCondition."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "metrics": [
                {
                    "name": name,
                    "interval": "1s",
                    "count": 2,
                    "successCondition": "result == true",
                    "provider": {"web": {"url": url, "jsonPath": "{$.data.ok}"}},
                }
            ]
        },
    }


def argo_rollout(
    name: str, steps: list[JSON], *, image: str = "argoproj/rollouts-demo:blue"
) -> JSON:
    """docs/getting-started.md's rollouts-demo, with the given canary steps."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        }
                    ]
                },
            },
            "strategy": {"canary": {"steps": steps}},
        },
    }


async def argo_obj(k: Kube, name: str) -> JSON:
    return await k.client.get(kube.ARGO_ROLLOUTS, name, namespace=k.namespace)


async def set_argo_image(k: Kube, name: str, image: str) -> None:
    """``kubectl argo rollouts set image``: the Argo Rollout's pod template changes.

    Retried on conflict (the operator writes the status meanwhile), as the plugin does."""

    def change(obj: JSON) -> None:
        obj["spec"]["template"]["spec"]["containers"][0]["image"] = image

    await k.update(kube.ARGO_ROLLOUTS, name, change)


async def plugin_patch(k: Kube, name: str, patch: JSON) -> None:
    """A merge patch of the status subresource, as pkg/kubectl-argo-rollouts/cmd sends it."""
    await k.client.patch(kube.ARGO_ROLLOUTS, name, patch, namespace=k.namespace, sub="status")


def observed(obj: JSON) -> bool:
    """What health.lua and GetRolloutPhase check first: the spec's generation observed."""
    st = obj.get("status") or {}
    return st.get("observedGeneration") == str(obj["metadata"]["generation"])


async def argo_status_is(k: Kube, name: str, check: Any, what: str) -> JSON:
    obj = await eventually(
        lambda: argo_obj(k, name),
        lambda o: observed(o) and check(o.get("status") or {}),
        within=SLOW,
        what=what,
    )
    return dict(obj["status"])


async def test_argo_analysis_templates_in_the_cluster_are_read(
    kube_: Kube, health_url: str
) -> None:
    k = kube_
    await k.create(ARGO_TEMPLATES, web_template("AnalysisTemplate", "success-rate", health_url))
    cluster_name = f"{k.namespace}-cluster-ok"
    cluster = web_template("ClusterAnalysisTemplate", cluster_name, health_url)
    await k.client.create(CLUSTER_TEMPLATES, cluster)
    steps = [
        {"setWeight": 20},
        {"analysis": {"templates": [{"templateName": "success-rate"}]}},
        {"analysis": {"templates": [{"templateName": cluster_name, "clusterScope": True}]}},
        {"pause": {}},
    ]
    try:
        async with helper_operator(k, argo_rollouts=True):
            await k.create(kube.ARGO_ROLLOUTS, argo_rollout("demo", steps))
            await healthy_on(k, "demo", 1, within=SLOW)
            await set_argo_image(k, "demo", "argoproj/rollouts-demo:yellow")
            st = await eventually(
                lambda: k.status("demo"),
                lambda s: s.get("currentStepIndex") == 3 or s.get("phase") == "Aborted",
                within=SLOW,
                what="past both analysis steps",
            )
            assert st["phase"] == "Paused", st.get("message")
            assert st["analysis"]["success-rate"]["phase"] == "Successful"
            assert st["analysis"][cluster_name]["phase"] == "Successful"
    finally:
        await k.client.delete(CLUSTER_TEMPLATES, cluster_name)


def primary_ingress() -> JSON:
    """docs/features/traffic-management/nginx.md's stable Ingress."""
    backend = {"service": {"name": "stable-service", "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "primary-ingress",
            "annotations": {"kubernetes.io/ingress.class": "nginx"},
        },
        "spec": {
            "rules": [
                {
                    "host": "demo.example.org",
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
            ]
        },
    }


async def test_argo_status_follows_and_plugin_commands_are_carried_out(kube_: Kube) -> None:
    k = kube_
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 40}, {"pause": {}}]
    argo = argo_rollout("demo", steps)
    argo["spec"]["strategy"]["canary"].update(
        canaryService="canary-service",
        stableService="stable-service",
        trafficRouting={"nginx": {"stableIngress": "primary-ingress"}},
    )
    await k.create(kube.INGRESSES, primary_ingress())
    async with helper_operator(k, argo_rollouts=True):
        await k.create(kube.ARGO_ROLLOUTS, argo)
        st = await argo_status_is(k, "demo", lambda s: s.get("phase") == "Healthy", "Healthy")
        assert st["stableRS"] == st["currentPodHash"] == await k.hash_of("demo", 1)
        assert st["currentStepIndex"] == 4
        assert (st["replicas"], st["readyReplicas"], st["availableReplicas"]) == (2, 2, 2)

        await set_argo_image(k, "demo", "argoproj/rollouts-demo:yellow")
        st = await argo_status_is(
            k, "demo", lambda s: s.get("phase") == "Paused", "Paused at the first pause"
        )
        canary_hash = await k.hash_of("demo", 2)
        assert st["message"] == "CanaryPauseStep" and st["currentStepIndex"] == 1
        assert [c["reason"] for c in st["pauseConditions"]] == ["CanaryPauseStep"]
        assert st["controllerPause"] is True
        assert st["currentPodHash"] == canary_hash and st["stableRS"] == await k.hash_of("demo", 1)
        assert st["canary"]["weights"] == {
            "canary": {
                "weight": 20,
                "podTemplateHash": canary_hash,
                "serviceName": "canary-service",
            },
            "stable": {
                "weight": 80,
                "podTemplateHash": await k.hash_of("demo", 1),
                "serviceName": "stable-service",
            },
        }

        # kubectl argo rollouts promote demo
        await plugin_patch(k, "demo", {"status": {"pauseConditions": None}})
        st = await argo_status_is(
            k,
            "demo",
            lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 3,
            "Paused at the second pause",
        )
        assert st["canary"]["weights"]["canary"]["weight"] == 40

        # kubectl argo rollouts abort demo
        await plugin_patch(k, "demo", {"status": {"abort": True}})
        st = await argo_status_is(k, "demo", lambda s: s.get("phase") == "Degraded", "aborted")
        assert st["message"].startswith("RolloutAborted")
        assert st["abort"] is True
        assert (await k.status("demo"))["phase"] == "Aborted"

        # kubectl argo rollouts retry rollout demo
        await plugin_patch(k, "demo", {"status": {"abort": False}})
        await argo_status_is(
            k,
            "demo",
            lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 1,
            "retried: paused at the first pause again",
        )

        # kubectl argo rollouts promote demo --full
        await plugin_patch(k, "demo", {"status": {"promoteFull": True}})
        st = await argo_status_is(
            k,
            "demo",
            lambda s: s.get("phase") == "Healthy" and s.get("stableRS") == canary_hash,
            "fully promoted",
        )
        assert st["currentPodHash"] == canary_hash and "promoteFull" not in st
        await healthy_on(k, "demo", 2, within=SLOW)


async def test_argo_status_follows_a_pause_of_the_spec(kube_: Kube) -> None:
    k = kube_
    async with helper_operator(k, argo_rollouts=True):
        await k.create(kube.ARGO_ROLLOUTS, argo_rollout("demo", [{"setWeight": 50}]))
        await argo_status_is(k, "demo", lambda s: s.get("phase") == "Healthy", "Healthy")
        # kubectl argo rollouts pause demo: a spec patch, so a new generation to observe
        await k.client.patch(
            kube.ARGO_ROLLOUTS, "demo", {"spec": {"paused": True}}, namespace=k.namespace
        )
        st = await argo_status_is(k, "demo", lambda s: s.get("phase") == "Paused", "paused")
        assert st["message"] == "manually paused"


async def test_import_notes_warn_for_losses_and_secrets_are_read(
    kube_: Kube, health_url: str
) -> None:
    k = kube_
    await k.create(
        kube.SECRETS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "metrics-endpoint"},
            "data": {"url": base64.b64encode(health_url.encode()).decode()},
        },
    )
    # docs/features/analysis.md: an argument read from a Secret (valueFrom.secretKeyRef)
    template = web_template("AnalysisTemplate", "from-secret", "{{args.url}}")
    template["spec"]["args"] = [
        {"name": "url", "valueFrom": {"secretKeyRef": {"name": "metrics-endpoint", "key": "url"}}}
    ]
    await k.create(ARGO_TEMPLATES, template)
    plain = argo_rollout("plain", [{"setWeight": 50}, {"pause": {}}])
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}]
    plain["spec"]["template"]["spec"]["containers"][0]["env"] = env
    lossy = argo_rollout(
        "lossy",
        [
            {"setWeight": 50},
            {"analysis": {"templates": [{"templateName": "from-secret"}]}},
            {"pause": {}},
        ],
    )
    # docs/features/anti-affinity.md: not carried (changeover has no anti-affinity option)
    lossy["spec"]["strategy"]["canary"]["antiAffinity"] = {
        "preferredDuringSchedulingIgnoredDuringExecution": {"weight": 1}
    }
    async with helper_operator(k, argo_rollouts=True):
        await k.create(kube.ARGO_ROLLOUTS, plain)
        await k.create(kube.ARGO_ROLLOUTS, lossy)
        await healthy_on(k, "plain", 1, within=SLOW)
        await healthy_on(k, "lossy", 1, within=SLOW)
        # The pod template's Secret reference reaches the ReplicaSet as written.
        rs = (await k.replicasets("plain"))[1]
        assert rs["spec"]["template"]["spec"]["containers"][0]["env"] == env
        # The analysis argument is read from the Secret when its run starts.
        await set_argo_image(k, "lossy", "argoproj/rollouts-demo:yellow")
        st = await eventually(
            lambda: k.status("lossy"),
            lambda s: s.get("phase") in ("Paused", "Aborted"),
            within=SLOW,
            what="past the analysis step",
        )
        assert st["analysis"]["from-secret"]["phase"] == "Successful", st
    types = {}
    for name in ("plain", "lossy"):
        for e in await list_events(k.client, namespace=k.namespace, name=name):
            if e["reason"] == "ImportNotes":
                types[name] = e["type"]
    assert types == {"plain": "Normal", "lossy": "Warning"}


async def test_argo_blue_green_status_and_promote(kube_: Kube) -> None:
    """docs/features/bluegreen.md: active and preview Services, no auto-promotion."""
    k = kube_
    argo = argo_rollout("demo", [])
    argo["spec"]["strategy"] = {
        "blueGreen": {
            "activeService": "demo-active",
            "previewService": "demo-preview",
            "autoPromotionEnabled": False,
        }
    }
    async with helper_operator(k, argo_rollouts=True):
        await k.create(kube.ARGO_ROLLOUTS, argo)
        st = await argo_status_is(k, "demo", lambda s: s.get("phase") == "Healthy", "Healthy")
        blue = await k.hash_of("demo", 1)
        assert st["blueGreen"]["activeSelector"] == blue == st["stableRS"]
        await set_argo_image(k, "demo", "argoproj/rollouts-demo:green")
        st = await argo_status_is(k, "demo", lambda s: s.get("phase") == "Paused", "on preview")
        green = await k.hash_of("demo", 2)
        assert st["message"] == "BlueGreenPause"
        assert [c["reason"] for c in st["pauseConditions"]] == ["BlueGreenPause"]
        assert st["blueGreen"] == {"activeSelector": blue, "previewSelector": green}
        assert st["currentPodHash"] == green and st["stableRS"] == blue
        # kubectl argo rollouts promote demo
        await plugin_patch(k, "demo", {"status": {"pauseConditions": None}})
        st = await argo_status_is(
            k,
            "demo",
            lambda s: s.get("phase") == "Healthy" and s.get("stableRS") == green,
            "promoted",
        )
        assert st["blueGreen"]["activeSelector"] == green
        assert await k.selects("demo-active") == green


def user_service(name: str) -> JSON:
    """docs/features/traffic-management/nginx.md's Services: port 80 in front of 8080."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": "demo"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


async def test_endpoint_shows_the_adopted_services_port(kube_: Kube) -> None:
    k = kube_
    argo = argo_rollout("demo", [{"setWeight": 20}, {"pause": {}}])
    argo["spec"]["strategy"]["canary"].update(
        canaryService="canary-service",
        stableService="stable-service",
        trafficRouting={"nginx": {"stableIngress": "primary-ingress"}},
    )
    for name in ("stable-service", "canary-service"):
        await k.create(kube.SERVICES, user_service(name))
    await k.create(kube.INGRESSES, primary_ingress())
    async with helper_operator(k, argo_rollouts=True):
        await k.create(kube.ARGO_ROLLOUTS, argo)
        await healthy_on(k, "demo", 1, within=SLOW)
        doc = await KubeService(k.client, namespace=k.namespace).status("demo")
        assert doc["endpoint"] == f"http://stable-service.{k.namespace}.svc:80"
