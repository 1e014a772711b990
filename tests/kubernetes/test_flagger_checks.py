"""A Flagger Canary from Flagger's NGINX tutorial (docs/gitbook/tutorials/nginx-progressive-
delivery.md: a Deployment, its Ingress, a Canary with the built-in request-success-rate
metric, an acceptance-test pre-rollout webhook and a load-test rollout webhook), imported
with ``changeover import`` and run by the operator on the test cluster.

The analysis runs for real: a Prometheus (Debian's) on this host scrapes NGINX's request
counters for the Canary's ingress, served at the rates each test sets (the note of the
import says to point the metric at your Prometheus: the test does), and the webhooks are
a local HTTP receiver. Given a failing canary (half its answers 500), the canary weight
never passes its first step and the rollout is rolled back after ``threshold`` failed
checks, the first of them a pre-rollout call that failed and was retried an interval later
(not an abort); the load-test webhook is called once per check, an interval apart. Given a
healthy canary, each weight waits for a passing check and it is promoted.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_helpers import Kube, eventually, healthy_on, phase_is

from changeover import importers
from changeover.kube import client as kube
from changeover.operator.runtime import Operator
from tests import prometheus_helpers

JSON = dict[str, Any]
SLOW = 180.0
INTERVAL = 15.0

# The tutorial's manifests; the Canary has no namespace (as applied with `kubectl -n`), the
# analysis is shortened (interval, steps, threshold) and the webhooks point at {hooks}.
TUTORIAL = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  labels: {{app: podinfo}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata: {{labels: {{app: podinfo}}}}
    spec:
      containers:
        - name: podinfod
          image: ghcr.io/stefanprodan/podinfo:6.0.0
          ports: [{{name: http, containerPort: 9898, protocol: TCP}}]
          command: [./podinfo, --port=9898, --level=info]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: podinfo
  labels: {{app: podinfo}}
spec:
  ingressClassName: nginx
  rules:
    - host: app.example.com
      http:
        paths:
          - pathType: Prefix
            path: "/"
            backend: {{service: {{name: podinfo, port: {{number: 80}}}}}}
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
spec:
  provider: nginx
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  ingressRef: {{apiVersion: networking.k8s.io/v1, kind: Ingress, name: podinfo}}
  progressDeadlineSeconds: 60
  service:
    port: 80
    targetPort: 9898
  analysis:
    interval: 15s
    threshold: 3
    maxWeight: 50
    stepWeight: 25
    metrics:
      - name: request-success-rate
        thresholdRange: {{min: 99}}
        interval: 1m
    webhooks:
      - name: acceptance-test
        type: pre-rollout
        url: {hooks}/acceptance
        timeout: 30s
        metadata: {{type: bash, cmd: "curl -sd 'test' http://podinfo-canary/token | grep token"}}
      - name: load-test
        url: {hooks}/load
        timeout: 5s
        metadata: {{cmd: "hey -z 1m -q 10 -c 2 http://app.example.com/"}}
"""


class Hooks:
    """Flagger's load tester stand-in: records each POST's path and time; ``fail`` lists
    answers to give per path (500 while the list lasts, then 200)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.fail: dict[str, int] = {}
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hooks.calls.append((self.path, time.monotonic()))
                left = hooks.fail.get(self.path, 0)
                hooks.fail[self.path] = max(left - 1, 0)
                self.send_response(500 if left else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def times(self, path: str) -> list[float]:
        return [t for p, t in self.calls if p == path]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    yield h
    h.server.shutdown()
    h.server.server_close()


@pytest.fixture
def exporter() -> Iterator[prometheus_helpers.Exporter]:
    e = prometheus_helpers.Exporter()
    yield e
    e.close()


@pytest.fixture
def prometheus(exporter: prometheus_helpers.Exporter, tmp_path: Path) -> Iterator[str]:
    with prometheus_helpers.running(tmp_path / "prom", exporter.port) as url:
        yield url


def _nginx(exporter: prometheus_helpers.Exporter, namespace: str, ok: float, bad: float) -> None:
    """NGINX's counters for the podinfo Ingress's canary: ``ok`` 200s and ``bad`` 500s a second."""
    for status, rate in (("200", ok), ("500", bad)):
        exporter.rate(
            f'nginx_ingress_controller_requests{{namespace="{namespace}",ingress="podinfo",'
            f'canary="podinfo-canary-80",status="{status}"}}',
            rate,
        )


async def _start(k: Kube, hooks: Hooks, prometheus: str) -> None:
    """Import the tutorial, point its metric at the test's Prometheus, run v1."""
    docs = [d for d in yaml.safe_load_all(TUTORIAL.format(hooks=hooks.url)) if d]
    result = importers.convert(docs, "podinfo.yaml")
    (body,) = result.documents
    assert "metadata.namespace" in {n.path for n in result.notes}  # queries follow the Rollout
    spec = body["spec"]
    assert [s.get("setWeight") for s in spec["strategy"]["canary"]["steps"]] == [25, None, 50, None]
    spec["checks"]["metrics"][0]["provider"]["prometheus"]["address"] = prometheus
    body["metadata"]["namespace"] = k.namespace
    ingress = next(d for d in docs if d["kind"] == "Ingress")
    await k.create(kube.INGRESSES, ingress)
    await k.apply_rollout(body)
    await healthy_on(k, "podinfo", 1, within=SLOW)


async def _weight(k: Kube) -> int:
    doc = await k.client.get_or_none(kube.INGRESSES, "podinfo-canary", namespace=k.namespace)
    annotations = ((doc or {}).get("metadata") or {}).get("annotations") or {}
    return int(annotations.get("nginx.ingress.kubernetes.io/canary-weight") or 0)


async def test_a_failing_flagger_canary_is_rolled_back_and_never_promoted(
    kube_: Kube,
    operator: Operator,
    hooks: Hooks,
    exporter: prometheus_helpers.Exporter,
    prometheus: str,
) -> None:
    k = kube_
    _nginx(exporter, k.namespace, ok=5, bad=5)  # 50% success, threshold min 99
    hooks.fail["/acceptance"] = 1  # the first pre-rollout call fails, the retry passes
    await _start(k, hooks, prometheus)
    await k.set_image("podinfo", "ghcr.io/stefanprodan/podinfo:6.0.1")
    seen: set[int] = set()

    async def watched() -> JSON:
        seen.add(await _weight(k))
        return await k.status("podinfo")

    status = await eventually(
        watched, lambda s: s.get("phase") == "Aborted", what="podinfo Aborted", within=SLOW
    )
    assert "3 failed checks reached the threshold 3" in status["message"], status
    assert max(seen) <= 25 and status.get("stableRevision") == 1
    events = await k.events("podinfo")
    checks = [m for r, m in events if r == "CheckFailed"]
    assert len(checks) == 3 and "pre-rollout" in checks[0], events
    reasons = [r for r, _ in events]
    assert "CheckPassed" not in reasons and reasons.count("RolloutCompleted") == 1, events  # v1
    # Flagger's cadence: the pre-rollout call retried an interval later; one load-test call
    # per check, an interval apart (not every 10 s for as long as the rollout runs).
    pre, load = hooks.times("/acceptance"), hooks.times("/load")
    assert len(pre) == 2 and pre[1] - pre[0] >= INTERVAL - 1, hooks.calls
    assert len(load) == 2 and load[1] - load[0] >= INTERVAL - 1, hooks.calls
    assert await _weight(k) == 0


async def test_a_healthy_flagger_canary_is_promoted_one_passing_check_per_weight(
    kube_: Kube,
    operator: Operator,
    hooks: Hooks,
    exporter: prometheus_helpers.Exporter,
    prometheus: str,
) -> None:
    k = kube_
    _nginx(exporter, k.namespace, ok=10, bad=0)
    await _start(k, hooks, prometheus)
    started = time.monotonic()
    await k.set_image("podinfo", "ghcr.io/stefanprodan/podinfo:6.0.1")
    await eventually(lambda: _weight(k), lambda w: w == 25, what="weight 25", within=SLOW)
    await eventually(lambda: _weight(k), lambda w: w == 50, what="weight 50", within=SLOW)
    await healthy_on(k, "podinfo", 2, within=SLOW)
    assert time.monotonic() - started >= 2 * INTERVAL - 1  # a check per weight
    reasons = await k.reasons("podinfo")
    assert reasons.count("CheckPassed") == 2 and "CheckFailed" not in reasons, reasons
    await phase_is(k, "podinfo", "Healthy")
