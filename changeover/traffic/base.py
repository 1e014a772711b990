"""The TrafficRouter plug-in axis: how requests are split between revisions.

One router object serves one rollout. Each router declares ``capabilities``; validation
rejects a spec step the chosen router cannot do instead of silently doing nothing. Every
setter states desired state, so calling it twice with the same arguments changes nothing.

Implementations: ``traffic.builtin`` (the embedded asyncio proxy), ``traffic.haproxy`` (a
managed HAProxy) and the Kubernetes routers (``traffic.kubernetes``), registered by name below
with what each can do; ``testing.recording_router`` (records calls, for unit tests) registers itself
when a test imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import NamedTuple, Protocol

from changeover.endpoints import Endpoint
from changeover.spec import models


class Capability(StrEnum):
    WEIGHTS = "weights"  # exact per-request weights
    HEADER_ROUTES = "headerRoutes"
    COOKIE_ROUTES = "cookieRoutes"
    STICKY = "sticky"  # sticky split by a hashed user key
    MIRROR = "mirror"
    MIRROR_COMPARE = "mirrorCompare"  # shadow answers compared with the primary's
    PREVIEW = "preview"  # serve one revision on a separate preview endpoint
    MAINTENANCE = "maintenance"  # 503 + Retry-After while no revision runs
    BACKENDS = "backends"  # the router is told replica endpoints (local platform)
    WEBSOCKET = "websocket"  # proxies Upgrade (WebSocket) connections, routed like requests


class TrafficRouter(Protocol):
    name: str
    capabilities: frozenset[Capability]

    async def set_weight(self, weights: Mapping[int, int]) -> None:
        """revision → percent, summing to 100; atomic for new requests."""

    async def set_header_route(
        self, name: str, revision: int | None, match: Sequence[models.RouteMatch]
    ) -> None:
        """Route requests matching any of ``match`` to ``revision``; None/empty removes."""

    async def set_sticky_split(
        self, revision: int | None, user_key: models.UserKey | None, weight: int
    ) -> None:
        """``weight`` percent of users (hash of ``user_key``) to ``revision``; None removes."""

    async def set_mirror_route(
        self,
        name: str,
        revision: int | None,
        percentage: int,
        match: Sequence[models.RouteMatch],
        compare: models.MirrorCompare | None = None,
    ) -> None:
        """Mirror ``percentage`` of (matching) requests to ``revision``; None removes.
        ``compare`` (routers with ``MIRROR_COMPARE``): compare the shadow's answers."""

    async def set_preview(self, revision: int | None) -> None:
        """Serve ``revision`` on the preview endpoint; None stops."""

    async def set_maintenance(self, enabled: bool, retry_after_seconds: int) -> None:
        """Answer 503 + Retry-After + a maintenance page while enabled."""

    async def remove_managed_routes(self) -> None:
        """Drop header routes, the sticky split and mirrors."""

    async def verify_weight(self, weights: Mapping[int, int]) -> bool:
        """True if the data plane applies exactly ``weights`` now."""

    async def set_backends(self, revision: int, endpoints: Sequence[Endpoint]) -> None:
        """The ready replica endpoints of ``revision`` (routers with ``BACKENDS``)."""

    async def drain(self, endpoint: Endpoint, grace_seconds: float) -> int:
        """Take ``endpoint`` out of every pool and wait, up to ``grace_seconds``, until its
        in-flight requests end; how many were still in flight then (0: drained)."""

    async def close(self) -> None:
        """Stop listening; in-flight requests finish."""


RouterFactory = Callable[..., TrafficRouter]


class RouterEntry(NamedTuple):
    capabilities: frozenset[Capability]
    # A factory builds a router for one rollout; "module:attribute" is imported on first use.
    factory: RouterFactory | str


# The routers that ship, by name, with what each can do and where its factory lives:
# validation asks ``capabilities_of`` without loading any data plane, and each router's
# module takes its ``CAPABILITIES`` from here. Plug-ins and test doubles call ``register``.
_W, _H, _C = Capability.WEIGHTS, Capability.HEADER_ROUTES, Capability.COOKIE_ROUTES
_M, _P = Capability.MIRROR, Capability.PREVIEW
SHIPPED: Mapping[str, RouterEntry] = {
    "builtin": RouterEntry(frozenset(Capability), "changeover.traffic.builtin.router:factory"),
    "haproxy": RouterEntry(
        frozenset(Capability) - {_M, Capability.MIRROR_COMPARE},
        "changeover.traffic.haproxy.router:factory",
    ),
    # Kubernetes (``traffic.kubernetes``): their factories take a ``RouterContext``.
    "replica-ratio": RouterEntry(
        frozenset({_P}), "changeover.traffic.kubernetes.replica_ratio:factory"
    ),
    "istio": RouterEntry(
        frozenset({_W, _H, _C, _M, _P}), "changeover.traffic.kubernetes.istio:factory"
    ),
    "gateway-api": RouterEntry(
        frozenset({_W, _H, _C, _M, _P}), "changeover.traffic.kubernetes.gateway_api:factory"
    ),
    "nginx": RouterEntry(
        frozenset({_W, _H, _C, _P}), "changeover.traffic.kubernetes.nginx_ingress:factory"
    ),
    "smi": RouterEntry(frozenset({_W, _P}), "changeover.traffic.kubernetes.smi:factory"),
}
_REGISTRY: dict[str, RouterEntry] = dict(SHIPPED)


def register(name: str, capabilities: frozenset[Capability], factory: RouterFactory | str) -> None:
    """Make router ``name`` available; ``factory`` is a callable or "module:attribute"."""
    _REGISTRY[name] = RouterEntry(capabilities, factory)


def capabilities_of(name: str) -> frozenset[Capability]:
    """The declared capabilities of router ``name`` (KeyError if none is registered)."""
    return _REGISTRY[name].capabilities


def factory_of(name: str) -> RouterFactory:
    """The factory of router ``name``, importing its module on first use (KeyError if no
    router has that name)."""
    capabilities, factory = _REGISTRY[name]
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        found: RouterFactory = getattr(importlib.import_module(module), attribute)
        _REGISTRY[name] = RouterEntry(capabilities, found)
        return found
    return factory


def registered() -> list[str]:
    return sorted(_REGISTRY)
