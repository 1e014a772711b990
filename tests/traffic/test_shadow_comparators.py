"""Comparators and stream reassembly on known pairs (fast unit tests, no router)."""

from __future__ import annotations

import json

import pytest

from changeover.traffic.comparison import comparators, stats, streams
from changeover.traffic.comparison.comparators import Answer, Settings


def js(value: object) -> Answer:
    return Answer(200, "application/json", json.dumps(value).encode())


def sse(*pieces: str, done: bool = True) -> Answer:
    events = [
        "data: "
        + json.dumps(
            {
                "id": f"c{i}",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}],
            }
        )
        for i, p in enumerate(pieces)
    ]
    body = ": keep-alive\n\n" + "".join(e + "\n\n" for e in events)
    if done:
        body += "data: [DONE]\n\n"
    return Answer(200, "text/event-stream; charset=utf-8", body.encode())


def test_exact_equal_and_different() -> None:
    s = Settings(comparator="exact")
    a = Answer(200, "text/plain", b"hello")
    assert comparators.compare(a, Answer(200, "text/plain", b"hello"), s).matched
    verdict = comparators.compare(a, Answer(200, "text/plain", b"help!"), s)
    assert not verdict.matched and "offset 3" in verdict.reason


def test_json_ignores_key_order_but_not_values() -> None:
    s = Settings(comparator="json")
    assert comparators.compare(js({"a": 1, "b": [1, 2]}), js({"b": [1, 2], "a": 1}), s).matched
    verdict = comparators.compare(js({"a": 1, "b": [1, 2]}), js({"a": 1, "b": [2, 1]}), s)
    assert not verdict.matched and verdict.reason == "differs at /b/0"
    # exact, on the same pair, sees the reordered keys as different bytes
    reordered = (js({"a": 1, "b": 2}), js({"b": 2, "a": 1}))
    assert not comparators.compare(*reordered, Settings(comparator="exact")).matched


def test_json_ignored_pointers_and_wildcards() -> None:
    a = js(
        {
            "id": "x1",
            "created": 1,
            "usage": {"tokens": 9},
            "choices": [{"text": "hi", "logprobs": [0.1]}, {"text": "yo", "logprobs": [0.3]}],
        }
    )
    b = js(
        {
            "id": "x2",
            "created": 2,
            "usage": {"tokens": 7},
            "choices": [{"text": "hi", "logprobs": [0.2]}, {"text": "yo", "logprobs": [0.9]}],
        }
    )
    plain = Settings(comparator="json")
    assert comparators.compare(a, b, plain).reason == "differs at /choices/0/logprobs/0"
    ignoring = Settings(
        comparator="json", ignore=("/id", "/created", "/usage", "/choices/*/logprobs")
    )
    assert comparators.compare(a, b, ignoring).matched
    # ignoring does not hide a real difference elsewhere
    c = js({"id": "x3", "choices": [{"text": "HI"}, {"text": "yo"}]})
    assert comparators.compare(a, c, ignoring).reason == "differs at /choices/0/text"


def test_json_pointer_escapes() -> None:
    s = Settings(comparator="json", ignore=("/a~1b", "/m~0n"))
    assert comparators.compare(js({"a/b": 1, "m~n": 2, "k": 3}), js({"k": 3}), s).matched


def test_json_numbers_within_tolerance() -> None:
    s = Settings(comparator="json", tolerance=0.01)
    assert comparators.compare(js({"score": 0.50}), js({"score": 0.509}), s).matched
    assert not comparators.compare(js({"score": 0.50}), js({"score": 0.52}), s).matched
    # booleans are not numbers: true never matches 1, whatever the tolerance
    assert not comparators.compare(js({"ok": True}), js({"ok": 1}), s).matched
    assert not comparators.compare(js({"n": 1}), js({"n": "1"}), s).matched


def test_json_not_json_named() -> None:
    s = Settings(comparator="json")
    bad = Answer(200, "application/json", b"<html>oops</html>")
    assert comparators.compare(js({"a": 1}), bad, s).reason == "the shadow's body is not JSON"
    # both not JSON: compared as bytes
    assert comparators.compare(bad, bad, s).matched


def test_text_similarity_threshold() -> None:
    a = Answer(200, "text/plain", b"The capital of France is Paris.")
    near = Answer(200, "text/plain", b"The capital of France is Paris!")
    far = Answer(200, "text/plain", b"I cannot help with that request.")
    s = Settings(comparator="text", threshold=0.9)
    hit = comparators.compare(a, near, s)
    assert hit.matched and hit.score is not None and 0.9 <= hit.score < 1.0
    miss = comparators.compare(a, far, s)
    assert not miss.matched and miss.score is not None and miss.score < 0.6
    assert "threshold 0.9" in miss.reason


def test_streamed_answers_are_reassembled_before_comparing() -> None:
    one = sse("The ", "answer ", "is 42.")
    other = sse("The answer", " is ", "42.")  # same text, chunked differently, other ids
    assert one.text == other.text == "The answer is 42."
    assert comparators.compare(one, other, Settings(comparator="exact")).matched
    drift = sse("The answer ", "is 41.")
    assert not comparators.compare(one, drift, Settings(comparator="exact")).matched
    assert not comparators.compare(one, drift, Settings(comparator="text", threshold=0.99)).matched
    assert comparators.compare(one, drift, Settings(comparator="text", threshold=0.9)).matched


def test_json_lines_and_chunked_capture() -> None:
    lines = b'{"message":{"content":"Hel"}}\n{"message":{"content":"lo"},"done":true}\n'
    raw = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in lines.splitlines(keepends=True))
    body, complete = streams.dechunk(raw + b"0\r\n\r\n")
    assert complete and body == lines
    assert streams.reassemble(body, "application/x-ndjson") == "Hello"
    assert streams.reassemble(b"data: a\ndata: b\n\ndata: c\n\n", "text/event-stream") == "a\nbc"


def test_openai_choices_by_index() -> None:
    events = [
        {"choices": [{"index": 1, "delta": {"content": "B1"}}]},
        {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"choices": [{"index": 0, "delta": {"content": "A1"}}]},
        {"choices": [], "usage": {"completion_tokens": 2}},
    ]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode()
    assert streams.reassemble(body, "text/event-stream") == "A1\nB1"


def my_comparator(primary: Answer, shadow: Answer) -> float:
    """Word-set overlap (Jaccard): a user's comparator, loaded by module:function."""
    a, b = set(primary.text.split()), set(shadow.text.split())
    return len(a & b) / len(a | b) if a | b else 1.0


def test_user_comparator_by_module_path() -> None:
    fn = comparators.load("test_shadow_comparators:my_comparator")
    a = Answer(200, "text/plain", b"red green blue")
    s = Settings(threshold=0.5)
    assert fn(a, Answer(200, "text/plain", b"blue green red"), s).matched
    verdict = fn(a, Answer(200, "text/plain", b"red yellow black"), s)
    assert not verdict.matched and verdict.score == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("os:system; rm -rf /", "expected exact, json, text"),
        ("no_such_module_xyz:f", "cannot import no_such_module_xyz"),
        ("json:no_such_function", "not a function"),
        ("not-installed-comparator", "no installed package declares it"),
    ],
)
def test_bad_comparators_named_clearly(name: str, expected: str) -> None:
    with pytest.raises(comparators.ComparatorError, match=expected):
        comparators.load(name)


def test_stats_round_trip_and_merge() -> None:
    s = stats.ShadowStats()
    s.record(
        t=1.0,
        primary=1,
        kinds=[],
        primary_latency=0.01,
        shadow_latency=0.02,
        shadow_status=200,
        sample=None,
    )
    s.record(
        t=2.0,
        primary=1,
        kinds=["body", "latency"],
        primary_latency=0.01,
        shadow_latency=0.5,
        shadow_status=200,
        sample={"at": 2.0, "kinds": ["body"]},
    )
    s.skip("tooLarge")
    back = stats.ShadowStats.from_json(json.loads(json.dumps(s.to_json())))
    summary = back.summary()
    assert summary["compared"] == 2 and summary["matched"] == 1 and summary["matchRate"] == 0.5
    assert summary["mismatched"] == {"status": 0, "body": 1, "latency": 1}
    assert summary["notCompared"]["tooLarge"] == 1
    assert summary["latencyDelta"] == {"p50": 0.01, "p99": 0.49}
    back.add(s)
    assert back.compared == 4 and len(back.samples) == 2 and len(back.pairs) == 4


def test_a_stream_format_of_its_own_is_compared_on_its_words() -> None:
    def own(*words: str) -> Answer:
        lines = [json.dumps({"id": f"r{i}", "out": {"piece": w}}) for i, w in enumerate(words)]
        return Answer(200, "application/x-ndjson", ("\n".join(lines) + "\n").encode())

    s = Settings(comparator="exact")
    assert comparators.compare(own("a ", "b"), own("a", " b"), s).matched
    assert not comparators.compare(own("a ", "b"), own("a ", "c"), s).matched
