"""The settings each router takes under ``spec.traffic.<router>``, checked like any field.

Before these models the settings were free-form mappings: a misspelt key was silently
ignored and a missing required one (Istio's ``virtualService``) surfaced only when the
operator first reconciled. Now ``changeover lint`` names the field, and the runtime passes
the parsed values to the router's factory.

Which platform each router runs on is here too (``PLATFORM``): a process template runs on
the local platform (builtin, haproxy), a pod template on Kubernetes (istio, gatewayAPI,
nginx, smi). ``validation.routers`` reports a router used on the other platform.

    >>> IstioSettings.model_validate({"virtualService": "chat-vs"}).virtual_service
    'chat-vs'
    >>> HAProxySettings.model_validate({"nbthread": 2}).nbthread
    2
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
from pydantic.alias_generators import to_camel


class Settings(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


Seconds = Annotated[float, Field(gt=0, le=86_400)]


class BuiltinSettings(Settings):
    """The embedded router. ``workers`` > 1 runs this rollout's router as that many
    processes on one port (SO_REUSEPORT, merged metrics); unset: ``serve --router-workers``.
    The timeouts and ``maxConnections`` bound what one client can hold (defaults: 5 s
    connect, 120 s response, 30 s header, 60 s body and send, 10,000 connections; see
    docs/explanation/router.md). ``websocketDrainSeconds`` (default 30; 0 closes at once):
    how long a WebSocket (any upgraded connection) may stay open on a revision that no
    longer gets new connections, or on a replica being stopped, before the router closes
    it, with a close frame (1001 Going Away) each way. ``websocketIdleTimeoutSeconds``
    (default 3600): an upgraded connection with no byte either way for that long is closed
    the same way (docs/how-to/websockets.md).
    """

    workers: Annotated[int, Field(ge=1, le=64)] | None = None
    connect_timeout_seconds: Seconds | None = None
    response_timeout_seconds: Seconds | None = None
    header_timeout_seconds: Seconds | None = None
    body_timeout_seconds: Seconds | None = None
    send_timeout_seconds: Seconds | None = None
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    websocket_drain_seconds: Annotated[float, Field(ge=0, le=86_400)] | None = None
    websocket_idle_timeout_seconds: Seconds | None = None


class HAProxySettings(Settings):
    """The managed HAProxy (``traffic.haproxy``): its threads, the core it is pinned to,
    the binary (default: ``haproxy`` on PATH or /usr/sbin), and how many requests a second
    it times for the latency histograms (the rest are counted, not timed)."""

    nbthread: Annotated[int, Field(ge=1, le=64)] | None = None
    cpu: Annotated[int, Field(ge=0)] | None = None
    binary: str | None = None
    timed_per_second: Annotated[int, Field(ge=1)] | None = None


class IstioVirtualService(Settings):
    name: Annotated[str, Field(min_length=1)]
    # The HTTP routes of the VirtualService that changeover manages (default: all).
    routes: list[str] = Field(default_factory=list)


class IstioDestinationRule(Settings):
    name: Annotated[str, Field(min_length=1)]
    stable_subset_name: str = "stable"
    canary_subset_name: str = "canary"


def _name_or_object(value: object) -> str:
    return (
        "virtualService[object]"
        if isinstance(value, dict | IstioVirtualService)
        else "virtualService[name]"
    )


class IstioSettings(Settings):
    # A name, or {name, routes}; the discriminator reports only the shape the user wrote
    # ("unknown field 'tlsRoutes'", not also "expected a string").
    virtual_service: Annotated[
        Annotated[str, Tag("virtualService[name]")]
        | Annotated[IstioVirtualService, Tag("virtualService[object]")],
        Discriminator(_name_or_object),
    ]
    destination_rule: IstioDestinationRule | None = None


class GatewayAPISettings(Settings):
    http_route: Annotated[str, Field(min_length=1)]


class NginxSettings(Settings):
    stable_ingress: Annotated[str, Field(min_length=1)]


class SMISettings(Settings):
    root_service: str | None = None
    traffic_split_name: str | None = None


# The YAML key under ``traffic`` → its settings model and the platform it runs on.
SETTINGS: dict[str, type[Settings]] = {
    "builtin": BuiltinSettings,
    "haproxy": HAProxySettings,
    "istio": IstioSettings,
    "gatewayAPI": GatewayAPISettings,
    "nginx": NginxSettings,
    "smi": SMISettings,
}
PLATFORM: dict[str, Literal["local", "kubernetes"]] = {
    "builtin": "local",
    "haproxy": "local",
    "istio": "kubernetes",
    "gatewayAPI": "kubernetes",
    "nginx": "kubernetes",
    "smi": "kubernetes",
}
