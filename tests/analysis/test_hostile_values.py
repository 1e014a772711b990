"""Hostile metric values and answers through the real analysis runner and a real endpoint:
whatever a provider returns (a 400-digit integer, NaN, JSON nested thousands deep, a body of
megabytes or one that never ends), the measurement is taken once per interval and recorded
(an Error when it cannot be judged); the run never stays Pending while the endpoint is
polled in a loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from analysis_helpers import HttpServer, Request

from changeover.analysis import assess
from changeover.analysis.providers import base, capped, prometheus
from changeover.clock import FakeClock
from changeover.engine import actions
from changeover.runners import webhook_runner
from changeover.runners.analysis_runner import AnalysisRunner
from changeover.runners.analysis_store import AnalysisStore
from changeover.spec import analysis as spec
from changeover.spec import models

ROLLOUT = models.Rollout.model_validate(
    {
        "metadata": {"name": "web"},
        "spec": {
            "template": {"command": ["app"]},
            "service": {"port": 8080},
            "strategy": {"canary": {}},
        },
    }
)


class Harness:
    """The controller's analysis runner on a fake clock, measuring one web metric."""

    def __init__(self, path: Path, server: HttpServer) -> None:
        self.clock = FakeClock(1000.0)
        self.store = AnalysisStore(path)
        self.woken = asyncio.Event()
        self.server = server
        self.runner = AnalysisRunner(store=self.store, clock=self.clock, wake=self.woken.set)

    def start(self, condition: str = "result < 0.05", **web: Any) -> None:
        metric = {
            "name": "m",
            "interval": "5s",
            "count": 3,
            "successCondition": condition,
            "provider": {"web": {"url": self.server.url("/m"), **web}},
        }
        analysis = spec.RolloutAnalysis.model_validate({"metrics": [metric]})
        action = actions.StartAnalysis(
            run_id="r", kind="step", analysis=analysis, revision=2, stable_revision=1
        )
        self.runner.start(action, rollout=ROLLOUT)

    async def measure(self, seconds: float = 0.0) -> None:
        self.clock.advance(seconds)
        self.woken.clear()
        self.runner.step()
        await asyncio.wait_for(self.woken.wait(), 5)

    def measurements(self) -> list[dict[str, Any]]:
        doc = self.store.run("r")
        assert doc is not None
        return list(doc["results"]["m"]["measurements"])


@pytest.fixture
async def answer() -> AsyncIterator[list[Callable[[Request], tuple[int, Any]]]]:
    """The endpoint's answer, set by the test (``answer[0] = lambda req: ...``)."""
    holder: list[Callable[[Request], tuple[int, Any]]] = [lambda _r: (200, 0.0)]
    yield holder


@pytest.fixture
async def h(
    tmp_path: Path, answer: list[Callable[[Request], tuple[int, Any]]]
) -> AsyncIterator[Harness]:
    server = await HttpServer(answer=lambda req: answer[0](req)).start()
    harness = Harness(tmp_path / "changeover.db", server)
    yield harness
    await harness.runner.close()
    harness.store.close()
    await server.stop()


async def test_a_400_digit_integer_is_an_error_measurement_and_not_polled_in_a_loop(
    h: Harness, answer: list[Callable[[Request], tuple[int, Any]]]
) -> None:
    answer[0] = lambda _r: (200, 10**400)
    h.start("result / 100 < 0.05")
    await h.measure()
    [first] = h.measurements()
    assert first["phase"] == "Error"
    assert "too large" in first["message"]
    assert "about 401 digits" in first["message"]  # shown, not printed in full
    for _ in range(5):  # not due again before the interval: the endpoint is left alone
        h.runner.step()
        await asyncio.sleep(0.05)
    assert len(h.server.requests) == 1
    await h.measure(5)
    assert [m["phase"] for m in h.measurements()] == ["Error", "Error"]
    seen = h.runner.observe("r")
    assert seen is not None and seen.phase == "Running"


async def test_json_nested_hundreds_deep_is_judged_and_stored_as_a_preview(
    h: Harness, answer: list[Callable[[Request], tuple[int, Any]]]
) -> None:
    deep = b"[" * 900 + b"1" + b"]" * 900  # parses, but is deeper than Python's recursion
    answer[0] = lambda _r: (200, deep)
    h.start("result > 0")
    await h.measure()
    [first] = h.measurements()
    assert first["phase"] == "Error"
    assert "compares two numbers" in first["message"]
    assert isinstance(first["value"], str) and first["value"].startswith("[[[[")


async def test_json_nested_100000_deep_is_an_error_that_says_so(
    h: Harness, answer: list[Callable[[Request], tuple[int, Any]]]
) -> None:
    answer[0] = lambda _r: (200, b"[" * 100_000 + b"]" * 100_000)
    h.start()
    await h.measure()
    [first] = h.measurements()
    assert first["phase"] == "Error"
    assert "not JSON (nested too deeply)" in first["message"]


async def test_an_integer_of_5000_digits_is_an_error_that_says_so(
    h: Harness, answer: list[Callable[[Request], tuple[int, Any]]]
) -> None:
    answer[0] = lambda _r: (200, b"1" + b"0" * 5000)
    h.start()
    await h.measure()
    [first] = h.measurements()
    assert first["phase"] == "Error"
    assert "not JSON (Exceeds the limit (4300 digits)" in first["message"]


@pytest.mark.parametrize(
    ("body", "condition", "phase", "stored"),
    [
        (b"Infinity", "result < 0.05", "Failed", "+Inf"),
        (b"-Infinity", "result < 0.05", "Successful", "-Inf"),
        (b"NaN", "isNaN(result) || result < 0.05", "Successful", "NaN"),
        (b"NaN", "result < 0.05", "Failed", "NaN"),
        (b"Infinity", "asInt(result) > 0", "Error", "+Inf"),
        (b"1e308", "result * 10 > 0", "Successful", 1e308),  # inf in floats, no exception
    ],
)
async def test_non_finite_floats_are_judged_and_stored(
    h: Harness,
    answer: list[Callable[[Request], tuple[int, Any]]],
    body: bytes,
    condition: str,
    phase: str,
    stored: Any,
) -> None:
    answer[0] = lambda _r: (200, body)
    h.start(condition)
    await h.measure()
    [first] = h.measurements()
    assert (first["phase"], first["value"]) == (phase, stored)
    json.dumps(h.store.run("r"), allow_nan=False)  # what status serves stays valid JSON


async def test_a_body_over_the_cap_is_an_error_naming_the_cap(
    h: Harness, answer: list[Callable[[Request], tuple[int, Any]]]
) -> None:
    answer[0] = lambda _r: (200, [0.0] * 400_000)  # about 2 MB of JSON
    h.start("len(result) > 0")
    await h.measure()
    [first] = h.measurements()
    assert first["phase"] == "Error"
    assert f"response larger than {capped.MAX_RESPONSE_BYTES} bytes" in first["message"]
    assert "maxResponseBytes" in first["message"]


async def test_max_response_bytes_raises_the_cap(
    h: Harness, answer: list[Callable[[Request], tuple[int, Any]]]
) -> None:
    answer[0] = lambda _r: (200, [0.0] * 400_000)
    h.start("len(result) > 0", maxResponseBytes=4 << 20)
    await h.measure()
    [first] = h.measurements()
    assert first["phase"] == "Successful"


async def _endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers 200 with a chunked body that never ends."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    chunk = b"[" + b"0," * 8000
    try:
        for _ in range(10_000):  # bounded: 160 MB at most, the cap stops it at 1 MiB
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def test_a_body_that_never_ends_is_cut_at_the_cap() -> None:
    server = await asyncio.start_server(_endless, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ctx = base.MeasureContext(
        rollout="web", namespace="default", stable_revision=1, canary_revision=2, now=0.0
    )
    try:
        provider = base.create("web")
        with pytest.raises(base.ProviderError, match="response larger than 1048576 bytes"):
            await asyncio.wait_for(
                provider.measure({"url": f"http://127.0.0.1:{port}/"}, args={}, context=ctx), 10
            )
        with pytest.raises(base.ProviderError, match="response larger than 1048576 bytes"):
            await asyncio.wait_for(
                prometheus.PrometheusClient(
                    prometheus.parse_config({"address": f"http://127.0.0.1:{port}", "query": "up"})
                ).run(),
                10,
            )
    finally:
        server.close()


async def test_a_prometheus_answer_over_the_cap_is_an_error() -> None:
    big = {"status": "success", "data": {"resultType": "string", "result": [0, "x" * 2_000_000]}}
    server = await HttpServer(answer=lambda _r: (200, big)).start()
    try:
        config = {"address": server.url(""), "query": "up"}
        with pytest.raises(base.ProviderError, match="response larger than 1048576 bytes"):
            await prometheus.PrometheusClient(prometheus.parse_config(config)).run()
        raised = prometheus.parse_config({**config, "maxResponseBytes": 4 << 20})
        assert (await prometheus.PrometheusClient(raised).run()).scalar == "x" * 2_000_000
    finally:
        await server.stop()


def test_max_response_bytes_must_be_a_positive_whole_number() -> None:
    assert base.problems("web", {"url": "http://x/", "maxResponseBytes": 0})
    assert base.problems("web", {"url": "http://x/", "maxResponseBytes": "1MB"})
    assert not base.problems("web", {"url": "http://x/", "maxResponseBytes": 10})
    with pytest.raises(ValueError, match="maxResponseBytes"):
        prometheus.parse_config({"address": "http://p", "query": "up", "maxResponseBytes": -1})


async def test_a_webhook_answer_over_the_cap_fails_the_call_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhook_runner, "RETRY_PAUSE_SECONDS", 0.01)
    server = await HttpServer(answer=lambda _r: (200, "x" * 2_000_000)).start()
    runner = webhook_runner.WebhookRunner()
    try:
        hook = spec.Webhook.model_validate(
            {"name": "gate", "type": "confirm-rollout", "url": server.url("/gate")}
        )
        ok, why = await runner.post(hook, {"name": "web"})
        assert not ok
        assert why == f"response larger than {capped.MAX_RESPONSE_BYTES} bytes"
    finally:
        await runner.close()
        await server.stop()


def test_judging_never_raises_whatever_the_value() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    values = [10**400, -(10**400), deep, {"a": deep}, float("nan"), float("inf"), "x" * 10**6]
    for value in values:
        for condition in ("result / 2 > 1", "result == result", "isNaN(result)", "len(result)"):
            phase, message = assess.judge(value, success=condition, failure=None)
            assert phase in ("Successful", "Failed", "Error", "Inconclusive")
            assert len(message) < 1000


async def test_a_background_run_with_only_errors_stopped_is_an_error_run(h: Harness) -> None:
    """Issue 13: a Flagger-style background analysis whose every measurement failed to be
    taken (its endpoint answers 503) was recorded Successful when the rollout stopped it."""
    h.server.answer = lambda _r: (503, {"error": "down"})
    metric = {
        "name": "m",
        "interval": "5s",
        "successCondition": "result < 0.05",
        "provider": {"web": {"url": h.server.url("/m")}},
    }
    analysis = spec.RolloutAnalysis.model_validate({"metrics": [metric]})
    action = actions.StartAnalysis(
        run_id="bg", kind="background", analysis=analysis, revision=2, stable_revision=1
    )
    h.runner.start(action, rollout=ROLLOUT)
    for _ in range(3):
        await h.measure(5)
    h.runner.stop("bg")
    seen = h.runner.observe("bg")
    assert seen is not None
    assert (seen.phase, seen.message) == (
        "Error",
        "metric m Error (GET " + h.server.url("/m") + ': HTTP 503: {"error": "down"}); '
        "stopped after 3 measurements, all errors: an Error is never a success",
    )


async def test_a_measurement_that_cannot_be_recorded_is_not_retaken_on_every_tick(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever else breaks after a measurement (here: folding it into the run, as the
    400-digit integer once did), the metric is held back for the error retry pause instead
    of being measured again on every tick."""

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a bug")

    h.start()
    monkeypatch.setattr(assess, "record", broken)
    for _ in range(10):
        h.runner.step()
        await asyncio.sleep(0.05)
    assert len(h.server.requests) == 1
    h.clock.advance(spec.ERROR_RETRY_SECONDS)
    h.runner.step()
    for _ in range(100):
        if len(h.server.requests) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(h.server.requests) == 2


def test_an_interval_of_zero_is_refused_at_lint_and_at_run_start(h: Harness) -> None:
    """interval 0 measured on every controller tick: the polling loop by configuration."""
    from changeover.spec import load
    from changeover.validation import analysis_checks

    metric = {
        "name": "m",
        "interval": "{{args.every}}",
        "count": 3,
        "provider": {"web": {"url": h.server.url("/m")}},
    }
    doc = {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "t"},
        "spec": {"args": [{"name": "every"}], "metrics": [{**metric, "interval": "0s"}]},
    }
    loaded = [load.LoadedDocument(source="t.yaml", index=0, data=doc)]
    _, problems, _ = analysis_checks.parse_templates(loaded)
    assert [(p.path, p.message.split(":")[0]) for p in problems] == [
        ("spec.metrics[0].interval", "expected a positive duration such as 30s")
    ]
    analysis = spec.RolloutAnalysis.model_validate(
        {"metrics": [metric], "args": [{"name": "every", "value": "0"}]}
    )
    h.runner.start(
        actions.StartAnalysis(
            run_id="z", kind="step", analysis=analysis, revision=2, stable_revision=1
        ),
        rollout=ROLLOUT,
    )
    seen = h.runner.observe("z")
    assert seen is not None and seen.phase == "Error"
    assert "interval: expected a positive duration" in seen.message
