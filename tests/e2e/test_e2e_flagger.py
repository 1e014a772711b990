"""An imported Flagger Canary gates like Flagger, end to end: ``changeover import`` of a
Canary, its Deployment and a Prometheus MetricTemplate written as Flagger's docs write them;
a real ``changeover serve`` with the builtin router; real replicas of examples/app.py under
steady load; a real Prometheus (Debian's) scraping the router and answering the imported
query.

Given the imported Rollout (its pod template swapped for the example app, since the local
platform runs processes), when a canary that answers 500 is applied, then it never gets
past its first weight and is rolled back after ``threshold`` failed checks; when a healthy
one is applied, each weight waits for a passing check and it is promoted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from e2e_helpers import JSON
from e2e_load import BackgroundLoad
from e2e_serve import Serve
from e2e_specs import example_rollout, write_rollout

from tests import prometheus_helpers

pytestmark = pytest.mark.slow

# Flagger's docs (docs/gitbook/usage/metrics.md, "Prometheus"), the query over the router's
# own counters instead of Istio's: the share of non-5xx answers, in percent.
FLAGGER = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata: {{labels: {{app: podinfo}}}}
    spec:
      containers:
        - name: podinfod
          image: ghcr.io/stefanprodan/podinfo:6.0.1
          ports: [{{containerPort: 9898, name: http}}]
---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {{name: not-found-percentage}}
spec:
  provider:
    type: prometheus
    address: {prometheus}
  query: |
    sum(rate(changeover_requests_total{{
      rollout="{{{{ target }}}}",code!="5xx"}}[{{{{ interval }}}}]))
    / sum(rate(changeover_requests_total{{rollout="{{{{ target }}}}"}}[{{{{ interval }}}}]))
    * 100
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo}}
spec:
  provider: istio
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  service: {{port: 9898}}
  analysis:
    interval: 10s
    threshold: 2
    maxWeight: 100
    stepWeight: 50
    metrics:
      - name: success rate
        templateRef: {{name: not-found-percentage}}
        thresholdRange: {{min: 99}}
        interval: 15s
"""


@pytest.fixture
def prometheus(serve: Serve, tmp_path: Path) -> Iterator[str]:
    with prometheus_helpers.running(tmp_path / "prom", serve.port) as url:
        yield url


def _imported(serve: Serve, tmp_path: Path, prometheus: str) -> JSON:
    """``changeover import`` of the Flagger manifests, made runnable on the local platform."""
    source = tmp_path / "flagger.yaml"
    source.write_text(FLAGGER.format(prometheus=prometheus))
    out = serve.cli("import", str(source))
    assert out.code == 0, str(out)
    (rollout,) = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "Rollout"]
    local = example_rollout("canary", name="podinfo", version="v1", mark=serve.mark, replicas=2)
    rollout["spec"]["template"] = local["spec"]["template"]
    rollout["spec"]["service"] = local["spec"]["service"]
    del rollout["spec"]["traffic"]  # the istio VirtualService: the builtin router here
    return rollout


def _version(doc: JSON, version: str, error_rate: str) -> JSON:
    new: JSON = yaml.safe_load(yaml.safe_dump(doc))
    command = new["spec"]["template"]["command"]
    command[command.index("--version") + 1] = version
    new["spec"]["template"]["env"]["ERROR_RATE"] = error_rate
    return new


def test_imported_flagger_canary_failing_rolls_back_and_healthy_is_promoted(
    serve: Serve, prometheus: str, tmp_path: Path
) -> None:
    v1 = _imported(serve, tmp_path, prometheus)
    steps = v1["spec"]["strategy"]["canary"]["steps"]
    assert steps == [{"setWeight": 50}, {"check": {}}, {"setWeight": 100}, {"check": {}}]
    spec = write_rollout(tmp_path / "podinfo.yaml", _version(v1, "v1", "0"))
    assert serve.apply(spec, "--wait").code == 0
    url = serve.status("podinfo")["endpoint"]

    with BackgroundLoad(url, rate=40) as load:
        load.wait_for("1", 40)
        # A canary answering 500: two failed checks (threshold 2), never past 50%.
        write_rollout(spec, _version(v1, "v2", "1"))
        bad = serve.cli("apply", "-f", str(spec), "--wait", "--timeout", "120", timeout=150)
        assert bad.code == 1, str(bad)
        status = serve.status("podinfo")
        assert status["phase"] == "Aborted" and status["stableRevision"] == 1, status
        assert "2 failed checks reached the threshold 2" in status["message"], status
        assert status["weights"] == {"1": 100}
        got = serve.cli("get", "podinfo", "-o", "json", check=True).json
        reasons = [e["reason"] for e in got["events"]]
        assert "CheckFailed" in reasons and "CheckPassed" not in reasons, reasons

        # A healthy canary: one passing check per weight, then promoted.
        write_rollout(spec, _version(v1, "v3", "0"))
        started = time.monotonic()
        good = serve.cli("apply", "-f", str(spec), "--wait", "--timeout", "120", timeout=150)
        took = time.monotonic() - started
        assert good.code == 0, str(good)
        status = serve.status("podinfo")
        assert status["phase"] == "Healthy" and status["stableRevision"] == 3, status
        load.wait_for("3", 40)
        report = load.stop()
    # Never promoted: no answer from v2 once v3 took over; and it was never at 100%.
    assert "2" not in report.timeline[-1]
    assert took >= 20, f"two checks of 10s each cannot pass in {took:.1f}s"
