"""The webhook runner against a real local HTTP server: what each Flagger type does with
2xx, non-2xx and silence, and the payload it sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from analysis_helpers import HttpServer, Request

from changeover.engine import actions
from changeover.runners import webhook_runner
from changeover.runners.webhook_runner import WebhookRunner
from changeover.spec import analysis as spec
from changeover.spec import models


class Receiver:
    """Answers each path with the status the test sets (default 200)."""

    def __init__(self) -> None:
        self.status: dict[str, int] = {}
        self.server = HttpServer(answer=self.answer)

    def answer(self, req: Request) -> tuple[int, Any]:
        return self.status.get(req.path, 200), {"ok": True}

    def posts(self, path: str) -> list[Any]:
        return [r.json for r in self.server.requests if r.path == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.server.start()
    yield r
    await r.server.stop()


@pytest.fixture
async def runner(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WebhookRunner]:
    monkeypatch.setattr(webhook_runner, "RETRY_PAUSE_SECONDS", 0.01)
    r = WebhookRunner()
    yield r
    await r.close()


def call(receiver: Receiver, kind: str, path: str, **fields: Any) -> actions.CallWebhook:
    hook = spec.Webhook.model_validate(
        {
            "name": path.strip("/"),
            "type": kind,
            "url": receiver.server.url(path),
            "interval": "0.05s",
            "metadata": {"team": "search"},
            **fields,
        }
    )
    return actions.CallWebhook(
        call_id=f"web-2-1-{kind}-{hook.name}", webhook=hook, phase="Progressing", revision=2
    )


async def settled(runner: WebhookRunner, call_id: str, *, within: float = 5.0) -> str:
    for _ in range(int(within / 0.02)):
        seen = runner.observe(call_id)
        if seen is not None and seen.state != "waiting":
            return seen.state
        await asyncio.sleep(0.02)
    seen = runner.observe(call_id)
    return seen.state if seen else "gone"


async def test_the_payload_is_flaggers(receiver: Receiver, runner: WebhookRunner) -> None:
    action = call(receiver, "pre-rollout", "/acceptance")
    runner.call(action, rollout="web", namespace="default")
    assert await settled(runner, action.call_id) == "passed"
    assert receiver.posts("/acceptance") == [
        {
            "name": "web",
            "namespace": "default",
            "phase": "Progressing",
            "revision": 2,
            "type": "pre-rollout",
            "metadata": {"team": "search"},
        }
    ]


async def test_pre_rollout_retries_then_fails(receiver: Receiver, runner: WebhookRunner) -> None:
    receiver.status["/acceptance"] = 500
    action = call(receiver, "pre-rollout", "/acceptance", retries=2)
    runner.call(action, rollout="web", namespace="default")
    assert await settled(runner, action.call_id) == "failed"
    assert len(receiver.posts("/acceptance")) == 3
    seen = runner.observe(action.call_id)
    assert seen is not None and seen.message == 'HTTP 500: {"ok": true} after 3 calls'


async def test_a_confirm_gate_polls_until_it_gets_a_2xx(
    receiver: Receiver, runner: WebhookRunner
) -> None:
    receiver.status["/approve"] = 403
    action = call(receiver, "confirm-promotion", "/approve")
    runner.call(action, rollout="web", namespace="default")
    await asyncio.sleep(0.3)
    seen = runner.observe(action.call_id)
    assert seen is not None and seen.state == "waiting" and "HTTP 403" in seen.message
    assert len(receiver.posts("/approve")) >= 3  # asked again every interval
    receiver.status["/approve"] = 200
    assert await settled(runner, action.call_id) == "passed"


async def test_a_silent_endpoint_is_a_failed_check(
    receiver: Receiver, runner: WebhookRunner
) -> None:
    receiver.server.delay = 1.0
    action = call(receiver, "pre-rollout", "/slow", timeoutSeconds=0.1)
    runner.call(action, rollout="web", namespace="default")
    assert await settled(runner, action.call_id) == "failed"
    seen = runner.observe(action.call_id)
    assert seen is not None and "no answer within 0.1s" in seen.message


async def test_rollout_hooks_run_until_failures_pass_the_limit(
    receiver: Receiver, runner: WebhookRunner
) -> None:
    action = call(receiver, "rollout", "/load", failureLimit=2)
    runner.call(action, rollout="web", namespace="default")
    await asyncio.sleep(0.3)
    seen = runner.observe(action.call_id)
    assert seen is not None and seen.state == "waiting" and "0 failed" in seen.message
    receiver.status["/load"] = 502
    assert await settled(runner, action.call_id) == "failed"
    seen = runner.observe(action.call_id)
    assert seen is not None and "3 failed calls > failureLimit 2" in seen.message


async def test_a_rollout_hook_in_a_check_is_called_once_and_its_answer_is_the_state(
    receiver: Receiver, runner: WebhookRunner
) -> None:
    import dataclasses

    ok = dataclasses.replace(call(receiver, "rollout", "/load"), once=True)
    runner.call(ok, rollout="web", namespace="default")
    assert await settled(runner, ok.call_id) == "passed"
    await asyncio.sleep(0.2)  # a polled rollout hook would have been called again by now
    assert len(receiver.posts("/load")) == 1
    receiver.status["/load"] = 503
    bad = dataclasses.replace(ok, call_id="web-2-1-rollout-check1-load")
    runner.call(bad, rollout="web", namespace="default")
    assert await settled(runner, bad.call_id) == "failed"
    assert receiver.posts("/load")[-1]["type"] == "rollout"


async def test_a_rollback_hook_answering_2xx_triggers(
    receiver: Receiver, runner: WebhookRunner
) -> None:
    receiver.status["/rollback"] = 404
    action = call(receiver, "rollback", "/rollback")
    runner.call(action, rollout="web", namespace="default")
    await asyncio.sleep(0.2)
    assert runner.observe(action.call_id).state == "waiting"  # type: ignore[union-attr]
    receiver.status["/rollback"] = 200
    assert await settled(runner, action.call_id) == "passed"


async def test_stop_ends_polling(receiver: Receiver, runner: WebhookRunner) -> None:
    receiver.status["/approve"] = 403
    action = call(receiver, "confirm-rollout", "/approve")
    runner.call(action, rollout="web", namespace="default")
    await asyncio.sleep(0.2)
    runner.stop(action.call_id)
    count = len(receiver.posts("/approve"))
    await asyncio.sleep(0.3)
    assert len(receiver.posts("/approve")) == count and runner.observe(action.call_id) is None


async def test_event_hooks_get_every_event(receiver: Receiver, runner: WebhookRunner) -> None:
    rollout = models.Rollout.model_validate(
        {
            "metadata": {"name": "web"},
            "spec": {
                "template": {"command": ["app"]},
                "service": {"port": 8080},
                "strategy": {"canary": {}},
                "webhooks": [
                    {"name": "audit", "type": "event", "url": receiver.server.url("/events")}
                ],
            },
        }
    )
    events = [
        {"reason": "RolloutUpdated", "message": "updated to revision 2", "revision": 2},
        {"reason": "RolloutAborted", "message": "Rollout aborted: ...", "revision": 2},
    ]
    runner.events(rollout, "Aborted", events)
    for _ in range(100):
        if len(receiver.posts("/events")) == 2:
            break
        await asyncio.sleep(0.02)
    reasons = sorted(p["metadata"]["eventReason"] for p in receiver.posts("/events"))
    assert reasons == ["RolloutAborted", "RolloutUpdated"]
    assert {p["phase"] for p in receiver.posts("/events")} == {"Aborted"}
