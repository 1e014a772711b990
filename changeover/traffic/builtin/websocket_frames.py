"""Where WebSocket frames begin and end in a relayed byte stream (RFC 6455 §5.2).

The router relays an upgraded connection's bytes as they come. To end a WebSocket itself
(a drain's grace period is over, its replica stops, it sat idle) it sends each side a close
frame, and a frame may only go between two frames of the stream it joins. A
``FrameTracker`` follows one direction for that: it reads each frame's header (2 to 14
bytes: FIN, opcode, mask bit, a 7-, 16- or 64-bit payload length, the masking key) and
skips the payload by counting, never copying it. A header split across reads is kept
(at most 13 bytes) until the rest arrives. Control frames inside a fragmented message are
frames like any other: a close frame may go between any two (§5.4).

A stream that breaks the framing rules (a 64-bit length with its top bit set, a control
frame longer than 125 bytes or fragmented) makes the tracker ``broken``: the router then
closes that connection without a close frame, as before it knew about frames.

    >>> t = FrameTracker()
    >>> t.feed(b"\\x81\\x05hel")  # a text frame of 5 bytes, 3 of them in this read
    >>> t.at_boundary()
    False
    >>> t.until_boundary(b"lo\\x88\\x02\\x03\\xe8")  # its end, then a close frame (1000)
    2
    >>> t.feed(b"\\x88\\x02\\x03\\xe8")
    >>> t.at_boundary(), t.closed
    (True, True)
    >>> close_frame(1001, b"bye")
    b'\\x88\\x05\\x03\\xe9bye'
"""

from __future__ import annotations

import os
from typing import Final

CLOSE: Final = 0x8  # the close frame's opcode
GOING_AWAY: Final = 1001  # RFC 6455 §7.4.1: "an endpoint is going away"
MAX_REASON: Final = 123  # a close frame's payload is at most 125 bytes: code + reason


class FrameTracker:
    """One direction of a WebSocket connection, frame by frame (see the module docstring)."""

    __slots__ = ("broken", "closed", "head", "left")

    def __init__(self) -> None:
        self.left = 0  # payload bytes of the current frame not seen yet
        self.head = b""  # the start of a frame header that a read cut short
        self.closed = False  # a close frame has been seen (its header, at least)
        self.broken = False  # not WebSocket framing: no frame boundary to trust

    def at_boundary(self) -> bool:
        """Whether the bytes seen so far end exactly where a frame ends."""
        return not self.left and not self.head and not self.broken

    def feed(self, data: bytes) -> None:
        """Account for ``data``, the next bytes of this direction."""
        self._advance(data, False)

    def until_boundary(self, data: bytes) -> int:
        """Account for ``data`` up to the end of the frame in progress and say how many of
        its bytes that took (0: already at a boundary); -1 when ``data`` ends before that
        frame does, or the stream is broken. Bytes after that offset are not accounted
        for: ``feed`` them if they are to be tracked."""
        return self._advance(data, True)

    def _advance(self, data: bytes, stop: bool) -> int:
        n = len(data)
        if self.broken:
            return -1 if stop else n
        if stop and not self.left and not self.head:
            return 0
        pos = 0
        while True:
            left = self.left
            if left:
                if n - pos < left:
                    self.left = left - (n - pos)
                    return -1 if stop else n
                pos += left
                self.left = 0
                if stop:
                    return pos
            if pos >= n:
                return -1 if stop else n
            pos = self._header(data, pos)
            if pos < 0:
                return -1 if stop else n  # an incomplete header (kept) or broken framing
            if stop and not self.left:
                return pos  # a frame without payload has ended

    def _header(self, data: bytes, pos: int) -> int:
        """Read the frame header at ``data[pos:]`` (after ``self.head``): the offset just
        past it, or -1 when it is incomplete (kept in ``head``) or breaks the rules."""
        kept = len(self.head)
        if kept:
            buf = self.head + data[pos : pos + 14 - kept]
            at = 0
        else:
            buf = data  # read in place: no copy for a header that arrived whole
            at = pos
        have = len(buf) - at
        if have < 2:
            self.head = buf[at:]
            return -1
        b0 = buf[at]
        b1 = buf[at + 1]
        length = b1 & 0x7F
        size = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if b1 & 0x80 else 0)
        if have < size:
            self.head = buf[at:]
            return -1
        if length == 126:
            length = (buf[at + 2] << 8) | buf[at + 3]
        elif length == 127:
            if buf[at + 2] & 0x80:
                self.broken = True  # §5.2: the most significant bit must be 0
                return -1
            length = int.from_bytes(buf[at + 2 : at + 10], "big")
        opcode = b0 & 0x0F
        if opcode & 0x8:  # a control frame: not fragmented, at most 125 bytes (§5.5)
            if length > 125 or not b0 & 0x80:
                self.broken = True
                return -1
            if opcode == CLOSE:
                self.closed = True
        self.head = b""
        self.left = length
        return pos + size - kept


def close_frame(code: int, reason: bytes, mask: bool = False) -> bytes:
    """A close frame with ``code`` and ``reason`` (cut to ``MAX_REASON`` bytes); masked
    with a random key when ``mask`` (a client's frames must be, §5.3)."""
    payload = code.to_bytes(2, "big") + reason[:MAX_REASON]
    if not mask:
        return bytes((0x80 | CLOSE, len(payload))) + payload
    key = os.urandom(4)
    masked = bytes([b ^ key[i & 3] for i, b in enumerate(payload)])
    return bytes((0x80 | CLOSE, 0x80 | len(payload))) + key + masked
