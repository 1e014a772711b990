"""StreamWatch on its own: event boundaries across reads, the token rules, usage, caps."""

from __future__ import annotations

import pytest

from changeover.traffic.builtin import metrics, token_streams

TOKEN = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'


def watch(
    kind: int = token_streams.SSE,
) -> tuple[token_streams.StreamWatch, metrics.RevisionMetrics]:
    rm = metrics.RevisionMetrics()
    return token_streams.StreamWatch(kind, 0.0, rm), rm


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", token_streams.SSE),
        (
            b"HTTP/1.1 200 OK\r\ncontent-type:Text/Event-Stream; charset=utf-8\r\n\r\n",
            token_streams.SSE,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n", token_streams.LINES),
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n", token_streams.NOT_A_STREAM),
        (
            b"HTTP/1.1 200 OK\r\nX-Content-Type: text/event-stream\r\n\r\n",
            token_streams.NOT_A_STREAM,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", token_streams.NOT_A_STREAM),
    ],
)
def test_kind_of_reads_the_content_type(head: bytes, kind: int) -> None:
    assert token_streams.kind_of(head) == kind


def test_events_split_anywhere_across_reads_count_once() -> None:
    body = b": ping\n\n" + TOKEN * 3 + b"data: [DONE]\n\n"
    for cut in range(1, len(body)):
        w, rm = watch()
        w.feed(body[:cut], 1.0)
        w.feed(body[cut:], 2.0)
        w.finish(2.0, cut=True)
        assert (w.tokens, w.done, rm.streams_cut) == (3, True, 0), cut


def test_crlf_events_and_multiline_data() -> None:
    w, rm = watch()
    w.feed(b'event: delta\r\ndata: {"a":\r\ndata: 1}\r\n\r\n', 0.5)
    w.feed(b"data: [DONE]\r\n\r\n", 0.6)
    assert (w.tokens, w.done) == (1, True)
    assert rm.ttft.sum == 0.5


def test_first_token_is_the_first_nonempty_delta_not_the_role_chunk() -> None:
    w, rm = watch()
    w.feed(b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n', 0.1)
    w.feed(TOKEN, 0.3)
    w.feed(TOKEN, 0.35)
    w.feed(b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n', 0.4)
    w.feed(b'data: {"choices":[],"usage":{"completion_tokens": 17}}\n\n', 0.4)
    w.finish(0.5, cut=False)
    assert rm.ttft.sum == 0.3 and rm.itl.count == 1
    assert round(rm.itl.sum, 6) == 0.05
    assert rm.output_tokens == 17  # the usage object wins over the counted events
    assert rm.stream_seconds == 0.5


def test_json_lines_with_a_done_flag() -> None:
    w, rm = watch(token_streams.LINES)
    w.feed(b'{"response":"a","done":false}\n{"response":"b","done":false}\n', 0.2)
    w.feed(b'{"response":"","done": true,"eval_count":2}\n', 0.3)
    w.finish(0.3, cut=True)
    assert (w.done, rm.streams_cut, rm.output_tokens) == (True, 0, 2)  # eval_count


def test_a_cut_stream_without_its_end_counts_as_cut() -> None:
    w, rm = watch()
    w.feed(TOKEN * 2, 0.2)
    w.finish(0.3, cut=True)
    assert (rm.streams, rm.streams_cut, rm.output_tokens) == (1, 1, 2)


def test_hostile_streams_stay_bounded() -> None:
    w, rm = watch()
    for _ in range(50):
        w.feed(b"data: " + b"x" * 10000, 0.1)  # one event that never ends
    assert len(w.pending) <= token_streams.MAX_PENDING
    w.feed(b"\n\n", 0.2)
    assert w.tokens == 1
    w.feed(b'data: {"usage":{"completion_tokens": 99999999999999999999}}\n\n', 0.3)
    w.feed(b'data: {"usage":{"completion_tokens": "many"}}\n\n', 0.3)
    w.finish(0.3, cut=False)
    assert 0 <= rm.output_tokens < 10**12
