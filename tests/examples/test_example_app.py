"""examples/app.py as a real process: what it answers, how it misbehaves on request, how it
stops. The local platform, the router and the demo all lean on these behaviours."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import threading
import time

import pytest
from example_procs import AppProcess, StartApp

pytestmark = pytest.mark.slow


def connect(app: AppProcess) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)


def get(app: AppProcess, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = connect(app)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_reports_its_version_and_pid(start_app: StartApp) -> None:
    app = start_app("--version", "v2", "--model", "llama-3-8b")
    status, headers, body = get(app, "/")
    assert status == 200
    assert json.loads(body) == {"version": "v2", "pid": app.proc.pid, "model": "llama-3-8b"}
    assert headers["x-app-version"] == "v2"
    assert headers["content-length"] == str(len(body))
    assert headers["content-type"] == "application/json"


def test_version_and_faults_from_the_environment(start_app: StartApp) -> None:
    app = start_app(env={"APP_VERSION": "from-env", "ERROR_RATE": "1"})
    status, headers, body = get(app, "/")
    assert status == 500
    assert headers["x-app-version"] == "from-env"
    assert json.loads(body)["error"] == "injected failure"
    assert get(app, "/healthz")[0] == 200  # readiness is not part of the error rate


def test_keep_alive_serves_many_requests_on_one_connection(start_app: StartApp) -> None:
    app = start_app()
    conn = connect(app)
    conn.request("GET", "/")
    conn.getresponse().read()
    sock = conn.sock
    for _ in range(50):
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("connection") is None
        resp.read()
    assert conn.sock is sock  # never reconnected
    conn.request("GET", "/", headers={"Connection": "close"})
    resp = conn.getresponse()
    assert resp.getheader("connection") == "close"
    resp.read()
    conn.close()


def test_error_rate_is_a_share(start_app: StartApp) -> None:
    app = start_app("--error-rate", "0.3")
    conn = connect(app)
    statuses = []
    for _ in range(300):
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        statuses.append(resp.status)
    assert set(statuses) == {200, 500}
    assert 45 <= statuses.count(500) <= 135


def test_latency_is_added(start_app: StartApp) -> None:
    app = start_app("--latency-ms", "100", "--jitter-ms", "20")
    t0 = time.monotonic()
    assert get(app, "/")[0] == 200
    assert 0.1 <= time.monotonic() - t0 < 1.0


def test_readiness_can_start_late_and_fail_later(start_app: StartApp) -> None:
    app = start_app("--ready-after", "0.3", "--fail-healthz-after", "0.8")
    assert get(app, "/healthz")[:3:2] == (503, b"loading")
    time.sleep(0.4)
    assert get(app, "/healthz")[:3:2] == (200, b"ok")
    time.sleep(0.6)
    assert get(app, "/healthz")[:3:2] == (503, b"unhealthy")
    assert get(app, "/")[0] == 200  # a bad release that still answers: only readiness fails


def sse_events(body: bytes) -> list[str]:
    return [e.removeprefix("data: ") for e in body.decode().split("\n\n") if e]


def test_stream_sends_chunks_apart_then_done(start_app: StartApp) -> None:
    app = start_app("--version", "v3")
    conn = connect(app)
    conn.request("GET", "/stream?chunks=4&interval_ms=50")
    resp = conn.getresponse()
    assert resp.getheader("content-type") == "text/event-stream"
    assert resp.getheader("transfer-encoding") == "chunked"
    first = resp.read1()  # the first token comes before the rest are produced
    t_first = time.monotonic()
    assert first.startswith(b"data: {")
    events = sse_events(first + resp.read())
    assert time.monotonic() - t_first >= 0.1  # at least two of the three 50 ms gaps after it
    assert events[-1] == "[DONE]"
    tokens = [json.loads(e) for e in events[:-1]]
    assert [t["index"] for t in tokens] == [0, 1, 2, 3]
    assert {t["version"] for t in tokens} == {"v3"}
    conn.request("GET", "/")  # the connection is still good after a stream
    assert conn.getresponse().status == 200


def test_chat_completions(start_app: StartApp) -> None:
    app = start_app("--version", "v4", "--stream-interval-ms", "1")
    conn = connect(app)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({"max_tokens": 3}))
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    assert answer["object"] == "chat.completion" and answer["version"] == "v4"
    assert len(answer["choices"][0]["message"]["content"].split()) == 3

    conn.request("POST", "/v1/chat/completions", body=json.dumps({"stream": True, "max_tokens": 2}))
    events = sse_events(conn.getresponse().read())
    assert len(events) == 3 and events[-1] == "[DONE]"
    assert json.loads(events[0])["object"] == "chat.completion.chunk"

    conn.request("POST", "/v1/chat/completions", body=b"not json")
    assert conn.getresponse().status == 400
    conn.close()


def test_unknown_paths_and_methods(start_app: StartApp) -> None:
    app = start_app()
    assert get(app, "/nope")[0] == 404
    assert get(app, "/v1/chat/completions")[0] == 405


def test_many_concurrent_keep_alive_connections(start_app: StartApp) -> None:
    app = start_app()

    async def client() -> list[int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
        statuses = []
        for _ in range(5):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            statuses.append(int(head.split(b" ")[1]))
        writer.close()
        return statuses

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(client() for _ in range(300)))

    results = asyncio.run(main())
    assert results == [[200] * 5] * 300


def test_sigterm_finishes_in_flight_requests_then_exits(start_app: StartApp) -> None:
    app = start_app()
    idle = socket.create_connection(("127.0.0.1", app.port))
    idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(4096).startswith(b"HTTP/1.1 200")

    streamed: list[bytes] = []

    def stream() -> None:
        with socket.create_connection(("127.0.0.1", app.port)) as s:
            s.sendall(b"GET /stream?chunks=5&interval_ms=100 HTTP/1.1\r\nHost: x\r\n\r\n")
            while data := s.recv(65536):
                streamed.append(data)

    reader = threading.Thread(target=stream)
    reader.start()
    time.sleep(0.15)
    app.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection(("127.0.0.1", app.port), timeout=1)
    assert idle.recv(100) == b""  # the idle keep-alive connection was closed
    assert app.proc.wait(timeout=5) == 0
    reader.join(timeout=5)
    body = b"".join(streamed)
    assert body.count(b"data: {") == 5 and body.endswith(b"0\r\n\r\n")  # finished, not cut
