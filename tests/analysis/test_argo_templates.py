"""AnalysisTemplates shaped the way Argo Rollouts' documentation, examples and end-to-end
tests write them (tests/fixtures/argo_templates: our own manifests, each naming the Argo
file whose shape it follows).

Given each file as an Argo user would write it, when it goes through ``changeover import``
then ``changeover lint``, then it is accepted, and what could not be carried over is named
by file and field (a Kubernetes Secret reference is carried, read when a run starts on
Kubernetes). Where a template can run here (web against a local HTTP server, a Job as a
local command) it runs through the controller's analysis runner and ends in the phase Argo
would give it. The Prometheus ones run in test_prometheus.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from analysis_helpers import ARGO_TEMPLATES, HttpServer, Request, TemplateRunner, argo_templates

from changeover import importers, validation

FIXTURES = sorted(p.name for p in ARGO_TEMPLATES.glob("*.yaml"))


def test_there_are_enough_of_them() -> None:
    assert len(FIXTURES) >= 6
    for name in FIXTURES:
        assert "shaped after argoproj/argo-rollouts" in (ARGO_TEMPLATES / name).read_text()


@pytest.mark.parametrize("name", FIXTURES)
def test_each_imports_and_lints_clean(name: str, tmp_path: Path) -> None:
    result = importers.import_path(str(ARGO_TEMPLATES / name))
    kinds = {doc["kind"] for doc in result.documents}
    assert kinds == {"AnalysisTemplate"}, kinds
    out = tmp_path / name
    out.write_text(yaml.safe_dump_all(result.documents, sort_keys=False))
    problems = [p for p in validation.lint(str(out)) if p.severity != "warning"]
    assert problems == [], [str(p) for p in problems]
    for note in result.notes:  # anything not carried over says where and why
        assert note.source.endswith(name)


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "changeover.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_round_trip_carries_the_secret_reference(tmp_path: Path) -> None:
    source = ARGO_TEMPLATES / "web-args-example.yaml"
    imported = cli("import", str(source))
    assert imported.returncode == 0, imported.stderr
    # Read from the Secret when the run starts, as Argo does: no hint to paste the secret.
    assert "secretKeyRef" not in imported.stderr
    (doc,) = yaml.safe_load_all(imported.stdout)
    assert "secretKeyRef" in doc["spec"]["args"][4]["valueFrom"]
    out = tmp_path / "args-example.yaml"
    out.write_text(imported.stdout)
    linted = cli("lint", str(out))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "Traceback" not in linted.stderr + imported.stderr


@pytest.fixture
async def runs(tmp_path: Path) -> AsyncIterator[TemplateRunner]:
    runner = TemplateRunner(tmp_path / "changeover.db")
    yield runner
    await runner.close()


async def test_web_background_runs_until_stopped_and_reads_the_whole_body(
    runs: TemplateRunner,
) -> None:
    """Like test/e2e's web-background: interval 8s, no count, jsonPath "{$.}",
    result.platform."""
    version = {"major": "1", "minor": "29", "platform": "linux/amd64"}
    server = await HttpServer(answer=lambda _req: (200, version)).start()
    try:
        (doc,) = argo_templates("web-background.yaml")
        # The template asks the Kubernetes API server; here a local one answers the same.
        doc["spec"]["metrics"][0]["provider"]["web"]["url"] = server.url("/version")
        name = runs.put(doc)
        runs.start("good", name, {})
        await runs.measure()
        await runs.measure(8)
        assert runs.seen("good").phase == "Running"  # no count: until the rollout stops it
        runs.runner.stop("good")
        assert runs.seen("good").phase == "Successful"
        assert [r.path for r in server.requests] == ["/version", "/version"]

        version["platform"] = "linux/arm64"
        runs.start("bad", name, {})
        await runs.measure(8)
        seen = runs.seen("bad")
        assert seen.phase == "Failed"
        assert "successCondition 'result.platform == 'linux/amd64'' is false" in seen.message
    finally:
        await server.stop()


async def test_web_args_example_substitutes_args_and_compares_a_string(
    runs: TemplateRunner,
) -> None:
    """Like docs/features/analysis.md's args-example: the secret is given as an arg here."""

    def answer(req: Request) -> tuple[int, Any]:
        ok = req.headers.get("x-api-key") == "s3cret" and "app=guestbook" in req.path
        return 200, {"verdict": {"pass": "yes" if ok else "no"}}

    server = await HttpServer(answer=answer).start()
    try:
        (doc,) = argo_templates("web-args-example.yaml")
        name = runs.put(doc)
        args = {"app": "guestbook", "baseline-hash": "1", "candidate-hash": "2"}
        runs.start("r", name, {**args, "endpoint": server.url("/measure"), "token": "s3cret"})
        await runs.measure()
        assert runs.seen("r").phase == "Successful"  # no interval: one measurement
        assert server.requests[0].path == "/measure?app=guestbook"

        runs.start("wrong-token", name, {**args, "endpoint": server.url("/"), "token": "x"})
        await runs.measure()
        assert runs.seen("wrong-token").phase == "Failed"
    finally:
        await server.stop()


async def test_the_cluster_template_job_passes(runs: TemplateRunner) -> None:
    """Like examples/cluster-analysis-templates.yaml: a Job `sh -c true`, count 1."""
    (doc,) = argo_templates("cluster-always-pass.yaml")
    runs.start("r", runs.put(doc), {})
    await runs.measure()
    assert runs.seen("r").phase == "Successful"


async def test_the_sleep_job_takes_count_and_exit_code_from_args(runs: TemplateRunner) -> None:
    """Like test/e2e's sleep-job: count "{{args.repeat}}", `sleep N; exit CODE`."""
    (doc,) = argo_templates("job-sleep-args.yaml")
    name = runs.put(doc)
    runs.start("pass", name, {"seconds": "0"})
    await runs.measure()
    assert runs.seen("pass").phase == "Successful"
    # count 2 with no interval: Argo refuses the run, and so do we (it would never end)
    runs.start("twice", name, {"seconds": "0", "repeat": "2"})
    seen = runs.seen("twice")
    assert seen.phase == "Error" and "count: 2 measurements need an interval" in seen.message

    runs.start("fail", name, {"seconds": "0", "code": "3"})
    await runs.measure()
    seen = runs.seen("fail")
    assert seen.phase == "Failed" and "1 failed > failureLimit 0" in seen.message


async def test_max_failures_is_read_as_failure_limit(runs: TemplateRunner) -> None:
    """Like examples/analysis-templates.yaml's `pass`: `steady` has maxFailures: 2, the old
    failureLimit."""
    docs = {d["metadata"]["name"]: d for d in argo_templates("job-analysis-templates.yaml")}
    metric = docs["steady"]["spec"]["metrics"][0]
    assert metric.get("failureLimit") == 2 and "maxFailures" not in metric
    runs.start("r", runs.put(docs["steady"]), {})
    await runs.measure()
    await runs.measure(7)
    runs.runner.stop("r")
    assert runs.seen("r").phase == "Successful"
