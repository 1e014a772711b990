"""examples/model_service.py as a real process: the timings, drift and cut streams a model
rollout's analysis and shadow comparison are tested against."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest
from example_procs import AppProcess, StartApp

pytestmark = pytest.mark.slow

PROMPT = {"messages": [{"role": "user", "content": "why is the sky blue?"}]}


def start(start_app: StartApp, *args: str) -> AppProcess:
    return start_app(*args, script="model_service.py")


def chat(app: AppProcess, **fields: object) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(PROMPT | fields))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def events(body: bytes) -> list[str]:
    return [e for e in body.decode().split("\n\n") if e]


def streamed_text(body: bytes) -> str:
    parts = []
    for event in events(body):
        if event.startswith("data: {"):
            for choice in json.loads(event.removeprefix("data: "))["choices"]:
                parts.append(choice["delta"].get("content", ""))
    return "".join(parts)


def test_stream_timings_comment_usage_and_done(start_app: StartApp) -> None:
    knobs = ("--ttft-ms", "300", "--token-ms", "40", "--tokens", "5", "--keepalive-comment", "1")
    app = start(start_app, *knobs)
    sock = socket.create_connection(("127.0.0.1", app.port), timeout=10)
    body = json.dumps(PROMPT | {"stream": True, "stream_options": {"include_usage": True}})
    t0 = time.monotonic()
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body.encode())
    )
    first = sock.recv(65536)  # the head and the comment come 300 ms before the first token
    assert b"text/event-stream" in first and b": keep-alive" in first and b"data:" not in first
    received = b""
    while not received.endswith(b"0\r\n\r\n"):
        data = sock.recv(65536)
        assert data, "the stream ended without its last chunk"
        received += data
    elapsed = time.monotonic() - t0
    sock.close()
    assert 0.3 + 4 * 0.04 <= elapsed < 2.0
    text = received.decode()
    usage = [json.loads(line[6:]) for line in text.split("\r\n") if '"usage"' in line]
    assert usage[0]["usage"]["completion_tokens"] == 5
    assert "data: [DONE]" in text


def test_same_prompt_same_answer_across_versions_unless_drifting(start_app: StartApp) -> None:
    v1 = start(start_app, "--version", "v1", "--ttft-ms", "0", "--token-ms", "0")
    v2 = start(start_app, "--version", "v2", "--ttft-ms", "0", "--token-ms", "0")
    v3 = start(start_app, "--version", "v3", "--ttft-ms", "0", "--drift", "1")
    whole = json.loads(chat(v1)[1])
    answer = whole["choices"][0]["message"]["content"]
    assert whole["usage"]["completion_tokens"] == len(answer.split()) == 16
    assert streamed_text(chat(v2, stream=True)[1]) == answer
    assert json.loads(chat(v2)[1])["choices"][0]["message"]["content"] == answer
    assert streamed_text(chat(v3, stream=True, max_tokens=16)[1]) != answer


def test_cut_streams_end_without_done(start_app: StartApp) -> None:
    app = start(start_app, "--ttft-ms", "0", "--token-ms", "0", "--cut-rate", "1")
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(PROMPT | {"stream": True}))
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead) as cut:
        resp.read()
    assert b"[DONE]" not in cut.value.partial
    assert len([e for e in events(cut.value.partial) if e.startswith("data:")]) == 8


def test_bad_knobs_are_refused(start_app: StartApp) -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        start(start_app, "--drift", "1.5")
