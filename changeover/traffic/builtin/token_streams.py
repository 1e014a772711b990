"""Token-stream accounting for streamed responses (LLM serving metrics), without buffering.

A response whose content type is ``text/event-stream`` (server-sent events) or JSON lines
(``application/x-ndjson``, ``application/jsonl``) gets a ``StreamWatch``. The upstream
connection hands it each de-chunked body piece httptools already produced (the bytes the
client gets are forwarded raw, untouched and unbuffered); the watch only scans them for
event boundaries and keeps the unfinished tail of one event (at most ``MAX_PENDING``
bytes). Per revision it records:

- time to first token: from the request to the first *token* event, which is a data event
  with a non-empty payload that is not an empty delta (OpenAI's first chunk carries only
  ``"role"`` with ``"content": ""``) nor a usage-only chunk; comments (``: keep-alive``),
  bare heads and ``event:`` lines are not tokens;
- inter-token latency: the gap between one token event and the next as the router saw them;
- tokens per response: ``usage.completion_tokens`` (or Ollama's ``eval_count``) from the
  stream when it carries one, else the count of token events;
- streams, cut streams, output tokens and stream seconds (tokens per second is output
  tokens over the seconds those streams took, request to end).

A stream is complete when ``data: [DONE]`` (or ``"done": true`` in JSON lines) arrived, or
its body ended as framed (the last chunk of a chunked body, the content length, or the close
of a close-delimited body). A stream whose upstream failed before either, after the head
had gone out, is *cut*: a failure even though its status was 200. A client that goes away
does not make the revision's stream cut (that is ``client_aborts``).

    >>> from changeover.traffic.builtin import metrics
    >>> rm = metrics.RevisionMetrics()
    >>> w = StreamWatch(SSE, 0.0, rm)
    >>> w.feed(b': keep-alive\\n\\ndata: {"choices":[{"delta":{"content":"Hi"}}]}\\n\\n', 0.25)
    >>> w.feed(b'data: {"choices":[{"delta":{"content":"!"}}]}\\n\\ndata: [DONE]\\n\\n', 0.35)
    >>> w.finish(0.4, cut=False)
    >>> rm.ttft.count, rm.itl.count, rm.output_tokens, rm.streams, rm.streams_cut
    (1, 1, 2, 1, 0)
"""

from __future__ import annotations

from typing import Final

from changeover.traffic.builtin import metrics

NOT_A_STREAM: Final = 0
SSE: Final = 1  # text/event-stream: events end with a blank line
LINES: Final = 2  # JSON lines: one event per line

MAX_PENDING: Final = 65536  # bytes of one unfinished event kept across reads

# A data payload holding one of these carries no output token (OpenAI-style empty deltas,
# a usage-only chunk).
_EMPTY_MARKERS: Final = (
    b'"content":""',
    b'"content": ""',
    b'"content":null',
    b'"content": null',
    b'"delta":{}',
    b'"delta": {}',
    b'"choices":[]',
    b'"choices": []',
)
_USAGE_KEYS: Final = (b'"completion_tokens"', b'"eval_count"')
_DONE_MARKERS: Final = (b'"done":true', b'"done": true')


def kind_of(head: bytes) -> int:
    """``SSE``, ``LINES`` or ``NOT_A_STREAM`` from a raw response head's content type."""
    low = head.lower()
    at = low.find(b"\r\ncontent-type:")
    if at < 0:
        return NOT_A_STREAM
    end = low.find(b"\r\n", at + 2)
    value = low[at + 15 : end].strip()
    if value.startswith(b"text/event-stream"):
        return SSE
    if value.startswith((b"application/x-ndjson", b"application/jsonl", b"application/ndjson")):
        return LINES
    return NOT_A_STREAM


class StreamWatch:
    """One streamed response's token accounting; times are the event loop's seconds."""

    __slots__ = (
        "done",
        "first_at",
        "kind",
        "last_at",
        "pending",
        "rm",
        "started",
        "tokens",
        "usage_tokens",
    )

    def __init__(self, kind: int, started: float, rm: metrics.RevisionMetrics) -> None:
        self.kind = kind
        self.started = started
        self.rm = rm
        self.pending = b""
        self.tokens = 0
        self.usage_tokens = -1
        self.first_at = -1.0
        self.last_at = 0.0
        self.done = False

    def feed(self, data: bytes, now: float) -> None:
        """A de-chunked body piece as it arrived at ``now``."""
        buf = self.pending + data if self.pending else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        sep = b"\n\n" if self.kind == SSE else b"\n"
        step = len(sep)
        start = 0
        while True:
            end = buf.find(sep, start)
            if end < 0:
                break
            if end > start:
                self._event(buf[start:end], now)
            start = end + step
        rest = buf[start:] if start else buf
        # An event larger than the cap keeps its beginning (where "data:" and [DONE] are).
        self.pending = rest if len(rest) <= MAX_PENDING else rest[:MAX_PENDING]

    def _event(self, event: bytes, now: float) -> None:
        if self.kind == SSE:
            if event.startswith(b"data:"):
                payload = event[5:]
            else:
                at = event.find(b"\ndata:")
                if at < 0:
                    return  # a comment, or an event without data
                payload = event[at + 6 :]
            payload = payload.strip()
            if payload == b"[DONE]":
                self.done = True
                return
        else:
            payload = event.strip()
        if not payload:
            return
        if self.kind == LINES and (_DONE_MARKERS[0] in payload or _DONE_MARKERS[1] in payload):
            self.done = True
        self._usage(payload)
        for marker in _EMPTY_MARKERS:
            if marker in payload:
                return
        self.tokens += 1
        rm = self.rm
        if self.first_at < 0:
            self.first_at = now
            rm.ttft.observe(now - self.started)
        else:
            rm.itl.observe(now - self.last_at)
        self.last_at = now

    def _usage(self, payload: bytes) -> None:
        for key in _USAGE_KEYS:
            at = payload.find(key)
            if at < 0:
                continue
            at = payload.find(b":", at + len(key))
            if at < 0:
                return
            digits = payload[at + 1 : at + 24].lstrip()
            n = 0
            length = 0
            while length < len(digits) and length < 12 and 48 <= digits[length] <= 57:
                n = n * 10 + digits[length] - 48
                length += 1
            if length:
                self.usage_tokens = n
            return

    def finish(self, now: float, *, cut: bool) -> None:
        """The stream ended at ``now``: complete as framed, or ``cut`` by the upstream."""
        rm = self.rm
        rm.streams += 1
        if cut and not self.done:
            rm.streams_cut += 1
        tokens = self.usage_tokens if self.usage_tokens >= 0 else self.tokens
        rm.output_tokens += tokens
        rm.stream_seconds += max(0.0, now - self.started)
        rm.tokens_per_response.observe(float(tokens))
