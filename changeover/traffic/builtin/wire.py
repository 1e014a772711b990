"""HTTP/1.1 bytes for the builtin proxy: request and response heads, canned answers.

The fast path forwards heads as received: a request head without hop-by-hop, framing or
forwarding fields gets ``forwarding_tail`` appended; a response head loses its hop-by-hop
lines (``clean_response_head``). Everything else is rebuilt from ``(lower-cased name,
value)`` lists by ``request_head`` / ``response_head`` (used by ``builtin.proxy`` on the
slow path and by ``builtin.mirror`` for copies).

    >>> head = request_head(b"GET", b"/x", [(b"host", b"a"), (b"connection", b"close")],
    ...                     client_ip=b"10.0.0.7", framing=b"")
    >>> head.decode().split("\\r\\n")
    ... # doctest: +NORMALIZE_WHITESPACE
    ['GET /x HTTP/1.1', 'host: a', 'x-forwarded-for: 10.0.0.7', 'x-forwarded-proto: http',
     'forwarded: for=10.0.0.7;proto=http', '', '']
"""

from __future__ import annotations

import http
import re
from collections.abc import Sequence

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

# Request fields the fast path must see: hop-by-hop, framing and forwarding fields. A raw
# request head without any of them (and HTTP/1.1) is forwarded as is, plus our forwarding
# fields; otherwise it is rebuilt by ``request_head``.
REQUEST_FIELDS = (
    *sorted(HOP_BY_HOP),
    b"content-length",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"forwarded",
    b"x-changeover-shadow",
)
# Fields only the router may set: a client's copy is dropped. ``x-changeover-shadow``
# marks mirror copies (a service may skip side effects for them), ``x-forwarded-proto``
# is the scheme the router was reached by (a client could claim https).
TRUSTED = frozenset({b"x-changeover-shadow", b"x-forwarded-proto"})
# Response fields that are hop-by-hop, or that decide the body's framing. Matched against
# the lower-cased head (case-sensitive matching of a lower-cased copy is about twice as fast
# as an IGNORECASE pattern, and these fields' values are compared case-insensitively).
_RESPONSE_FIELDS = re.compile(
    rb"(\r\n(connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade|"
    rb"proxy-authenticate|proxy-authorization|content-length)[ \t]*:[ \t]*([^\r\n]*))"
)
# (the whole line with its leading CRLF, name, value); lower-cased for response fields.
Field = tuple[bytes, bytes, bytes]


def fields_regex(names: Sequence[bytes]) -> re.Pattern[bytes]:
    """A regex finding ``(line, name, value)`` of the fields ``names`` in a head, any case.

    A lookahead on the names' first letters lets the scan skip most lines at their first
    byte instead of trying every name there (``python -m bench.micro --browser``).
    """
    alternatives = b"|".join([re.escape(n) for n in names])
    firsts = b"".join([re.escape(bytes([c])) for c in sorted({n[0] for n in names})])
    return re.compile(
        rb"(\r\n(?=[" + firsts + rb"])(" + alternatives + rb")[ \t]*:[ \t]*([^\r\n]*))", re.I
    )


def response_fields(head: bytes) -> list[Field]:
    """The hop-by-hop and framing fields of a response head, in order, lower-cased."""
    fields: list[Field] = _RESPONSE_FIELDS.findall(head.lower())
    return fields


def parse_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(start line, [(lower-cased name, value)]) of a head httptools has validated."""
    lines = head.split(b"\r\n")
    out = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            out.append((name.strip().lower(), value.strip()))
    return lines[0], out


def clean_response_head(head: bytes, fields: list[Field], extra: bytes) -> bytes:
    """The raw upstream head for the client: hop-by-hop fields (and the fields a
    ``Connection`` header names) dropped, HTTP/1.1 status line, ``extra`` appended.
    ``fields`` are ``response_fields(head)`` (lower-cased, in order of appearance)."""
    named: set[bytes] | None = None
    drop: list[bytes] = []
    for line, name, value in fields:
        if name == b"content-length":
            continue
        if name == b"connection" and value != b"keep-alive" and value != b"close":
            for token in value.split(b","):
                token = token.strip()
                if token and token not in (b"keep-alive", b"close") and token not in NEVER_HOP:
                    named = named or set()
                    named.add(token)
        drop.append(line)
    if drop:
        # The lines are lower-cased copies: find them in the lower-cased head, in order,
        # and cut the same spans out of the original.
        low = head.lower()
        parts = []
        at = 0
        for line in drop:
            pos = low.find(line, at)
            parts.append(head[at:pos])
            at = pos + len(line)
        parts.append(head[at:])
        head = b"".join(parts)
    if named:
        status, headers = parse_head(head)
        kept = [(n, v) for n, v in headers if n not in named]
        head = b"".join([status, b"\r\n", *[n + b": " + v + b"\r\n" for n, v in kept], b"\r\n"])
    if not head.startswith(b"HTTP/1.1 "):
        head = b"HTTP/1.1" + head[8:]
    return head[:-2] + extra + b"\r\n"


CHUNKED = b"transfer-encoding: chunked\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


# Fields that frame a message or name its target: a ``Connection`` header naming them is
# ignored for them (they are never dropped), so a client cannot make the proxy forward a
# body without its framing (request smuggling). nginx and HAProxy ignore these tokens too.
NEVER_HOP = frozenset({b"content-length", b"transfer-encoding", b"host"})


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """Field names a ``Connection`` header lists (hop-by-hop too), but ``NEVER_HOP``'s.

    >>> sorted(connection_tokens(b"Content-Length, X-Trace , keep-alive"))
    [b'keep-alive', b'x-trace']
    """
    tokens = frozenset(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens - NEVER_HOP


def final_coding_chunked(values: Sequence[bytes]) -> bool:
    """Whether ``chunked`` is the last transfer coding of these ``Transfer-Encoding``
    values (in order): the one case where the body is chunked (RFC 9112 §6.3, llhttp).

    >>> final_coding_chunked([b"gzip, chunked"]), final_coding_chunked([b"chunked, gzip"])
    (True, False)
    """
    last = b""
    for value in values:
        for token in value.split(b","):
            token = token.strip()
            if token:
                last = token.lower()
    return last == b"chunked"


def request_head(
    method: bytes,
    url: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    client_ip: bytes,
    framing: bytes,
    extra_hop: frozenset[bytes] = frozenset(),
    extra: bytes = b"",
) -> bytes:
    """The head sent upstream: hop-by-hop fields and the client's ``TRUSTED`` fields
    dropped, X-Forwarded-For and Forwarded appended to, X-Forwarded-Proto set, ``extra``
    (the router's own fields, e.g. the shadow mark) added.

    ``framing`` is ``CHUNKED``, ``b""``, or ``b"content-length: N\\r\\n"`` when the proxy
    re-frames the body; an original content-length is kept unless ``framing`` replaces it.
    """
    parts = [method, b" ", url, b" HTTP/1.1\r\n"]
    xff: bytes | None = None
    forwarded: bytes | None = None
    drop_length = framing.startswith(b"content-length")
    for name, value in headers:
        if name in HOP_BY_HOP or name in extra_hop or name in TRUSTED:
            continue
        if name == b"x-forwarded-for":
            xff = value if xff is None else xff + b", " + value
            continue
        if name == b"content-length" and drop_length:
            continue
        if name == b"forwarded":
            forwarded = value if forwarded is None else forwarded + b", " + value
            continue
        parts += (name, b": ", value, b"\r\n")
    parts += (b"x-forwarded-for: ", client_ip if xff is None else xff + b", " + client_ip, b"\r\n")
    parts.append(b"x-forwarded-proto: http\r\n")
    parts += (b"forwarded: ", forwarded + b", " if forwarded else b"", forwarded_for(client_ip))
    parts += (extra, framing, b"\r\n")
    return b"".join(parts)


def forwarded_for(client_ip: bytes) -> bytes:
    """The RFC 7239 element for one client: ``for=1.2.3.4;proto=http`` (IPv6 quoted)."""
    node = b'"[' + client_ip + b']"' if b":" in client_ip else client_ip
    return b"for=" + node + b";proto=http\r\n"


def forwarding_tail(client_ip: bytes) -> bytes:
    """What the fast path appends to a raw request head without forwarding fields."""
    return (
        b"x-forwarded-for: "
        + client_ip
        + b"\r\nx-forwarded-proto: http\r\nforwarded: "
        + forwarded_for(client_ip)
        + b"\r\n"
    )


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
