"""An example model service: an OpenAI-style chat completion API whose timings can be set.

The workload for model rollouts: a new model behind a chat API that streams tokens. Every
knob a rollout wants to catch is settable: the time to the first token, the time per token,
answer drift (the share of answers that differ from what v1 answers to the same prompt) and
streams cut in the middle. Standard library only (it reuses ``examples/app.py`` beside it),
so the local platform starts it with any ``python3`` as a replica command.

Endpoints::

    GET  /                     {"version": "v2", "model": "...", "pid": 1234}
    GET  /healthz              200 "ok" (503 before --ready-after)
    POST /v1/chat/completions  {"messages": [...], "stream": true|false, "max_tokens": N,
                                "stream_options": {"include_usage": true}}

A streamed answer is ``text/event-stream`` in chunked encoding: the head and (with
``--keepalive-comment``) a ``: keep-alive`` comment go out at once, then after the time to
first token one ``data: {chat.completion.chunk}`` event per token, a final chunk with
``finish_reason``, an optional ``usage`` chunk and ``data: [DONE]``. A non-streamed answer
is one ``chat.completion`` JSON object with ``usage``.

The answer to a prompt is a function of the prompt alone, so v1 and v2 answer alike; a
drifting answer (``--drift``) is a different text for the same prompt. Knobs (flag, or
environment variable)::

    --port / PORT          --version / APP_VERSION      --model / MODEL (a label)
    --ttft-ms / TTFT_MS    time to the first token      --token-ms / TOKEN_MS  per later token
    --jitter / JITTER      each wait is scaled by a uniform factor in [1-J, 1+J] (default 0)
    --tokens / TOKENS      tokens per answer when the request sets no max_tokens (default 16)
    --drift / DRIFT        share of answers that differ from v1's (0..1)
    --cut-rate / CUT_RATE  share of streams cut mid-way (connection closed, no [DONE])
    --usage / USAGE        always send the usage chunk (1) even if the request did not ask
    --keepalive-comment / KEEPALIVE_COMMENT   send ": keep-alive" before the first token (1)
    --error-rate / ERROR_RATE   share of requests answered 500
    --ready-after / READY_AFTER seconds before /healthz turns ready

Example::

    python3 examples/model_service.py --port 8081 --version v2 --ttft-ms 120 --drift 0.3
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from app import App, Request, _chunk, _float, _int, chat_request
from app import Config as AppConfig

# The vocabulary answers are drawn from; a prompt's hash picks the words.
VOCABULARY = [
    "the",
    "model",
    "answers",
    "calmly",
    "while",
    "a",
    "cluster",
    "of",
    "servers",
    "hums",
    "along",
    "and",
    "every",
    "token",
    "arrives",
    "in",
    "order",
    "shaped",
    "by",
    "weights",
    "learned",
    "from",
    "text",
    "about",
    "rivers",
    "mountains",
    "code",
    "music",
    "history",
    "science",
    "stories",
    "questions",
    "and",
    "careful",
    "replies",
]


@dataclass(frozen=True)
class ModelConfig:
    ttft_ms: float
    token_ms: float
    jitter: float
    tokens: int
    drift: float
    cut_rate: float
    usage: bool
    keepalive_comment: bool


def answer_words(prompt: str, count: int, *, drifted: bool) -> list[str]:
    """The answer's tokens: a function of the prompt (and whether this answer drifts)."""
    seed = hashlib.sha256((("drift:" if drifted else "") + prompt).encode()).digest()
    rng = random.Random(seed)
    return [rng.choice(VOCABULARY) for _ in range(count)]


def prompt_of(chat: dict[str, object]) -> str:
    """The text of the request's messages, joined; anything malformed counts as empty."""
    messages = chat.get("messages")
    if not isinstance(messages, list):
        return ""
    parts = []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            parts.append(f"{message.get('role', '')}:{message['content']}")
    return "\n".join(parts)


class ModelService(App):
    """examples/app.py's server with a chat-completion handler whose timings can be set."""

    def __init__(self, config: AppConfig, model: ModelConfig) -> None:
        super().__init__(config)
        self.model = model
        self.counter = 0

    async def dispatch(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        path = request.target.split("?", 1)[0]
        keep_alive = request.keep_alive
        if path != "/v1/chat/completions":
            return await super().dispatch(request, writer)
        if request.method != "POST":
            await self.send_json(writer, 405, {"error": "POST only"}, keep_alive=keep_alive)
            return keep_alive and not self.draining
        try:
            chat = chat_request(request.body)
        except ValueError as exc:
            await self.send_json(writer, 400, {"error": str(exc)}, keep_alive=keep_alive)
            return keep_alive and not self.draining
        if random.random() < self.config.error_rate:
            body = {"error": "injected failure", "version": self.config.version}
            await self.send_json(writer, 500, body, keep_alive=keep_alive)
            return keep_alive and not self.draining
        self.counter += 1
        count = _int(chat.get("max_tokens"), self.model.tokens)
        drifted = random.random() < self.model.drift
        words = answer_words(prompt_of(chat), count, drifted=drifted)
        if chat.get("stream") is True:
            completed = await self.stream_chat(writer, chat, words, keep_alive=keep_alive)
            return completed and keep_alive and not self.draining
        await self.wait(self.model.ttft_ms + self.model.token_ms * max(0, count - 1))
        await self.send_json(writer, 200, self.whole(words), keep_alive=keep_alive)
        return keep_alive and not self.draining

    async def wait(self, ms: float) -> None:
        jitter = self.model.jitter
        if ms > 0:
            await asyncio.sleep(ms * random.uniform(1 - jitter, 1 + jitter) / 1000)

    def envelope(self, kind: str) -> dict[str, object]:
        return {
            "id": f"chatcmpl-{os.getpid()}-{self.counter}",
            "object": kind,
            "created": int(time.time()),
            "model": self.model_name,
            "system_fingerprint": self.config.version,
        }

    def whole(self, words: list[str]) -> dict[str, object]:
        text = " ".join(words)
        return self.envelope("chat.completion") | {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage(words),
        }

    def chunk(self, delta: dict[str, str], finish: str | None = None) -> bytes:
        event = self.envelope("chat.completion.chunk") | {
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        }
        return _chunk(f"data: {json.dumps(event)}\n\n".encode())

    async def stream_chat(
        self,
        writer: asyncio.StreamWriter,
        chat: dict[str, object],
        words: list[str],
        *,
        keep_alive: bool,
    ) -> bool:
        """Stream the answer; returns False when the stream was cut on purpose."""
        head = self.head(
            200,
            content_type="text/event-stream",
            extra={"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"},
            keep_alive=keep_alive,
        )
        opening = head + (_chunk(b": keep-alive\n\n") if self.model.keepalive_comment else b"")
        writer.write(opening)
        await writer.drain()
        cut_at = len(words) // 2 if random.random() < self.model.cut_rate else -1
        for i, word in enumerate(words):
            await self.wait(self.model.ttft_ms if i == 0 else self.model.token_ms)
            if i == cut_at:
                writer.transport.abort()  # mid-way: no terminating event, no last chunk
                return False
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
            writer.write(self.chunk(delta))
            await writer.drain()
        tail = self.chunk({}, finish="stop")
        options = chat.get("stream_options")
        if self.model.usage or (isinstance(options, dict) and options.get("include_usage")):
            event = self.envelope("chat.completion.chunk") | {"choices": [], "usage": usage(words)}
            tail += _chunk(f"data: {json.dumps(event)}\n\n".encode())
        writer.write(tail + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return True


def usage(words: list[str]) -> dict[str, int]:
    return {"prompt_tokens": 0, "completion_tokens": len(words), "total_tokens": len(words)}


def parse_args(argv: list[str] | None = None) -> tuple[AppConfig, ModelConfig]:
    env = os.environ

    def number(name: str, default: float) -> float:
        return _float(env.get(name), default)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=_int(env.get("PORT"), 8080))
    parser.add_argument("--version", default=env.get("APP_VERSION", "v1"))
    parser.add_argument("--model", default=env.get("MODEL") or None)
    parser.add_argument("--ttft-ms", type=float, default=number("TTFT_MS", 100.0))
    parser.add_argument("--token-ms", type=float, default=number("TOKEN_MS", 20.0))
    parser.add_argument("--jitter", type=float, default=number("JITTER", 0.0))
    parser.add_argument("--tokens", type=int, default=_int(env.get("TOKENS"), 16))
    parser.add_argument("--drift", type=float, default=number("DRIFT", 0.0))
    parser.add_argument("--cut-rate", type=float, default=number("CUT_RATE", 0.0))
    parser.add_argument("--usage", type=int, default=_int(env.get("USAGE"), 0))
    parser.add_argument(
        "--keepalive-comment", type=int, default=_int(env.get("KEEPALIVE_COMMENT"), 0)
    )
    parser.add_argument("--error-rate", type=float, default=number("ERROR_RATE", 0.0))
    parser.add_argument("--ready-after", type=float, default=number("READY_AFTER", 0.0))
    args = parser.parse_args(argv)
    for name in ("drift", "cut_rate", "error_rate", "jitter"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 1")
    for name in ("ttft_ms", "token_ms", "tokens", "ready_after"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    app = AppConfig(
        port=args.port,
        version=args.version,
        model=args.model,
        error_rate=args.error_rate,
        latency_ms=0.0,
        jitter_ms=0.0,
        ready_after=args.ready_after,
        fail_healthz_after=None,
        stream_chunks=args.tokens,
        stream_interval_ms=args.token_ms,
    )
    model = ModelConfig(
        ttft_ms=args.ttft_ms,
        token_ms=args.token_ms,
        jitter=args.jitter,
        tokens=args.tokens,
        drift=args.drift,
        cut_rate=args.cut_rate,
        usage=bool(args.usage),
        keepalive_comment=bool(args.keepalive_comment),
    )
    return app, model


def main(argv: list[str] | None = None) -> None:
    app, model = parse_args(argv)
    asyncio.run(ModelService(app, model).serve())


if __name__ == "__main__":
    main()
