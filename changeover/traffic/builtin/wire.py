"""HTTP/1.1 bytes for the builtin proxy: request and response heads, canned answers.

Pure functions over ``(lower-cased name, value)`` header lists, used by ``builtin.proxy``
(forwarding) and ``builtin.mirror`` (copies). Header names are forwarded lower-cased:
HTTP names are case-insensitive and lower-casing once lets routing and filtering compare
bytes without further work.

    >>> head = request_head(b"GET", b"/x", [(b"host", b"a"), (b"connection", b"close")],
    ...                     client_ip=b"10.0.0.7", framing=b"")
    >>> head.decode().split("\\r\\n")
    ['GET /x HTTP/1.1', 'host: a', 'x-forwarded-for: 10.0.0.7', 'x-forwarded-proto: http', '', '']
"""

from __future__ import annotations

import http

# RFC 9110 §7.6.1 hop-by-hop fields, plus the framing fields the proxy sets itself, plus
# ``expect`` (the proxy answers 100-continue itself, like nginx).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"expect",
    }
)

CHUNKED = b"transfer-encoding: chunked\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """Field names a ``Connection`` header lists (they are hop-by-hop too)."""
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())


def request_head(
    method: bytes,
    url: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    client_ip: bytes,
    framing: bytes,
    extra_hop: frozenset[bytes] = frozenset(),
) -> bytes:
    """The head sent upstream: hop-by-hop fields dropped, X-Forwarded-For appended to.

    ``framing`` is ``CHUNKED``, ``b""``, or ``b"content-length: N\\r\\n"`` when the proxy
    re-frames the body; an original content-length is kept unless ``framing`` replaces it.
    """
    parts = [method, b" ", url, b" HTTP/1.1\r\n"]
    xff: bytes | None = None
    proto = False
    drop_length = framing.startswith(b"content-length")
    for name, value in headers:
        if name in HOP_BY_HOP or name in extra_hop:
            continue
        if name == b"x-forwarded-for":
            xff = value if xff is None else xff + b", " + value
            continue
        if name == b"content-length" and drop_length:
            continue
        if name == b"x-forwarded-proto":
            proto = True
        parts += (name, b": ", value, b"\r\n")
    parts += (b"x-forwarded-for: ", client_ip if xff is None else xff + b", " + client_ip, b"\r\n")
    if not proto:
        parts.append(b"x-forwarded-proto: http\r\n")
    parts += (framing, b"\r\n")
    return b"".join(parts)


def response_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    extra: bytes,
    extra_hop: frozenset[bytes] = frozenset(),
) -> bytes:
    """The head sent to the client; ``extra`` carries framing, connection and our headers."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason or _reason(status))]
    for name, value in headers:
        if name in HOP_BY_HOP or name in extra_hop:
            continue
        parts += (name, b": ", value, b"\r\n")
    parts += (extra, b"\r\n")
    return b"".join(parts)


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def simple_response(
    status: int,
    body: bytes,
    *,
    keep_alive: bool,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: bytes = b"",
) -> bytes:
    """A complete small response the proxy answers itself (400, 502, 503, 504...)."""
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _reason(status)),
            b"content-type: ",
            content_type,
            b"\r\ncontent-length: %d\r\n" % len(body),
            extra,
            b"" if keep_alive else b"connection: close\r\n",
            b"\r\n",
            body,
        )
    )


MAINTENANCE_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Down for maintenance</title></head>
<body style="font-family:sans-serif;margin:4em auto;max-width:32em">
<h1>Down for maintenance</h1>
<p>This service is being updated and will be back shortly. Please try again in a moment.</p>
</body></html>
"""


def maintenance_response(retry_after: int, *, keep_alive: bool) -> bytes:
    return simple_response(
        503,
        MAINTENANCE_PAGE,
        keep_alive=keep_alive,
        content_type=b"text/html; charset=utf-8",
        extra=b"retry-after: %d\r\n" % retry_after,
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)
