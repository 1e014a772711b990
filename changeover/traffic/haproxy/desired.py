"""What the haproxy data plane should be doing, as data: pure, no I/O.

``HAProxyRouter``'s setters change a ``Desired``; ``Desired.plan`` turns it into the
``Runtime`` HAProxy should have (map contents, server slots) and the ``Layout`` that can hold
it. The router pushes the difference over the runtime API, or renders and reloads when the
layout must grow. Slots are kept stable: a revision keeps its backend while it is referenced,
a replica keeps its server line while it is listed, and a freed slot is reused last (least
recently freed first) so stats and pooled connections of a slot's previous occupant fade out
before the slot is taken again.

    >>> d = Desired()
    >>> d.backends[1] = [Endpoint("127.0.0.1", 9001)]
    >>> d.weights = {1: 100}
    >>> rt = d.plan(config.Layout(host="127.0.0.1", port=8080, slots=2, servers=2))
    >>> rt.maps["slots"], rt.maps["servers"], rt.weights
    ((('b0', '1'),), (('1', '1'),), ((100, 0), (0, 0)))
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from changeover import errors
from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic.haproxy import config


@dataclasses.dataclass(frozen=True)
class Route:
    name: str
    revision: int
    entries: tuple[tuple[config.MatchRule, str], ...]  # (rule, map key): any of them


@dataclasses.dataclass(frozen=True)
class Sticky:
    revision: int
    source: config.Source
    name: str
    weight: int  # percent of users, 0..100


@dataclasses.dataclass(frozen=True)
class ServerSlot:
    endpoint: Endpoint | None = None
    state: str = "maint"  # ready, drain or maint (HAProxy's words)


@dataclasses.dataclass(frozen=True)
class Runtime:
    """What HAProxy should hold: map name → entries, pattern file name → patterns, per
    backend its server slots, and each server line's weight in ``w``."""

    maps: dict[str, tuple[tuple[str, str], ...]]
    servers: tuple[tuple[ServerSlot, ...], ...]
    slot_of: dict[int, int]  # revision → backend slot
    acls: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    weights: tuple[tuple[int, ...], ...] = ()  # [slot][i]: the line's weight in ``w``


MAX_WEIGHT = 256  # HAProxy's largest server weight


def server_weights(weights: dict[int, int], replicas: dict[int, int]) -> dict[int, list[int]]:
    """Each ready replica's weight in HAProxy's weighted round-robin, so that every
    revision's replicas together carry exactly its share: per round of ``sum`` requests
    revision ``r`` gets ``weights[r] * k`` of them, ``k`` the smallest scale that splits
    every revision evenly over its replicas (within HAProxy's 256), else the smallest that
    gives every replica at least 1 where 256 allows (then some replicas of a revision carry
    one more request a round than others, or none; the revision's share stays exact).

    >>> server_weights({1: 90, 2: 10}, {1: 1, 2: 1})
    {1: [90], 2: [10]}
    >>> server_weights({1: 90, 2: 10}, {1: 3, 2: 2})
    {1: [30, 30, 30], 2: [5, 5]}
    >>> server_weights({1: 99, 2: 1}, {1: 1, 2: 4})
    {1: [198], 2: [1, 1, 0, 0]}
    >>> server_weights({1: 90, 2: 10}, {1: 7, 2: 3})
    {1: [13, 13, 13, 13, 13, 13, 12], 2: [4, 3, 3]}
    """
    live = {r: w for r, w in weights.items() if w > 0 and replicas.get(r, 0) > 0}
    if not live:
        return {}
    fits = [
        k
        for k in range(1, MAX_WEIGHT + 1)
        if all(
            w * k % replicas[r] == 0 and w * k // replicas[r] <= MAX_WEIGHT for r, w in live.items()
        )
    ]
    if fits:
        k = fits[0]
    else:
        needed = max(-(-replicas[r] // w) for r, w in live.items())
        k = max(1, min(needed, *(MAX_WEIGHT * replicas[r] // w for r, w in live.items())))
    out: dict[int, list[int]] = {}
    for r, w in sorted(live.items()):
        base, extra = divmod(w * k, replicas[r])
        out[r] = [base + (1 if i < extra else 0) for i in range(replicas[r])]
    return out


def compile_match(match: models.RouteMatch) -> tuple[config.MatchRule, str]:
    """A spec match as (the rule HAProxy evaluates, the key in that rule's map).

    Values that cannot be map keys as written (spaces, a leading ``#``, empty) are
    matched by an equivalent anchored regex instead.

    >>> m = models.RouteMatch.model_validate(
    ...     {"headerName": "X-Variant", "headerValue": {"exact": "beta"}})
    >>> compile_match(m)
    (MatchRule(source='hdr', name='x-variant', kind='str'), 'beta')
    >>> m = models.RouteMatch.model_validate(
    ...     {"cookieName": "tier", "cookieValue": {"exact": "gold plus"}})
    >>> compile_match(m)
    (MatchRule(source='cook', name='tier', kind='reg'), '^gold\\\\x20plus$')
    """
    if match.header_name is not None:
        source: config.Source = "hdr"
        name = match.header_name.lower()
        value = match.header_value
    else:
        source, name, value = "cook", match.cookie_name or "", match.cookie_value
    assert value is not None  # RouteMatch validates one complete kind
    if not config.valid_name(name):
        raise errors.PermanentBackendError(f"haproxy router: {name!r} is not a valid name")
    if value.exact is not None:
        if config.plain_token(value.exact):
            return config.MatchRule(source, name, "str"), value.exact
        return config.MatchRule(source, name, "reg"), f"^{_pcre_literal(value.exact)}$"
    if value.prefix is not None:
        if config.plain_token(value.prefix):
            return config.MatchRule(source, name, "beg"), value.prefix
        return config.MatchRule(source, name, "reg"), f"^{_pcre_literal(value.prefix)}"
    assert value.regex is not None
    # Whole-value match, as the builtin router (and Envoy, Istio, Gateway API) do.
    return config.MatchRule(source, name, "reg"), f"^(?:{_no_space(value.regex)})$"


def _pcre_literal(text: str) -> str:
    return _no_space(re.escape(text))


def _no_space(pattern: str) -> str:
    # A map key ends at the first whitespace: write whitespace as escapes PCRE understands.
    pattern = re.sub(r"\\? ", r"\\x20", pattern)
    return pattern.replace("\t", r"\t").replace("\n", r"\n").replace("\r", r"\r")


@dataclasses.dataclass
class Desired:
    weights: dict[int, int] = dataclasses.field(default_factory=dict)
    routes: list[Route] = dataclasses.field(default_factory=list)
    sticky: Sticky | None = None
    preview: int | None = None
    maintenance: int | None = None  # Retry-After seconds while in maintenance
    backends: dict[int, list[Endpoint]] = dataclasses.field(default_factory=dict)
    draining: set[Endpoint] = dataclasses.field(default_factory=set)
    log_every: int = 1  # time one request in this many (a divisor of 1000)
    # Stable assignments, kept across plans (see the module docstring).
    slot_of: dict[int, int] = dataclasses.field(default_factory=dict)
    server_of: dict[Endpoint, tuple[int, int]] = dataclasses.field(default_factory=dict)
    _freed_slot: dict[int, int] = dataclasses.field(default_factory=dict)
    _freed_server: dict[tuple[int, int], int] = dataclasses.field(default_factory=dict)
    _tick: int = 0

    def referenced(self) -> set[int]:
        """Revisions that need a backend: weighted, routed, sticky, previewed or with replicas."""
        revs = {r for r, w in self.weights.items() if w > 0}
        revs |= {r.revision for r in self.routes}
        revs |= {r for r, eps in self.backends.items() if eps}
        if self.sticky is not None:
            revs.add(self.sticky.revision)
        if self.preview is not None:
            revs.add(self.preview)
        return revs

    def needed_layout(self, current: config.Layout) -> config.Layout:
        """``current``, grown (never shrunk) to hold this state: more slots, servers, rules."""
        revs = self.referenced()
        slots = current.slots
        while slots < len(revs):
            slots *= 2
        most = max((len(eps) for eps in self.backends.values()), default=0)
        servers = current.servers
        while servers < most:
            servers *= 2
        rules = list(current.rules)
        for route in self.routes:
            for rule, _key in route.entries:
                if rule not in rules:
                    rules.append(rule)
        sticky = current.sticky
        if self.sticky is not None:
            sticky = (self.sticky.source, self.sticky.name)
        return dataclasses.replace(
            current, slots=slots, servers=servers, rules=tuple(rules), sticky=sticky
        )

    def plan(self, layout: config.Layout) -> Runtime:
        """Assign slots within ``layout`` (which must hold them) and compute the runtime."""
        self._tick += 1
        self._assign_slots(layout)
        grid = self._assign_servers(layout)
        be = {rev: config.backend(slot) for rev, slot in self.slot_of.items()}
        rev_of_slot = {slot: rev for rev, slot in self.slot_of.items()}
        maps: dict[str, tuple[tuple[str, str], ...]] = {
            "slots": tuple(sorted((config.backend(s), str(r)) for r, s in self.slot_of.items())),
            "servers": tuple(
                (str(config.server_id(layout, slot, i)), str(rev_of_slot[slot]))
                for slot, row in enumerate(grid)
                for i, s in enumerate(row)
                if s.endpoint is not None and slot in rev_of_slot
            ),
        }
        maintenance = self.maintenance is not None
        # Maintenance: no line has a weight, so ``w``'s backup takes every request to the
        # maintenance page (and the route and sticky maps are emptied below).
        weights = [[0] * layout.servers for _ in range(layout.slots)]
        ready: dict[int, list[int]] = {}
        for slot, row in enumerate(grid):
            rev = rev_of_slot.get(slot)
            if rev is not None:
                ready[rev] = [i for i, s in enumerate(row) if s.state == "ready"]
        shares = (
            {}
            if maintenance
            else server_weights(self.weights, {r: len(lines) for r, lines in ready.items()})
        )
        for rev, share in shares.items():
            for i, weight in zip(ready[rev], share, strict=True):
                weights[self.slot_of[rev]][i] = weight
        settings: list[tuple[str, str]] = []
        if self.maintenance is not None:
            settings.append(("maintenance", str(self.maintenance)))
        if self.preview is not None:
            settings.append(("preview", be[self.preview]))
        maps["settings"] = tuple(settings)
        sticky: tuple[tuple[str, str], ...] = ()
        if (
            self.sticky is not None
            and not maintenance
            and layout.sticky == (self.sticky.source, self.sticky.name)
        ):
            sticky = tuple((str(b), be[self.sticky.revision]) for b in range(self.sticky.weight))
        maps["sticky"] = sticky
        for rule in layout.rules:
            entries: list[tuple[str, str]] = []
            seen: set[str] = set()
            for route in [] if maintenance else self.routes:  # earlier routes win a key
                for r, key in route.entries:
                    if r == rule and key not in seen:
                        seen.add(key)
                        entries.append((key, be[route.revision]))
            maps[config.rule_map_name(rule)] = tuple(entries)
        acls: dict[str, tuple[str, ...]] = {"logsample": (config.sample_range(self.log_every),)}
        return Runtime(
            maps=maps,
            servers=grid,
            slot_of=dict(self.slot_of),
            acls=acls,
            weights=tuple(tuple(row) for row in weights),
        )

    def _assign_slots(self, layout: config.Layout) -> None:
        revs = self.referenced()
        for rev in [r for r in self.slot_of if r not in revs]:
            self._freed_slot[self.slot_of.pop(rev)] = self._tick
        used = set(self.slot_of.values())
        for rev in sorted(revs - set(self.slot_of)):
            free = [s for s in range(layout.slots) if s not in used]
            if not free:
                raise errors.PermanentBackendError(
                    f"haproxy router: no backend slot left for revision {rev}"
                )
            slot = min(free, key=lambda s: self._freed_slot.get(s, -1))
            self.slot_of[rev] = slot
            used.add(slot)

    def _assign_servers(self, layout: config.Layout) -> tuple[tuple[ServerSlot, ...], ...]:
        wanted = {ep: self.slot_of[rev] for rev, eps in self.backends.items() for ep in eps if eps}
        for ep, (slot, i) in list(self.server_of.items()):
            if wanted.get(ep) != slot:
                del self.server_of[ep]
                self._freed_server[(slot, i)] = self._tick
        taken = set(self.server_of.values())
        for rev, eps in sorted(self.backends.items()):
            for ep in eps:
                if ep in self.server_of or rev not in self.slot_of:
                    continue
                slot = self.slot_of[rev]
                free = [(slot, i) for i in range(layout.servers) if (slot, i) not in taken]
                if not free:
                    raise errors.PermanentBackendError(
                        f"haproxy router: no server slot left for {ep} (revision {rev})"
                    )
                pick = min(free, key=lambda si: self._freed_server.get(si, -1))
                self.server_of[ep] = pick
                taken.add(pick)
        self.draining &= set(self.server_of)
        grid = [[ServerSlot() for _ in range(layout.servers)] for _ in range(layout.slots)]
        for ep, (slot, i) in self.server_of.items():
            grid[slot][i] = ServerSlot(ep, "drain" if ep in self.draining else "ready")
        return tuple(tuple(row) for row in grid)


def backends_of(runtime: Runtime) -> Sequence[Sequence[Endpoint | None]]:
    """The server grid as ``config.render`` takes it: only ready servers get an address."""
    return [[s.endpoint if s.state == "ready" else None for s in row] for row in runtime.servers]
