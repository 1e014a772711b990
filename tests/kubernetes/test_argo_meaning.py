"""Argo Rollouts manifests, as its documentation writes them, mean on the test cluster what
they mean under Argo Rollouts (issue 13, "same meaning for the same words"): a Service the
user made keeps its own selector, the basic canary (no traffic router) sizes stable and
canary so the replica ratio is the weight, within maxSurge/maxUnavailable.

Each manifest is imported with ``changeover import``'s converter (``importers.convert``)
and applied as the changeover Rollout it becomes."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from k8s_helpers import Kube, eventually, healthy_on, json_server

from changeover import importers
from changeover.kube import client as kube
from changeover.kube import names
from changeover.operator.runtime import Operator
from changeover.operator.service import KubeService

JSON = dict[str, Any]
SLOW = 180.0


def _import(text: str, namespace: str) -> tuple[JSON, list[JSON]]:
    """The converted Rollout and the other documents (Services) of an Argo manifest."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    argo = [d for d in docs if d["kind"] == "Rollout"]
    (body,) = importers.convert(argo, "argo-docs.yaml").documents
    body["metadata"]["namespace"] = namespace
    rest = [d for d in docs if d["kind"] != "Rollout"]
    for d in rest:
        d["metadata"]["namespace"] = namespace
    return body, rest


# Argo Rollouts' docs (features/bluegreen.md): a user's active Service selecting by app.
BLUE_GREEN = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: rollout-bluegreen
spec:
  replicas: 2
  revisionHistoryLimit: 2
  selector:
    matchLabels:
      app: rollout-bluegreen
  template:
    metadata:
      labels:
        app: rollout-bluegreen
    spec:
      containers:
      - name: rollouts-demo
        image: argoproj/rollouts-demo:blue
        imagePullPolicy: Always
        ports:
        - containerPort: 8080
  strategy:
    blueGreen:
      activeService: rollout-bluegreen-active
      autoPromotionEnabled: false
---
kind: Service
apiVersion: v1
metadata:
  name: rollout-bluegreen-active
spec:
  selector:
    app: rollout-bluegreen
  ports:
  - protocol: TCP
    port: 80
    targetPort: 8080
"""


async def test_adopted_service_keeps_its_selector_and_is_released_on_delete(
    kube_: Kube, operator: Operator
) -> None:
    k = kube_
    body, (service,) = _import(BLUE_GREEN, k.namespace)
    await k.create(kube.SERVICES, service)
    await k.apply_rollout(body)
    await healthy_on(k, "rollout-bluegreen", 1, within=SLOW)
    h1 = await k.hash_of("rollout-bluegreen", 1)
    # Argo adds its hash key to the user's selector; the user's `app` stays.
    assert await k.selector("rollout-bluegreen-active") == {
        "app": "rollout-bluegreen",
        names.HASH_LABEL: h1,
    }
    await k.client.delete(kube.ROLLOUTS, "rollout-bluegreen", namespace=k.namespace)
    # Deleting the Rollout gives the Service back as the user wrote it: no dead hash.
    await eventually(
        lambda: k.selector("rollout-bluegreen-active"),
        lambda s: s == {"app": "rollout-bluegreen"},
        what="the adopted Service's hash key removed",
    )
    svc = await k.client.get(kube.SERVICES, "rollout-bluegreen-active", namespace=k.namespace)
    assert "changeover.dev/managed-by" not in (svc["metadata"].get("labels") or {})


# Argo Rollouts' getting-started (docs/getting-started.md, basic/rollout.yaml and
# basic/service.yaml): a canary without a traffic router on the user's own Service.
BASIC = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: rollouts-demo
spec:
  replicas: 5
  strategy:
    canary:
      steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 40
      - pause: {duration: 1}
      - setWeight: 60
      - pause: {duration: 1}
  revisionHistoryLimit: 2
  selector:
    matchLabels:
      app: rollouts-demo
  template:
    metadata:
      labels:
        app: rollouts-demo
    spec:
      containers:
      - name: rollouts-demo
        image: argoproj/rollouts-demo:blue
        ports:
        - name: http
          containerPort: 8080
          protocol: TCP
---
apiVersion: v1
kind: Service
metadata:
  name: rollouts-demo
spec:
  ports:
  - port: 80
    targetPort: http
    protocol: TCP
    name: http
  selector:
    app: rollouts-demo
"""


async def test_basic_canary_replica_ratio_is_the_weight(kube_: Kube, operator: Operator) -> None:
    k = kube_
    body, (service,) = _import(BASIC, k.namespace)
    assert "service" not in body["spec"]  # Argo's basic canary: the user's Service only
    await k.create(kube.SERVICES, service)
    await k.apply_rollout(body)
    await healthy_on(k, "rollouts-demo", 1, within=SLOW)
    await k.set_image("rollouts-demo", "argoproj/rollouts-demo:yellow")
    seen: list[dict[int, tuple[int, int]]] = []

    async def counts() -> dict[int, tuple[int, int]]:
        seen.append(await k.rs_counts("rollouts-demo"))
        return seen[-1]

    st = await eventually(
        lambda: _sampled(k, counts),
        lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 1,
        within=SLOW,
    )
    # 20% of 5 pods is 1 canary and 4 stable, and the status says what the Service does.
    assert await k.rs_counts("rollouts-demo") == {1: (4, 4), 2: (1, 1)}
    assert st["weightsText"] == "1:80 2:20"
    # maxSurge 25% of 5 is 2: never more than 7 pods asked for.
    assert max(sum(spec for spec, _ in c.values()) for c in seen) <= 7
    # The operator never touched the user's Service, nor made one of its own.
    assert await k.selector("rollouts-demo") == {"app": "rollouts-demo"}
    svcs = await k.client.list(kube.SERVICES, namespace=k.namespace)
    assert [s["metadata"]["name"] for s in svcs["items"]] == ["rollouts-demo"]

    await KubeService(k.client, namespace=k.namespace).promote("rollouts-demo")
    st = await eventually(
        lambda: _sampled(k, counts),
        lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") == 2,
        within=SLOW,
    )
    # Completed means the old pods are already going: no 30 s of them behind the Service.
    assert (await k.rs_counts("rollouts-demo"))[1][0] == 0
    assert st["weightsText"] == "2:100"
    assert max(sum(spec for spec, _ in c.values()) for c in seen) <= 7


async def _sampled(k: Kube, counts: Any) -> JSON:
    await counts()
    return await k.status("rollouts-demo")


# Argo Rollouts' docs (features/analysis.md, "Analysis with arguments" and
# podTemplateHashValue): a canary-hash argument in a Prometheus query.
HASH_ARGS = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  args:
  - name: service-name
  - name: canary-hash
  metrics:
  - name: success-rate
    interval: 1s
    count: 1
    successCondition: result[0] >= 0.95
    provider:
      prometheus:
        address: PROMETHEUS
        query: |
          sum(irate(istio_requests_total{destination_service=~"{{args.service-name}}",
            response_code!~"5.*",rollouts_pod_template_hash="{{args.canary-hash}}"}[5m]))
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: guestbook
spec:
  replicas: 2
  selector:
    matchLabels: {app: guestbook}
  template:
    metadata:
      labels: {app: guestbook}
    spec:
      containers:
      - name: guestbook
        image: argoproj/rollouts-demo:blue
        ports: [{containerPort: 8080}]
  strategy:
    canary:
      steps:
      - setWeight: 50
      - analysis:
          templates:
          - templateName: success-rate
          args:
          - name: service-name
            value: guestbook-svc.default.svc.cluster.local
          - name: canary-hash
            valueFrom:
              podTemplateHashValue: Latest
      - pause: {}
"""


@pytest.fixture
def prometheus() -> Iterator[tuple[str, list[str]]]:
    """A Prometheus query API on loopback answering 1.0 and keeping every query."""
    queries: list[str] = []

    def answer(path: str) -> JSON:
        queries.extend(urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("query", []))
        result = [{"metric": {}, "value": [time.time(), "1.0"]}]
        return {"status": "success", "data": {"resultType": "vector", "result": result}}

    with json_server(answer) as url:
        yield url, queries


async def test_pod_template_hash_value_is_the_replicasets_hash(
    kube_: Kube, operator: Operator, prometheus: tuple[str, list[str]]
) -> None:
    k = kube_
    address, queries = prometheus
    docs = [d for d in yaml.safe_load_all(HASH_ARGS.replace("PROMETHEUS", address)) if d]
    result = importers.convert(docs, "argo-docs.yaml")
    for doc in result.documents:
        doc["metadata"]["namespace"] = k.namespace
    (template,) = [d for d in result.documents if d["kind"] == "AnalysisTemplate"]
    (body,) = [d for d in result.documents if d["kind"] == "Rollout"]
    await k.create(kube.ANALYSIS_TEMPLATES, template)
    await k.apply_rollout(body)
    await healthy_on(k, "guestbook", 1, within=SLOW)
    await k.set_image("guestbook", "argoproj/rollouts-demo:yellow")
    st = await eventually(
        lambda: k.status("guestbook"),
        lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 2,
        within=SLOW,
        what="paused after the analysis step",
    )
    assert st["analysis"]["success-rate"]["phase"] == "Successful"
    h2 = await k.hash_of("guestbook", 2)
    # Argo passes the pod-template hash, not a revision number, so the query selects pods.
    assert queries and all(f'rollouts_pod_template_hash="{h2}"' in q for q in queries), queries


# Argo Rollouts' docs (features/traffic-management/mirroring... "setMirrorRoute"): mirror
# matching requests, then a setMirrorRoute without match, which removes the route.
MIRROR = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: rollout-mirror
spec:
  replicas: 2
  selector:
    matchLabels: {app: rollout-mirror}
  template:
    metadata:
      labels: {app: rollout-mirror}
    spec:
      containers:
      - name: app
        image: argoproj/rollouts-demo:blue
        ports: [{containerPort: 8080}]
  strategy:
    canary:
      canaryService: mirror-canary
      stableService: mirror-stable
      trafficRouting:
        managedRoutes:
        - name: mirror-route
        istio:
          virtualService:
            name: rollout-vsvc
            routes:
            - primary
      steps:
      - setCanaryScale:
          weight: 25
      - setMirrorRoute:
          name: mirror-route
          percentage: 35
          match:
          - headers:
              agent-1b:
                exact: firefox
      - pause: {}
      - setMirrorRoute:
          name: mirror-route
      - pause: {}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: rollout-vsvc
spec:
  hosts: [rollout-mirror]
  http:
  - name: primary
    route:
    - destination: {host: mirror-stable}
      weight: 100
    - destination: {host: mirror-canary}
      weight: 0
"""


async def test_set_mirror_route_without_match_removes_the_route(
    kube_: Kube, operator: Operator
) -> None:
    k = kube_
    body, (vs,) = _import(MIRROR, k.namespace)
    await k.create(kube.VIRTUAL_SERVICES, vs)
    await k.apply_rollout(body)
    await healthy_on(k, "rollout-mirror", 1, within=SLOW)
    await k.set_image("rollout-mirror", "argoproj/rollouts-demo:yellow")

    async def routes() -> list[str]:
        doc = await k.client.get(kube.VIRTUAL_SERVICES, "rollout-vsvc", namespace=k.namespace)
        return [r["name"] for r in doc["spec"]["http"]]

    async def paused_at(index: int) -> None:
        await eventually(
            lambda: k.status("rollout-mirror"),
            lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == index,
            within=SLOW,
        )

    await paused_at(2)
    assert await routes() == ["mirror-route", "primary"]
    await KubeService(k.client, namespace=k.namespace).promote("rollout-mirror")
    await paused_at(4)
    # Argo removes the mirror route here; it must not become "mirror everything".
    assert await routes() == ["primary"]
    doc = await k.client.get(kube.VIRTUAL_SERVICES, "rollout-vsvc", namespace=k.namespace)
    assert "mirror" not in doc["spec"]["http"][0]
