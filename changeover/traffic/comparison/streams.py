"""From captured response bytes to what a comparator reads.

The router captures a response body as it travelled (``raw``: with chunk framing when
the body was chunked); ``dechunk`` undoes that framing. A streamed LLM answer is then
reassembled into its text (``reassemble``): Server-Sent Events (``text/event-stream``)
and JSON lines (``application/x-ndjson``, ``application/jsonl``), with the text taken
from each event the way the common formats carry it:

    >>> sse = (b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\\n\\n'
    ...        b'data: {"choices":[{"index":0,"delta":{"content":"lo"}}]}\\n\\n'
    ...        b'data: [DONE]\\n\\n')
    >>> reassemble(sse, "text/event-stream")
    'Hello'
    >>> reassemble(b'{"response":"a"}\\n{"response":"b","done":true}\\n', "application/x-ndjson")
    'ab'

An event that is not JSON contributes its data as it is; a JSON event of a format not
known here contributes its strings but ids, model names, roles and the like, so a
service with its own format is still compared on its words:

    >>> own = b'{"id": "x1", "out": {"piece": "Hi"}}\\n{"id": "x2", "out": {"piece": "!"}}\\n'
    >>> reassemble(own, "application/x-ndjson")
    'Hi!'

(a role-only first chunk or a usage-only last one of a known format adds nothing).
"""

from __future__ import annotations

import json
from typing import Any

STREAM_TYPES = ("text/event-stream",)
JSON_LINES_TYPES = (
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/jsonlines",
    "application/json-seq",
)


def media_type(content_type: str) -> str:
    """``text/event-stream; charset=utf-8`` → ``text/event-stream``."""
    return content_type.split(";", 1)[0].strip().lower()


def is_stream(content_type: str) -> bool:
    kind = media_type(content_type)
    return kind in STREAM_TYPES or kind in JSON_LINES_TYPES


def dechunk(raw: bytes) -> tuple[bytes, bool]:
    """The body inside HTTP/1.1 chunk framing, and whether the framing ended cleanly
    (a last chunk seen). Tolerant: a capture cut at the size cap yields what it holds.

    >>> dechunk(b"5\\r\\nhello\\r\\n6;x=y\\r\\n world\\r\\n0\\r\\n\\r\\n")
    (b'hello world', True)
    >>> dechunk(b"5\\r\\nhel")
    (b'hel', False)
    """
    out: list[bytes] = []
    pos = 0
    n = len(raw)
    while pos < n:
        eol = raw.find(b"\r\n", pos)
        if eol < 0:
            return b"".join(out), False
        size_text = raw[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return b"".join(out), False
        if size == 0:
            return b"".join(out), True
        start = eol + 2
        out.append(raw[start : start + size])
        pos = start + size + 2
    return b"".join(out), False


def reassemble(body: bytes, content_type: str) -> str:
    """The text of a streamed answer (``body`` already de-chunked)."""
    text = body.decode("utf-8", "replace")
    if media_type(content_type) in STREAM_TYPES:
        events = _sse_data(text)
    else:
        events = [line for line in text.splitlines() if line.strip()]
    return _join(events)


def _sse_data(text: str) -> list[str]:
    """The data of each event: its ``data:`` lines joined by newlines (the SSE rules)."""
    events: list[str] = []
    data: list[str] | None = None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            if data is not None:
                events.append("\n".join(data))
            data = None
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        name, _, value = line.partition(":")
        if name == "data":
            data = [] if data is None else data
            data.append(value[1:] if value.startswith(" ") else value)
    if data is not None:
        events.append("\n".join(data))
    return events


def _join(events: list[str]) -> str:
    """Concatenate the events' text; several choices (OpenAI's ``n > 1``) each in order."""
    by_choice: dict[int, list[str]] = {}
    for event in events:
        if event.strip() == "[DONE]":
            continue
        try:
            item = json.loads(event)
        except ValueError:
            by_choice.setdefault(0, []).append(event)
            continue
        for index, piece in _pieces(item):
            by_choice.setdefault(index, []).append(piece)
    return "\n".join("".join(parts) for _, parts in sorted(by_choice.items()))


def _pieces(item: Any) -> list[tuple[int, str]]:
    """The text pieces of one decoded event, by choice index."""
    if not isinstance(item, dict):
        return [(0, item)] if isinstance(item, str) else []
    choices = item.get("choices")
    if isinstance(choices, list):
        out: list[tuple[int, str]] = []
        for n, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", n)
            index = index if isinstance(index, int) else n
            delta = choice.get("delta")
            text = _first_text(delta, ("content", "text")) if isinstance(delta, dict) else None
            if text is None:
                message = choice.get("message")
                text = _first_text(message, ("content",)) if isinstance(message, dict) else None
            if text is None:
                text = _first_text(choice, ("text",))
            if text is not None:
                out.append((index, text))
        return out
    for key in ("delta", "message"):  # Anthropic-style deltas, Ollama chat lines
        inner = item.get(key)
        if isinstance(inner, dict):
            text = _first_text(inner, ("text", "content"))
            if text is not None:
                return [(0, text)]
    text = _first_text(item, ("response", "text", "content", "token"))
    if text is not None:
        return [(0, text)]
    # A format of its own: every string in it but the bookkeeping ones (ids, model names,
    # roles...), in order, so two streams that differ in their words never look alike.
    found = "".join(_strings(item))
    return [(0, found)] if found else []


_METADATA = frozenset(
    {
        "id",
        "object",
        "model",
        "created",
        "role",
        "finish_reason",
        "stop_reason",
        "system_fingerprint",
        "type",
        "event",
        "created_at",
        "done_reason",
    }
)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in _METADATA for s in _strings(v)]
    return []


def _first_text(obj: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("text"), str):
            return str(value["text"])  # {"token": {"text": ...}} (TGI)
    return None
