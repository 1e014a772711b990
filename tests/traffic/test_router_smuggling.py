"""Request and response smuggling through the builtin router (issue 11 §2 item 1).

A ``Connection`` header may name fields that are hop-by-hop for this one connection; it
must never remove the fields that frame the message (``Content-Length``,
``Transfer-Encoding``) or ``Host``. Otherwise a body the router forwards is parsed by the
upstream as a second request on a pooled connection (and its answer goes to the next
client), or a response body is spliced into the client's next response.
"""

from __future__ import annotations

import asyncio

import router_helpers
from router_helpers import RouterFactory, UpstreamFactory, ep
from test_router_fastpath import answer, one_revision, raw_upstream

from changeover.endpoints import Endpoint
from changeover.traffic.builtin import upstream as upstream_mod
from changeover.traffic.builtin import wire

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nhost: evil\r\n\r\n"


async def test_connection_naming_content_length_cannot_smuggle_a_request(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, up = await one_revision(make_router, upstream)
    attack = (
        b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: content-length\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(SMUGGLED), SMUGGLED)
    )
    statuses = []
    for data in (attack, b"GET /victim HTTP/1.1\r\nhost: x\r\ncookie: secret=1\r\n\r\n"):
        # The victim comes next, on a new client connection but the same pooled upstream
        # connection: it must get its own answer, not the smuggled request's.
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(data)
        try:
            statuses.append((await asyncio.wait_for(router_helpers.read_reply(reader), 5)).status)
        except asyncio.IncompleteReadError:
            statuses.append(0)
        writer.close()
    assert [r.path for r in up.requests] == ["/echo", "/victim"]  # never "/smuggled"
    assert statuses == [200, 200]
    assert up.requests[0].body == SMUGGLED
    assert up.requests[0].headers["content-length"] == str(len(SMUGGLED))


async def test_connection_tokens_never_remove_transfer_encoding_or_host(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    router, up = await one_revision(make_router, upstream)
    body = b"5\r\nhello\r\n0\r\n\r\n"
    attack = (
        b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: transfer-encoding, host, keep-alive\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + body
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(attack + b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n")
    reply = await asyncio.wait_for(router_helpers.read_reply(reader), 5)
    writer.close()
    assert reply.status == 200
    seen = up.requests[0]
    assert seen.body == b"hello"
    assert seen.headers["host"] == "x"
    assert seen.headers["transfer-encoding"] == "chunked"
    assert all(r.path != "/smuggled" for r in up.requests)


async def test_a_rebuilt_head_is_reframed_from_the_parsed_length(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    """HTTP/1.0 heads are rebuilt: their body still goes with its parsed length."""
    router, up = await one_revision(make_router, upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(
        b"POST /echo HTTP/1.0\r\nconnection: keep-alive, content-length\r\n"
        b"content-length: 5\r\n\r\nhello"
    )
    reply = await asyncio.wait_for(router_helpers.read_reply(reader), 5)
    writer.close()
    assert reply.status == 200
    assert up.requests[0].body == b"hello"
    assert up.requests[0].headers["content-length"] == "5"


async def test_upstream_connection_naming_content_length_keeps_the_response_framed(
    make_router: RouterFactory,
) -> None:
    """An upstream's ``Connection: content-length`` must not strip the response's length:
    the client would then read the next response as part of this body."""
    response = (
        b"HTTP/1.1 200 OK\r\nconnection: content-length, x-drop\r\nx-drop: 1\r\n"
        b"content-length: 5\r\n\r\nhello"
    )
    async with raw_upstream(answer(response, keep_open=True)) as port:
        router = await make_router()
        await router.set_backends(1, [Endpoint("127.0.0.1", port)])
        await router.set_weight({1: 100})
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
    lower = head.lower()
    assert b"content-length: 5\r\n" in lower
    assert b"x-drop" not in lower


async def test_chunked_then_gzip_response_is_close_delimited_as_llhttp_frames_it(
    make_router: RouterFactory,
) -> None:
    """``Transfer-Encoding: chunked, gzip``: chunked is not the final coding, so the body
    runs to the connection's close (RFC 9112 §6.3, llhttp). Bytes that look like a chunked
    end followed by a second response are body, and reach the client as body."""
    body = b"0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"
    response = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n" + body
    async with raw_upstream(answer(response)) as port:
        router = await make_router()
        await router.set_backends(1, [Endpoint("127.0.0.1", port)])
        await router.set_weight({1: 100})
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        reply = await asyncio.wait_for(router_helpers.read_reply(reader), 5)
        writer.close()
    assert reply.status == 200
    assert reply.body == body


def test_framing_of_follows_llhttp_for_transfer_codings() -> None:
    def framing(head: bytes) -> int:
        return upstream_mod.framing_of(wire.response_fields(head.lower()), 200, False)[0]

    assert framing(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n") == upstream_mod.CHUNKED
    assert (
        framing(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n")
        == upstream_mod.CHUNKED
    )
    assert framing(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n") == (
        upstream_mod.CLOSE
    )
    assert framing(b"HTTP/1.1 200 OK\r\ntransfer-encoding: xchunked\r\n\r\n") == upstream_mod.CLOSE
    assert (
        framing(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\n")
        == upstream_mod.CLOSE
    )
    assert (
        framing(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ncontent-length: 3\r\n\r\n")
        == upstream_mod.CLOSE
    )


async def test_a_clients_shadow_mark_and_forwarded_proto_are_replaced(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    """Issue 11 §2 item 5: only the router marks mirror copies, and only it says which
    scheme it was reached by; X-Forwarded-For is appended to, as a proxy does."""
    v1, shadow = await upstream("v1"), await upstream("shadow")
    router = await make_router()
    await router.set_backends(1, [ep(v1)])
    await router.set_backends(2, [ep(shadow)])
    await router.set_weight({1: 100})
    await router.set_mirror_route("m", 2, 100, [])
    for version in (b"1.1", b"1.0"):  # the fast path and a rebuilt head
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(
            b"GET /echo HTTP/%s\r\nhost: x\r\nX-Changeover-Shadow: 1\r\n"
            b"X-Forwarded-Proto: https\r\nx-forwarded-for: 6.6.6.6\r\n\r\n" % version
        )
        assert (await asyncio.wait_for(router_helpers.read_reply(reader), 5)).status == 200
        writer.close()
    await router.mirror_idle()
    for seen in v1.requests:
        assert "x-changeover-shadow" not in seen.headers
        assert seen.headers["x-forwarded-proto"] == "http"
        assert seen.headers["x-forwarded-for"] == "6.6.6.6, 127.0.0.1"
    assert len(shadow.requests) == 2
    for copy in shadow.requests:
        assert copy.headers["x-changeover-shadow"] == "1"
        assert copy.headers["x-forwarded-proto"] == "http"


async def test_http09_and_other_versions_are_refused_not_forwarded(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    """Found by the differential fuzzer: ``GET /`` without a version followed by field
    lines was one request to the router (llhttp reads HTTP/0.9 with fields) and a bare
    HTTP/0.9 request to nginx, which then closed: the two disagreed on where requests
    end. Only HTTP/1.0 and 1.1 are proxied now."""
    router, up = await one_revision(make_router, upstream)
    for line in (b"GET /", b"GET / HTTP/2.0"):
        answer = await router_helpers.raw_request(
            router.port,
            line + b"\r\nconnection: keep-alive\r\n\r\nGET /end HTTP/1.1\r\nhost: x\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 505 "), answer
    assert up.requests == []


async def test_close_wins_over_keep_alive_and_nothing_after_it_is_read(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    """Found by the differential fuzzer: ``Connection: close, keep-alive`` on HTTP/1.0 kept
    the connection open (llhttp's reading) and the next request was forwarded; nginx
    closes after the response, as the client asked."""
    router, up = await one_revision(make_router, upstream)
    answer = await router_helpers.raw_request(
        router.port,
        b"GET /first HTTP/1.0\r\nconnection: close, keep-alive\r\n\r\n"
        b"GET /second HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    assert answer.count(b"HTTP/1.1 200 ") == 1
    assert b"connection: close" in answer.lower()
    assert [r.path for r in up.requests] == ["/first"]


async def test_an_http11_request_needs_a_host_field(
    make_router: RouterFactory, upstream: UpstreamFactory
) -> None:
    """RFC 9112 §3.2, as nginx: 400 for HTTP/1.1 without Host (any spelling of the name
    counts), in its turn in a pipeline (the request before it is answered), then the
    connection closes; HTTP/1.0 without Host is still forwarded."""
    router, up = await one_revision(make_router, upstream)
    out = await router_helpers.raw_request(
        router.port,
        b"GET /first HTTP/1.1\r\nhost: x\r\n\r\n"
        b"POST /nohost HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello"
        b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 200 ")
    assert out.count(b"HTTP/1.1 400 ") == 1 and b"Host" in out and b"/after" not in out
    out = await router_helpers.raw_request(
        router.port, b"GET /caps HTTP/1.1\r\nHOST: x\r\nconnection: close\r\n\r\n"
    )
    assert out.startswith(b"HTTP/1.1 200 ")
    out = await router_helpers.raw_request(router.port, b"GET /old HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")
    assert [r.path for r in up.requests] == ["/first", "/caps", "/old"]
    assert router.metrics.bad_requests == 1
