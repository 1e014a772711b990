"""A small HTTP service that reports its version: the workload every example rollout ships.

It stands in for an LLM service (a chat API with SSE token streams) or any web service, and
can be told to misbehave so a rollout has something to catch: an error rate, added latency,
a readiness probe that starts failing after a while. Standard library only, so the local
platform can start it with any ``python3``; the examples' specs and the integration tests run
it as a real process.

Endpoints::

    GET  /                     {"version": "v2", "pid": 1234}
    GET  /healthz              200 "ok" (503 before --ready-after, after --fail-healthz-after)
    GET  /stream               SSE: N chunks M ms apart, then "data: [DONE]"
    POST /v1/chat/completions  OpenAI-style; {"stream": true} answers with SSE like /stream

Every response carries ``x-app-version``. Knobs (flag, or environment variable)::

    --port / PORT                 --version / APP_VERSION       --model / MODEL (a label)
    --error-rate / ERROR_RATE     share of requests answered 500 (healthz excluded)
    --latency-ms / LATENCY_MS     added before each answer, plus uniform jitter
    --jitter-ms / JITTER_MS       (default: a fifth of the latency)
    --ready-after / READY_AFTER   seconds before /healthz turns ready (a slow model load)
    --fail-healthz-after / FAIL_HEALTHZ_AFTER   seconds after which /healthz fails (a bad release)
    --stream-chunks / STREAM_CHUNKS, --stream-interval-ms / STREAM_INTERVAL_MS

SIGTERM (or SIGINT) stops accepting, closes idle keep-alive connections, lets in-flight
requests finish (each then closes its connection) and exits 0.

Example::

    python3 examples/app.py --port 8081 --version v2 --error-rate 0.2 --latency-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

# Requests with bigger heads or bodies are refused: this is a demo service, not a target.
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

# The "tokens" a stream emits, cycled.
WORDS = ("the", "new", "model", "answers", "calmly", "while", "the", "old", "one", "listens")


@dataclass(frozen=True)
class Config:
    port: int
    version: str
    model: str | None
    error_rate: float
    latency_ms: float
    jitter_ms: float
    ready_after: float
    fail_healthz_after: float | None
    stream_chunks: int
    stream_interval_ms: float


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class App:
    """One server: the connection loop, the handlers and the drain on SIGTERM."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = time.monotonic()
        self.draining = False
        # Each connection task and whether it is between requests (safe to close on drain).
        self.idle: dict[asyncio.Task[None], bool] = {}
        self.served = 0
        self.all_closed = asyncio.Event()  # set once draining and no connection is left

    # --- the connection loop ---------------------------------------------------------

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.idle[task] = True
        try:
            while not self.draining:
                try:
                    request = await read_request(reader)
                except BadRequest as exc:
                    await self.send(writer, exc.status, str(exc).encode(), keep_alive=False)
                    return
                if request is None:  # the client closed between requests
                    return
                self.idle[task] = False
                keep_alive = await self.dispatch(request, writer)
                self.served += 1
                self.idle[task] = True
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self.idle.pop(task, None)
            if self.draining and not self.idle:
                self.all_closed.set()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def dispatch(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; returns whether the connection stays open."""
        url = urlsplit(request.target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        keep_alive = request.keep_alive

        if path == "/healthz":
            status, text = self.readiness()
            await self.send(writer, status, text.encode(), keep_alive=keep_alive)
            return keep_alive and not self.draining

        if path not in ("/", "/stream", "/v1/chat/completions"):
            await self.send_json(writer, 404, {"error": "not found"}, keep_alive=keep_alive)
            return keep_alive and not self.draining
        expected = "POST" if path == "/v1/chat/completions" else "GET"
        if request.method not in (expected, "HEAD" if expected == "GET" else expected):
            body = {"error": "method not allowed"}
            await self.send_json(writer, 405, body, keep_alive=keep_alive)
            return keep_alive and not self.draining

        await self.simulated_latency()
        if random.random() < self.config.error_rate:
            body = {"error": "injected failure", "version": self.config.version}
            await self.send_json(writer, 500, body, keep_alive=keep_alive)
            return keep_alive and not self.draining

        if path == "/":
            info: dict[str, object] = {"version": self.config.version, "pid": os.getpid()}
            if self.config.model:
                info["model"] = self.config.model
            head_only = request.method == "HEAD"
            await self.send_json(writer, 200, info, keep_alive=keep_alive, head_only=head_only)
        elif path == "/stream":
            await self.stream(writer, query=query, chat=None, keep_alive=keep_alive)
        else:
            try:
                chat = chat_request(request.body)
            except ValueError as exc:
                await self.send_json(writer, 400, {"error": str(exc)}, keep_alive=keep_alive)
                return keep_alive and not self.draining
            if chat.get("stream"):
                await self.stream(writer, query=query, chat=chat, keep_alive=keep_alive)
            else:
                await self.send_json(writer, 200, self.completion(chat), keep_alive=keep_alive)
        return keep_alive and not self.draining

    # --- behaviours ------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.config.model or f"example-{self.config.version}"

    def readiness(self) -> tuple[int, str]:
        age = time.monotonic() - self.started
        if self.draining:
            return 503, "draining"
        if age < self.config.ready_after:
            return 503, "loading"
        fail_after = self.config.fail_healthz_after
        if fail_after is not None and age >= fail_after:
            return 503, "unhealthy"
        return 200, "ok"

    async def simulated_latency(self) -> None:
        latency = self.config.latency_ms + random.uniform(0, self.config.jitter_ms)
        if latency > 0:
            await asyncio.sleep(latency / 1000)

    def completion(self, chat: dict[str, object]) -> dict[str, object]:
        max_tokens = _int(chat.get("max_tokens"), self.config.stream_chunks)
        text = " ".join(WORDS[i % len(WORDS)] for i in range(max_tokens))
        return {
            "id": f"chatcmpl-{os.getpid()}-{self.served}",
            "object": "chat.completion",
            "model": self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "version": self.config.version,
        }

    async def stream(
        self,
        writer: asyncio.StreamWriter,
        *,
        query: dict[str, str],
        chat: dict[str, object] | None,
        keep_alive: bool,
    ) -> None:
        """An SSE token stream in chunked encoding, each token flushed as it is produced."""
        chunks = _int(query.get("chunks"), self.config.stream_chunks)
        if chat is not None:
            chunks = _int(chat.get("max_tokens"), chunks)
        interval = _float(query.get("interval_ms"), self.config.stream_interval_ms) / 1000
        head = self.head(
            200,
            content_type="text/event-stream",
            extra={"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"},
            keep_alive=keep_alive,
        )
        writer.write(head)
        await writer.drain()
        for i in range(chunks):
            if i:
                await asyncio.sleep(interval)
            event = {
                "id": f"chatcmpl-{os.getpid()}-{self.served}",
                "object": "chat.completion.chunk",
                "model": self.model_name,
                "version": self.config.version,
                "index": i,
                "choices": [{"index": 0, "delta": {"content": WORDS[i % len(WORDS)] + " "}}],
            }
            writer.write(_chunk(f"data: {json.dumps(event)}\n\n".encode()))
            await writer.drain()
        writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    # --- writing ---------------------------------------------------------------------

    def head(
        self,
        status: int,
        *,
        content_type: str,
        keep_alive: bool,
        length: int | None = None,
        extra: dict[str, str] | None = None,
    ) -> bytes:
        lines = [
            f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
            f"Content-Type: {content_type}",
            f"x-app-version: {self.config.version}",
        ]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        for name, value in (extra or {}).items():
            lines.append(f"{name}: {value}")
        # Tell a keep-alive client we are closing, so it does not reuse a dying connection.
        if not keep_alive or self.draining:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        *,
        keep_alive: bool,
        content_type: str = "text/plain; charset=utf-8",
        head_only: bool = False,
    ) -> None:
        head = self.head(status, content_type=content_type, keep_alive=keep_alive, length=len(body))
        writer.write(head if head_only else head + body)
        await writer.drain()

    async def send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: object,
        *,
        keep_alive: bool,
        head_only: bool = False,
    ) -> None:
        data = json.dumps(body).encode()
        await self.send(
            writer,
            status,
            data,
            keep_alive=keep_alive,
            content_type="application/json",
            head_only=head_only,
        )

    # --- lifecycle -------------------------------------------------------------------

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        server = await asyncio.start_server(
            self.handle_connection, "127.0.0.1", self.config.port, backlog=1024, limit=MAX_HEAD
        )
        print(
            f"app {self.config.version} pid {os.getpid()} listening on "
            f"http://127.0.0.1:{self.config.port}",
            file=sys.stderr,
            flush=True,
        )
        async with server:
            await stop.wait()
            self.draining = True
            server.close()  # stop accepting; the listening socket goes away now
            # Idle keep-alive connections would wait forever for a next request: close them.
            for task, idle in list(self.idle.items()):
                if idle:
                    task.cancel()
            if self.idle:  # in-flight requests finish, then their connections close
                await self.all_closed.wait()
        print(f"app {self.config.version} drained after {self.served} requests", file=sys.stderr)


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """Read one request; None on a clean EOF before any byte of it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest(400, "incomplete request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadRequest(413, "request head too large") from exc
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise BadRequest(400, "malformed request line") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(400, "malformed header")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError as exc:
            raise BadRequest(400, "bad content-length") from exc
        if length < 0 or length > MAX_BODY:
            raise BadRequest(413, "body too large")
        body = await reader.readexactly(length)
    return Request(method=method, target=target, version=version, headers=headers, body=body)


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    size_total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise BadRequest(400, "bad chunk size") from exc
        if size == 0:
            # Trailers, if any, end with an empty line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        size_total += size
        if size_total > MAX_BODY:
            raise BadRequest(413, "body too large")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def chat_request(body: bytes) -> dict[str, object]:
    """A chat-completion request body: a JSON object (``ValueError`` otherwise)."""
    chat = json.loads(body or b"{}")
    if not isinstance(chat, dict):
        raise ValueError("expected a JSON object")
    return chat


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _int(value: object, default: int) -> int:
    """A non-negative int from a query or JSON value, else the default."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        return max(0, int(value))
    except ValueError:
        return default


def _float(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def parse_args(argv: list[str] | None = None) -> Config:
    env = os.environ

    def env_float(name: str, default: float | None) -> float | None:
        raw = env.get(name)
        return float(raw) if raw not in (None, "") else default

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=int(env.get("PORT", "8080")))
    parser.add_argument("--version", default=env.get("APP_VERSION", "v1"))
    parser.add_argument("--model", default=env.get("MODEL") or None, help="reported in answers")
    parser.add_argument("--error-rate", type=float, default=env_float("ERROR_RATE", 0.0))
    parser.add_argument("--latency-ms", type=float, default=env_float("LATENCY_MS", 0.0))
    parser.add_argument("--jitter-ms", type=float, default=env_float("JITTER_MS", None))
    parser.add_argument("--ready-after", type=float, default=env_float("READY_AFTER", 0.0))
    parser.add_argument(
        "--fail-healthz-after", type=float, default=env_float("FAIL_HEALTHZ_AFTER", None)
    )
    parser.add_argument(
        "--stream-chunks", type=int, default=int(env.get("STREAM_CHUNKS", "10") or 10)
    )
    parser.add_argument(
        "--stream-interval-ms", type=float, default=env_float("STREAM_INTERVAL_MS", 50.0)
    )
    args = parser.parse_args(argv)
    if not 0.0 <= args.error_rate <= 1.0:
        parser.error("--error-rate must be between 0 and 1")
    latency = max(0.0, args.latency_ms)
    jitter = latency / 5 if args.jitter_ms is None else max(0.0, args.jitter_ms)
    return Config(
        port=args.port,
        version=args.version,
        model=args.model,
        error_rate=args.error_rate,
        latency_ms=latency,
        jitter_ms=jitter,
        ready_after=max(0.0, args.ready_after),
        fail_healthz_after=args.fail_healthz_after,
        stream_chunks=max(0, args.stream_chunks),
        stream_interval_ms=max(0.0, args.stream_interval_ms),
    )


def main(argv: list[str] | None = None) -> None:
    asyncio.run(App(parse_args(argv)).serve())


if __name__ == "__main__":
    main()
