"""The WebSocket frame-boundary tracker (``traffic.builtin.websocket_frames``) as a table:
each stream is fed in every split into reads (one byte at a time included), and where
frames end must not depend on how the bytes arrived."""

from __future__ import annotations

import struct

import pytest

from changeover.traffic.builtin import websocket_frames
from changeover.traffic.builtin.websocket_frames import FrameTracker


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = False, ext: int = 0
) -> bytes:
    """One frame; ``ext`` forces the 16- (126) or 64-bit (127) length form."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if ext == 127 or (not ext and n > 0xFFFF):
        head = bytes((b0, m | 127)) + struct.pack(">Q", n)
    elif ext == 126 or (not ext and n > 125):
        head = bytes((b0, m | 126)) + struct.pack(">H", n)
    else:
        head = bytes((b0, m | n))
    if not mask:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))


TEXT = frame(0x1, b"hello")
EMPTY = frame(0x1, b"")
PING = frame(0x9, b"are you there")
CLOSE = frame(0x8, b"\x03\xe8")
MEDIUM = frame(0x2, bytes(300))  # 16-bit length
LONG = frame(0x2, bytes(70_000))  # 64-bit length
LONG_SMALL = frame(0x2, b"abc", ext=127)  # a 64-bit length for 3 bytes: legal
MASKED = frame(0x1, b"from a client", mask=True)
# One message in three fragments with control frames between them (RFC 6455 §5.4).
FRAGMENTS = [
    frame(0x1, b"frag", fin=False),
    PING,
    frame(0x0, b"ment", fin=False),
    frame(0x9, b""),
    frame(0x0, b"ed"),
]

# the frames of a stream, whether a close frame is among them
CASES = {
    "one text frame": ([TEXT], False),
    "empty frame": ([EMPTY, TEXT], False),
    "16-bit length": ([MEDIUM, TEXT], False),
    "64-bit length": ([LONG, TEXT], False),
    "64-bit length, short payload": ([LONG_SMALL, EMPTY], False),
    "masked (client to server)": ([MASKED, frame(0x2, bytes(200), mask=True)], False),
    "fragments with control frames between": (FRAGMENTS, False),
    "ping then close": ([PING, CLOSE], True),
}


def splits(data: bytes) -> list[list[bytes]]:
    """``data`` as one read, byte by byte, and cut at every offset into two reads."""
    out = [[data], [data[i : i + 1] for i in range(len(data))]]
    out += [[data[:i], data[i:]] for i in range(1, len(data))]
    return out


def boundaries(frames: list[bytes]) -> set[int]:
    ends, pos = set(), 0
    for f in frames:
        pos += len(f)
        ends.add(pos)
    return ends


@pytest.mark.parametrize("case", CASES)
def test_frame_ends_do_not_depend_on_how_the_bytes_arrived(case: str) -> None:
    frames, closes = CASES[case]
    ends = boundaries(frames)
    data = b"".join(frames)
    cuts = splits(data) if len(data) < 400 else [[data], [data[:1], data[1:5], data[5:]]]
    for reads in cuts:
        t = FrameTracker()
        pos = 0
        for piece in reads:
            t.feed(piece)
            pos += len(piece)
            assert t.at_boundary() == (pos in ends), (reads, pos)
        assert (t.closed, t.broken) == (closes, False)


@pytest.mark.parametrize("case", CASES)
def test_until_boundary_stops_where_the_frame_in_progress_ends(case: str) -> None:
    frames, _ = CASES[case]
    data = b"".join(frames)
    first = len(frames[0])
    for cut in range(1, min(first, 40)):
        t = FrameTracker()
        t.feed(data[:cut])  # inside the first frame (its header or payload)
        assert not t.at_boundary()
        assert t.until_boundary(data[cut:]) == first - cut
        assert t.at_boundary()
    t = FrameTracker()
    t.feed(data[:1])
    assert t.until_boundary(data[1 : first - 1]) == -1  # the frame has not ended yet
    assert t.until_boundary(data[first - 1 :]) == 1


def test_at_a_boundary_until_boundary_takes_nothing() -> None:
    t = FrameTracker()
    t.feed(TEXT)
    assert t.until_boundary(PING) == 0
    t.feed(PING)
    assert t.at_boundary()


@pytest.mark.parametrize(
    ("stream", "why"),
    [
        (bytes((0x82, 127)) + struct.pack(">Q", 1 << 63) + b"x", "64-bit length, top bit set"),
        (frame(0x9, bytes(126)), "control frame over 125 bytes"),
        (frame(0x8, b"\x03\xe8", fin=False), "fragmented control frame"),
    ],
)
def test_broken_framing_is_noticed_and_never_a_boundary(stream: bytes, why: str) -> None:
    for reads in [[stream], [stream[i : i + 1] for i in range(len(stream))]]:
        t = FrameTracker()
        for piece in reads:
            t.feed(piece)
        assert t.broken, why
        assert not t.at_boundary()
        assert t.until_boundary(TEXT) == -1


def test_a_header_split_across_reads_keeps_only_the_header_bytes() -> None:
    t = FrameTracker()
    t.feed(LONG[:5])  # 2 + 3 of the 8 length bytes
    assert t.head == LONG[:5]
    t.feed(LONG[5:12])
    assert t.head == b"" and t.left == 70_000 - 2


def test_close_frames_the_router_sends() -> None:
    plain = websocket_frames.close_frame(1001, b"draining")
    assert plain == b"\x88\x0a\x03\xe9draining"
    masked = websocket_frames.close_frame(1001, b"draining", mask=True)
    assert masked[:2] == b"\x88\x8a"
    key, body = masked[2:6], masked[6:]
    assert bytes(b ^ key[i & 3] for i, b in enumerate(body)) == b"\x03\xe9draining"
    t = FrameTracker()
    t.feed(masked)
    assert t.closed and t.at_boundary()
    long_reason = websocket_frames.close_frame(1001, b"x" * 500)
    assert len(long_reason) == 2 + 125  # a control frame's payload limit
