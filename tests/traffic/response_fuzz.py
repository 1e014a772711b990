"""Response-side fuzzing of the builtin router (issue 11 §2 item 1, "the same on
responses"): generated upstream responses (lengths and transfer codings that conflict,
``Connection`` naming framing fields, bytes past the end, a forged second response) go
through the router to a client that then sends a second request on the same connection.

The property: what the client receives always parses strictly, one response per request,
never a byte of one response inside another's framing (the second answer is the second
request's), and a first response the router passes on carries the body llhttp read.
"""

from __future__ import annotations

import asyncio
import dataclasses

import httptools
from hypothesis import strategies as st

SECOND = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond"
FORGED = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"


class ResponseUpstream:
    """Answers ``GET /first`` with ``response`` (then closes when ``close_after``) and
    any other request with ``SECOND``."""

    def __init__(self) -> None:
        self.response = b""
        self.close_after = False
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                first = head.startswith(b"GET /first ")
                writer.write(self.response if first else SECOND)
                await writer.drain()
                if first and self.close_after:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            writer.close()


@dataclasses.dataclass
class Parsed:
    status: int
    body: bytes
    complete: bool


def llhttp_reading(response: bytes, eof: bool) -> Parsed | None:
    """How llhttp reads ``response`` (to a GET), the connection closing after it when
    ``eof``; None when llhttp refuses it."""
    got: dict[str, object] = {"body": b"", "done": False}

    class P:
        def on_body(self, b: bytes) -> None:
            got["body"] = got["body"] + b  # type: ignore[operator]

        def on_message_complete(self) -> None:
            got["done"] = True

    parser = httptools.HttpResponseParser(P())
    try:
        parser.feed_data(response)
        if eof and not got["done"]:
            parser.feed_data(b"")
    except httptools.HttpParserError:
        return None
    body = got["body"]
    assert isinstance(body, bytes)
    return Parsed(parser.get_status_code(), body, bool(got["done"]))


def client_responses(data: bytes) -> tuple[list[Parsed], bytes]:
    """The responses a strict client reads from ``data``, and what it could not read."""
    out: list[Parsed] = []
    rest = data
    while rest:
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            return out, rest
        lines = rest[:end].split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        fields = [ln.partition(b":") for ln in lines[1:]]
        named = {n.strip().lower(): v.strip() for n, _, v in fields}
        if sum(1 for n, _, _ in fields if n.strip().lower() == b"content-length") > 1:
            return out, rest
        pos = end + 4
        if status in (204, 304) or status < 200:
            body = b""
        elif b"transfer-encoding" in named:
            if named[b"transfer-encoding"].lower() != b"chunked" or b"content-length" in named:
                return out, rest
            body = b""
            while True:
                eol = rest.find(b"\r\n", pos)
                if eol < 0:
                    return out, rest
                size = int(rest[pos:eol].split(b";")[0], 16)
                pos = eol + 2
                if size == 0:
                    pos += 2
                    break
                body += rest[pos : pos + size]
                pos += size + 2
        elif b"content-length" in named:
            length = int(named[b"content-length"])
            body = rest[pos : pos + length]
            pos += length
        else:  # close-delimited
            body = rest[pos:]
            pos = len(rest)
        out.append(Parsed(status, body, True))
        rest = rest[pos:]
    return out, b""


BODIES = [b"", b"hello", b"hello" + FORGED, b"0\r\n\r\n" + FORGED]


@st.composite
def response(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(an upstream response, whether the upstream closes after it)."""
    body = draw(st.sampled_from(BODIES))
    fields: list[bytes] = []
    framing = draw(st.sampled_from(["length", "length", "chunked", "none", "both", "codings"]))
    if framing in ("length", "both"):
        declared = len(body) + draw(st.sampled_from([0, 0, 0, -1, 1]))
        fields.append(b"content-length: %d" % max(declared, 0))
        if draw(st.integers(0, 5)) == 0:
            fields.append(b"content-length: %d" % max(declared, 0))
    if framing in ("chunked", "both", "codings"):
        coding = b"chunked"
        if framing == "codings":
            coding = draw(st.sampled_from([b"chunked, gzip", b"gzip, chunked", b"gzip"]))
        fields.append(b"transfer-encoding: " + coding)
        if b"chunked" in coding.split(b", ")[-1:]:
            body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    if draw(st.booleans()):
        tokens = draw(
            st.lists(
                st.sampled_from(
                    [b"content-length", b"transfer-encoding", b"close", b"keep-alive", b"x-a"]
                ),
                min_size=1,
                max_size=2,
            )
        )
        fields.append(b"connection: " + b", ".join(tokens))
    fields = draw(st.permutations(fields))
    status = draw(st.sampled_from([b"200 OK", b"200 OK", b"404 Not Found", b"204 No Content"]))
    head = b"HTTP/1.1 " + status + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"
    # A close-delimited body ends only when the upstream closes.
    return head + body, draw(st.booleans()) or framing in ("codings", "none")
