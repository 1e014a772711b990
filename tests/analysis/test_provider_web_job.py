"""The web provider against a real local HTTP server, the job provider with real processes."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from analysis_helpers import HttpServer, Request

from changeover.analysis import jsonpath
from changeover.analysis.providers import base, job, web

CTX = base.MeasureContext(
    rollout="web", namespace="default", stable_revision=1, canary_revision=2, now=0.0
)


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    def answer(req: Request) -> tuple[int, Any]:
        if req.path.startswith("/broken"):
            return 503, {"error": "down"}
        if req.path.startswith("/echo"):
            return 200, {"method": req.method, "headers": req.headers, "body": req.body.decode()}
        return 200, {"data": {"ok": True, "p99": 0.12, "items": [{"v": 1}, {"v": 2}]}}

    srv = await HttpServer(answer=answer).start()
    yield srv
    await srv.stop()


async def fetch(config: dict[str, Any]) -> base.ProviderResult:
    return await web.WebProvider().measure(config, args={}, context=CTX)


async def test_web_selects_with_a_json_path(server: HttpServer) -> None:
    assert (await fetch({"url": server.url("/health"), "jsonPath": "{$.data.ok}"})).value is True
    assert (await fetch({"url": server.url("/"), "jsonPath": "$.data.p99"})).value == 0.12
    items = await fetch({"url": server.url("/"), "jsonPath": "$.data.items[*].v"})
    assert items.value == [1, 2]
    whole = await fetch({"url": server.url("/")})
    assert whole.value["data"]["ok"] is True


async def test_web_sends_method_headers_and_body(server: HttpServer) -> None:
    result = await fetch(
        {
            "url": server.url("/echo"),
            "method": "POST",
            "headers": [{"key": "Authorization", "value": "Bearer t0ken"}],
            "jsonBody": {"check": "deep"},
        }
    )
    assert result.value["method"] == "POST"
    assert result.value["headers"]["authorization"] == "Bearer t0ken"
    assert result.value["body"] == '{"check": "deep"}'


async def test_web_failures_are_provider_errors(server: HttpServer) -> None:
    with pytest.raises(base.ProviderError, match="HTTP 503"):
        await fetch({"url": server.url("/broken")})
    with pytest.raises(base.ProviderError, match="no key 'nope'"):
        await fetch({"url": server.url("/"), "jsonPath": "$.data.nope"})
    server.delay = 5.0
    started = time.monotonic()
    with pytest.raises(base.ProviderError, match=r"no answer within 0\.2s"):
        await fetch({"url": server.url("/"), "timeoutSeconds": 0.2})
    assert time.monotonic() - started < 3  # the timeout, not the 5 s answer
    server.delay = 0.0
    with pytest.raises(base.ProviderError, match=re.escape("GET http://127.0.0.1:1/")):
        await fetch({"url": "http://127.0.0.1:1/"})  # nothing listens there


def test_web_lint_problems() -> None:
    assert web.problems({"url": "http://x/", "jsonPath": "{$.a}"}) == []
    assert web.problems({"url": "x", "jsonPath": "a.b", "method": "DELETE"}) == [
        "url: expected an http:// or https:// URL, got 'x'",
        "method: expected GET, POST or PUT, got 'DELETE'",
        "jsonPath: jsonPath must start with $ (got 'a.b')",
    ]


def test_json_path_forms() -> None:
    doc = {"a-b": {"c": [10, 20]}}
    assert jsonpath.select("$['a-b'].c[-1]", doc) == 20
    assert jsonpath.select('{$["a-b"].c[0]}', doc) == 10
    with pytest.raises(jsonpath.PathError, match="no index 5"):
        jsonpath.select("$['a-b'].c[5]", doc)


# --- job ---------------------------------------------------------------------------------------


async def run_job(config: dict[str, Any]) -> base.ProviderResult:
    return await job.JobProvider().measure(config, args={}, context=CTX)


async def test_exit_code_zero_passes_and_anything_else_fails() -> None:
    ok = await run_job({"command": [sys.executable, "-c", "print('smoke ok')"]})
    assert (ok.phase, ok.value) == ("Successful", 0) and "smoke ok" in ok.message
    bad = await run_job(
        {"command": [sys.executable, "-c", "import sys; print('503 from /health'); sys.exit(3)"]}
    )
    assert (bad.phase, bad.value) == ("Failed", 3)
    assert bad.message.endswith("exited with 3: 503 from /health")


async def test_the_job_sees_its_env_and_the_revisions(tmp_path: Path) -> None:
    script = "import os; print(os.environ['TARGET'], os.environ['CANARY_REVISION'], os.getcwd())"
    result = await run_job(
        {
            "command": [sys.executable, "-c", script],
            "env": {"TARGET": "canary"},
            "workingDir": str(tmp_path),
        }
    )
    assert result.message.endswith(f"canary 2 {tmp_path}")


async def test_a_job_past_its_timeout_is_killed_and_fails() -> None:
    started = time.monotonic()
    result = await run_job(
        {"command": [sys.executable, "-c", "import time; time.sleep(30)"], "timeoutSeconds": 0.5}
    )
    assert result.phase == "Failed" and "timed out after 0.5s" in result.message
    assert time.monotonic() - started < 5


async def test_a_job_that_cannot_start_is_an_error() -> None:
    with pytest.raises(base.ProviderError, match="cannot start"):
        await run_job({"command": ["/nonexistent/smoke-test"]})


async def test_cancelling_the_measurement_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # the job starts a grandchild; both must go when the run is stopped
    script = (
        "import subprocess, sys, time, pathlib;"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"pathlib.Path({str(pidfile)!r}).write_text(str(p.pid));"
        "time.sleep(60)"
    )
    task = asyncio.create_task(run_job({"command": [sys.executable, "-c", script]}))
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        await asyncio.sleep(0.05)
    grandchild = int(pidfile.read_text())
    assert psutil.pid_exists(grandchild)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie":
            break
        await asyncio.sleep(0.05)
    else:
        os.kill(grandchild, 9)
        raise AssertionError("the job's grandchild outlived the cancelled measurement")


async def test_argo_kubernetes_job_shape_runs_its_container_command_here() -> None:
    argo = {
        "metadata": {"labels": {"app": "smoke"}},
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": 30,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "smoke",
                            "image": "python:3.11",
                            "command": [sys.executable, "-c"],
                            "args": ["import os; print('hi', os.environ['WHO'])"],
                            "env": [{"name": "WHO", "value": "argo"}],
                        }
                    ],
                    "restartPolicy": "Never",
                }
            },
        },
    }
    result = await run_job(argo)
    assert result.phase == "Successful" and result.message.endswith("hi argo")
    assert job.problems({"spec": {"template": {}}}) == [
        "expected command: [...] or a Kubernetes Job (spec.template.spec.containers)"
    ]


def test_job_lint_problems() -> None:
    assert job.problems({"command": ["smoke.py"], "timeoutSeconds": 30}) == []
    assert job.problems({"command": "smoke.py --fast", "timeout": 3}) == [
        "unknown field 'timeout'; expected one of command, env, workingDir, timeoutSeconds",
        "command: expected an argv list such as [python3, smoke.py]",
    ]
