"""Phase-change notifications: the bodies (generic and Slack), and delivery to a real local
HTTP server that fails, stalls or refuses on cue. Delivery never raises."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from changeover.analysis import notify

CHANGE = notify.PhaseChange(
    rollout="checkout",
    phase="Degraded",
    previous="Progressing",
    message="analysis failed: error-rate High (score 0) <critical> & aborted",
    strategy="canary",
    revision=4,
    stable_revision=3,
    weights={3: 100, 4: 0},
    analysis={"phase": "Failed", "failing": ["error-rate"]},
    at=1_700_000_000.0,
)


def test_generic_body() -> None:
    assert notify.format_generic(CHANGE) == {
        "kind": "RolloutPhaseChanged",
        "rollout": "checkout",
        "namespace": "default",
        "phase": "Degraded",
        "previousPhase": "Progressing",
        "message": "analysis failed: error-rate High (score 0) <critical> & aborted",
        "strategy": "canary",
        "revision": 4,
        "stableRevision": 3,
        "weights": {"3": 100, "4": 0},
        "analysis": {"phase": "Failed", "failing": ["error-rate"]},
        "timestamp": "2023-11-14T22:13:20Z",
    }


def test_slack_body() -> None:
    msg = notify.format_slack(CHANGE)
    assert msg["text"] == (
        ":x: rollout *checkout* is Degraded (was Progressing): "
        "analysis failed: error-rate High (score 0) &lt;critical&gt; &amp; aborted"
    )
    section, facts, context = msg["blocks"]
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": msg["text"]}}
    assert [f["text"] for f in facts["fields"]] == [
        "*Phase*\nDegraded",
        "*Namespace*\ndefault",
        "*Strategy*\ncanary",
        "*Revision*\n4",
        "*Stable revision*\n3",
        "*Traffic*\nr3 100%, r4 0%",
    ]
    assert context["elements"][0]["text"] == "changeover · 2023-11-14T22:13:20Z"


def test_slack_body_of_a_bare_change() -> None:
    msg = notify.format_slack(notify.PhaseChange(rollout="web", phase="Healthy"))
    assert msg["text"] == ":white_check_mark: rollout *web* is Healthy"
    assert len(msg["blocks"]) == 2


@dataclass
class Hook:
    """A real HTTP server: answers each POST with the next scripted status (then 200);
    ``"stall"`` holds the request longer than any client timeout here."""

    script: list[int | str] = field(default_factory=list)
    received: list[tuple[dict[str, str], Any, float]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (ln.partition(":") for ln in head.split("\r\n")[1:] if ln)
                }
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                self.received.append((headers, json.loads(raw), time.monotonic()))
                step = self.script.pop(0) if self.script else 200
                if step == "stall":
                    await asyncio.sleep(5)
                    return
                extra = b"retry-after: 0.2\r\n" if step == 429 else b""
                writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 0\r\n%s\r\n" % (int(step), extra))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    h = Hook()
    server = await asyncio.start_server(h.serve, "127.0.0.1", 0)
    h.port = server.sockets[0].getsockname()[1]
    yield h
    server.close()


def target(url: str, **kw: Any) -> notify.Target:
    kw.setdefault("backoff", 0.01)
    return notify.Target(url=url, **kw)


async def test_delivers_the_slack_body_with_headers(hook: Hook) -> None:
    t = target(hook.url, format="slack", headers={"Authorization": "Bearer t0k"})
    assert await notify.send(CHANGE, t) is True
    headers, payload, _ = hook.received[0]
    assert payload == notify.format_slack(CHANGE)
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == "Bearer t0k"


async def test_retries_5xx_then_succeeds(hook: Hook) -> None:
    hook.script = [500, 503]
    assert await notify.send(CHANGE, target(hook.url)) is True
    assert len(hook.received) == 3


async def test_honours_retry_after_on_429(hook: Hook) -> None:
    hook.script = [429]
    assert await notify.send(CHANGE, target(hook.url)) is True
    (_, _, first), (_, _, second) = hook.received[0], hook.received[1]
    assert second - first >= 0.19


async def test_gives_up_after_the_retries_and_logs(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    hook.script = [502] * 10
    with caplog.at_level(logging.WARNING, logger="changeover.analysis.notify"):
        assert await notify.send(CHANGE, target(hook.url, retries=2)) is False
    assert len(hook.received) == 3
    assert "notification for rollout checkout (Degraded)" in caplog.text
    assert "HTTP 502" in caplog.text


async def test_a_4xx_is_not_retried(hook: Hook) -> None:
    hook.script = [404]
    assert await notify.send(CHANGE, target(hook.url)) is False
    assert len(hook.received) == 1


async def test_a_stalled_hook_times_out_and_is_retried(hook: Hook) -> None:
    hook.script = ["stall"]
    started = time.monotonic()
    assert await notify.send(CHANGE, target(hook.url, timeout=0.3)) is True
    assert len(hook.received) == 2 and time.monotonic() - started < 4.5  # not the 5 s stall


async def test_connection_refused_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="changeover.analysis.notify"):
        ok = await notify.send(CHANGE, target(f"http://127.0.0.1:{port}/", retries=1))
    assert ok is False and f"127.0.0.1:{port}" in caplog.text


async def test_notify_sends_only_to_targets_that_want_the_phase(hook: Hook) -> None:
    targets = notify.parse_targets(
        [
            {"url": hook.url, "format": "slack", "phases": ["Healthy"]},
            {"url": hook.url, "phases": ["Degraded", "Aborted"], "timeout": "2s"},
            {"url": hook.url},
        ]
    )
    assert await notify.notify(CHANGE, targets) == [True, True, True]
    kinds = sorted(payload.get("kind", "slack") for _, payload, _ in hook.received)
    assert kinds == ["RolloutPhaseChanged", "RolloutPhaseChanged"]
    assert targets[1].timeout == 2.0


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"url": "hooks.slack.com"}, r"notifications\[0\]\.url"),
        ({"url": "http://x", "format": "teams"}, r"notifications\[0\]\.format"),
        ({"url": "http://x", "timeout": "soon"}, "expected a duration"),
        ({"url": "http://x", "retries": -1}, "retries >= 0"),
    ],
)
def test_parse_targets_names_the_field(item: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        notify.parse_targets([item])
