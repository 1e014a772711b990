"""The builtin router's routing table: an immutable snapshot, swapped by one assignment.

``BuiltinRouter``'s setters build a new ``RoutingTable`` (``dataclasses.replace``) and assign
it to the proxy state; the proxy reads ``state.table`` once per request, so a request sees
either the old table or the new one, never a mix, and after a setter returns every new
request uses the new one. Everything a request needs is precomputed here: matchers are
compiled, header names lower-cased, and weights expanded into a 100-slot wheel.

Routing order per request (``RoutingTable.route``):

1. header/cookie match routes, in the order they were set;
2. the sticky split: a stable hash of the user key puts the user in bucket 0..99, and
   buckets below ``weight`` go to the sticky revision (the same user always lands on the
   same side; users outside the bucket, and requests without a key, fall through);
3. the weights wheel.

Weights are exact, not random: the wheel is the sequence smooth weighted round-robin
produces over 100 picks, so every 100 consecutive requests carry exactly the set weights,
spread evenly (90/10 gives nine 1s then a 2, not ninety 1s then ten 2s).

    >>> wheel = build_wheel({1: 90, 2: 10})
    >>> len(wheel), wheel.count(2), wheel[:10]
    (100, 10, (1, 1, 1, 1, 1, 2, 1, 1, 1, 1))
"""

from __future__ import annotations

import dataclasses
import functools
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from changeover import regex
from changeover.spec import models
from changeover.traffic.builtin import compare as compare_mod
from changeover.traffic.builtin import wire

Headers = list[tuple[bytes, bytes]]  # (lower-cased name, value), as the proxy parses them


@dataclasses.dataclass(frozen=True, slots=True)
class Matcher:
    """One compiled ``RouteMatch``: a header or a cookie, and exact / prefix / regex.

    Regexes match the whole value (as Envoy, Istio and Gateway API do).
    """

    header: bytes | None
    cookie: bytes | None
    exact: bytes | None = None
    prefix: bytes | None = None
    # ``changeover.regex.full_matcher``: RE2, linear in the value's length (a backtracking
    # regex on a client-controlled header is a denial of service).
    regex: Callable[[bytes], bool] | None = None

    @classmethod
    def compile(cls, match: models.RouteMatch) -> Matcher:
        value = match.header_value if match.header_name is not None else match.cookie_value
        assert value is not None  # RouteMatch validates one complete kind
        return cls(
            header=match.header_name.lower().encode() if match.header_name else None,
            cookie=match.cookie_name.encode() if match.cookie_name else None,
            exact=value.exact.encode() if value.exact is not None else None,
            prefix=value.prefix.encode() if value.prefix is not None else None,
            regex=regex.full_matcher(value.regex) if value.regex is not None else None,
        )

    def matches(self, headers: dict[bytes, bytes], cookies: dict[bytes, bytes]) -> bool:
        got = headers.get(self.header) if self.header is not None else None
        if self.cookie is not None:
            got = cookies.get(self.cookie)
        if got is None:
            return False
        if self.exact is not None:
            return got == self.exact
        if self.prefix is not None:
            return got.startswith(self.prefix)
        assert self.regex is not None
        return self.regex(got)


def compile_matchers(match: Sequence[models.RouteMatch]) -> tuple[Matcher, ...]:
    return tuple(Matcher.compile(m) for m in match)


def _any(
    matchers: tuple[Matcher, ...], headers: dict[bytes, bytes], cookies: dict[bytes, bytes]
) -> bool:
    # A loop, not any(<generator>): this runs per request and the generator costs more
    # than the one or two matchers a route usually has.
    for m in matchers:  # noqa: SIM110
        if m.matches(headers, cookies):
            return True
    return False


@dataclasses.dataclass(frozen=True, slots=True)
class HeaderRoute:
    name: str
    revision: int
    matchers: tuple[Matcher, ...]  # any of them


@dataclasses.dataclass(frozen=True, slots=True)
class StickySplit:
    revision: int
    header: bytes | None
    cookie: bytes | None
    weight: int  # percent of users, 0..100


@dataclasses.dataclass(frozen=True, slots=True)
class FlagRoute:
    """A flag this router evaluates per request (``Flag.spec.router``): the variant's name
    goes upstream in ``header``, replacing any the client sent."""

    name: str
    header: bytes  # lower-cased
    flag: Any  # changeover.flags.evaluate.CompiledFlag (plain Python, not compiled here)
    context: tuple[tuple[str, bytes | None, bytes | None], ...]  # (attribute, header, cookie)

    def variant(self, headers: dict[bytes, bytes], cookies: dict[bytes, bytes]) -> str:
        """The variant this request gets."""
        context: dict[str, str] = {}
        for attribute, header, cookie in self.context:
            value = headers.get(header) if header is not None else cookies.get(cookie or b"")
            if value is not None:
                context[attribute] = value.decode("latin-1")
        variant: str = self.flag.evaluate(context).variant
        return variant

    def line(self, headers: dict[bytes, bytes], cookies: dict[bytes, bytes]) -> bytes:
        """``header: variant\r\n`` for this request."""
        return self.header + b": " + self.variant(headers, cookies).encode() + b"\r\n"


def bucket(key: bytes) -> int:
    """The user's bucket 0..99: stable across processes and restarts (crc32, not hash())."""
    return zlib.crc32(key) % 100


class MirrorRoute:
    """A mirror route. Not frozen on purpose: ``counter`` advances per eligible request.

    Sampling is a counter, not a coin: request number n (from 0) is copied when
    ``(n + 1) * percentage // 100`` steps up, so 25% copies exactly every fourth request.
    """

    __slots__ = ("compare", "counter", "matchers", "name", "percentage", "revision")

    def __init__(
        self,
        *,
        name: str,
        revision: int,
        percentage: int,
        matchers: tuple[Matcher, ...],
        compare: compare_mod.RouteCompare | None = None,
    ) -> None:
        self.name = name
        self.revision = revision
        self.percentage = percentage
        self.matchers = matchers
        self.compare = compare  # answers compared with the primary's (a share of the copies)
        self.counter = 0

    def sample(self) -> bool:
        n = self.counter
        self.counter = (n + 1) % 100
        return (n + 1) * self.percentage // 100 != n * self.percentage // 100


def build_wheel(weights: Mapping[int, int]) -> tuple[int, ...]:
    """100 slots in smooth weighted round-robin order (nginx's algorithm); empty if no weight."""
    live = sorted((rev, w) for rev, w in weights.items() if w > 0)
    if not live:
        return ()
    total = sum(w for _, w in live)
    current = dict.fromkeys([rev for rev, _ in live], 0)
    wheel: list[int] = []
    for _ in range(100):
        for rev, w in live:
            current[rev] += w
        best = max(live, key=lambda rw: current[rw[0]])[0]
        current[best] -= total
        wheel.append(best)
    return tuple(wheel)


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingTable:
    weights: tuple[tuple[int, int], ...] = ()  # (revision, percent), as set
    wheel: tuple[int, ...] = ()
    header_routes: tuple[HeaderRoute, ...] = ()
    sticky: StickySplit | None = None
    mirrors: tuple[MirrorRoute, ...] = ()
    preview: int | None = None
    maintenance_retry_after: int | None = None  # None: not in maintenance
    flags: tuple[FlagRoute, ...] = ()
    flag_headers: frozenset[bytes] = frozenset()  # derived: the headers flags write
    # Derived, so the hot path can skip building header dicts when nothing reads them.
    # ``compares``: shadow revision → its mirror route's comparison (``builtin.compare``).
    compares: dict[int, compare_mod.RouteCompare] = dataclasses.field(default_factory=dict)
    needs_headers: bool = False
    needs_cookies: bool = False
    # Finds the fast path's fields (``wire.REQUEST_FIELDS``) plus the routing headers.
    request_fields: re.Pattern[bytes] = dataclasses.field(default_factory=lambda: _base_fields())

    def replace(self, **changes: object) -> RoutingTable:
        """A new table with ``changes`` applied and the derived fields recomputed."""
        table: RoutingTable = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        matchers = [m for r in table.header_routes for m in r.matchers]
        matchers += [m for r in table.mirrors for m in r.matchers]
        cookies = any(m.cookie is not None for m in matchers) or (
            table.sticky is not None and table.sticky.cookie is not None
        )
        cookies = cookies or any(c is not None for f in table.flags for _, _, c in f.context)
        headers = bool(matchers) or table.sticky is not None or bool(table.flags)
        compares = {m.revision: m.compare for m in table.mirrors if m.compare is not None}
        object.__setattr__(table, "compares", compares)
        object.__setattr__(table, "needs_headers", headers)
        object.__setattr__(table, "needs_cookies", cookies)
        names = {m.header for m in matchers if m.header is not None}
        if table.sticky is not None and table.sticky.header is not None:
            names.add(table.sticky.header)
        flag_headers = frozenset(f.header for f in table.flags)
        object.__setattr__(table, "flag_headers", flag_headers)
        names |= flag_headers
        names |= {h for f in table.flags for _, h, _ in f.context if h is not None}
        if cookies:
            names.add(b"cookie")
        object.__setattr__(table, "request_fields", _request_fields(frozenset(names)))
        return table

    def with_weights(self, weights: Mapping[int, int]) -> RoutingTable:
        return self.replace(
            weights=tuple(sorted((r, w) for r, w in weights.items() if w > 0)),
            wheel=build_wheel(weights),
        )

    def match(self, headers: dict[bytes, bytes], cookies: dict[bytes, bytes]) -> int | None:
        """The revision chosen by match routes or the sticky split; None: use the wheel.

        The wheel itself is read by the proxy (``wheel[slot]``), which owns the counter, so
        requests routed here do not consume wheel slots and the weighted rest stays exact.
        """
        for route in self.header_routes:
            if _any(route.matchers, headers, cookies):
                return route.revision
        sticky = self.sticky
        if sticky is not None:
            key = (
                headers.get(sticky.header)
                if sticky.header is not None
                else cookies.get(sticky.cookie or b"")
            )
            if key and bucket(key) < sticky.weight:
                return sticky.revision
        return None

    def mirror_targets(self, headers: dict[bytes, bytes], cookies: dict[bytes, bytes]) -> list[int]:
        """The revisions a request is copied to (advances each matching route's sampler)."""
        out: list[int] = []
        for m in self.mirrors:
            if (not m.matchers or _any(m.matchers, headers, cookies)) and m.sample():
                out.append(m.revision)
        return out


@functools.lru_cache(maxsize=64)
def _request_fields(routing: frozenset[bytes]) -> re.Pattern[bytes]:
    return wire.fields_regex([*wire.REQUEST_FIELDS, *sorted(routing)])


def _base_fields() -> re.Pattern[bytes]:
    return _request_fields(frozenset())


def header_dict(headers: Headers) -> dict[bytes, bytes]:
    # Repeated headers: the first wins, a reasonable reading for routing keys.
    out: dict[bytes, bytes] = {}
    for name, value in headers:
        out.setdefault(name, value)
    return out


def parse_cookies(header: bytes | None) -> dict[bytes, bytes]:
    """``a=1; b=2`` → {b'a': b'1', b'b': b'2'} (first occurrence wins)."""
    out: dict[bytes, bytes] = {}
    if not header:
        return out
    for part in header.split(b";"):
        name, sep, value = part.strip().partition(b"=")
        if sep and name not in out:
            out[name] = value.strip().strip(b'"')
    return out
