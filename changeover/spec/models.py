"""The Rollout spec as typed, frozen models: the shape users write in YAML.

Field names follow Argo Rollouts' camelCase where the concept is the same; Python code uses
the snake_case attribute (``spec.min_ready_seconds``), YAML and JSON use the alias
(``minReadySeconds``). Unknown fields are rejected so a typo is an error, not a silent no-op.

This module is the models' public surface: ``Rollout`` and everything in it, including the
names defined in ``spec.fields`` (``Model``, ``Duration``...) and ``spec.strategy`` (the
strategies, steps, hooks and route matches), listed in ``__all__``. Other layers import
``from changeover.spec import models`` and use ``models.X``.

Who uses it: ``spec.load`` builds these from YAML (and turns pydantic's errors into
``SpecError`` with field paths); the engine reads them; the controller stores them as JSON.
Cross-field rules that need more than one model (a port clash) live in ``spec.rules``;
those that need to know the routers and metric providers in ``changeover.validation``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from changeover import errors
from changeover.spec import analysis as spec_analysis
from changeover.spec import pod, traffic_settings
from changeover.spec.fields import (
    API_VERSION,
    Duration,
    IntOrPercent,
    Metadata,
    Model,
    Percent,
    Port,
    format_duration,
    null_means_empty,
    parse_duration,
)
from changeover.spec.strategy import (
    STRATEGY_NAMES,
    ABTestStrategy,
    BlueGreenStrategy,
    CanaryStep,
    CanaryStrategy,
    CheckStep,
    Hook,
    MirrorCompare,
    Pause,
    RecreateStrategy,
    RollingUpdateStrategy,
    RouteMatch,
    SetCanaryScale,
    SetHeaderRoute,
    SetMirrorRoute,
    ShadowStrategy,
    Strategy,
    StringMatch,
    UserKey,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_ROUTER",
    "ROUTER_NAMES",
    "ROUTER_REGISTRY_NAMES",
    "STRATEGY_NAMES",
    "ABTestStrategy",
    "BlueGreenStrategy",
    "CanaryStep",
    "CanaryStrategy",
    "CheckStep",
    "Duration",
    "Hook",
    "HttpGetAction",
    "IntOrPercent",
    "Metadata",
    "MirrorCompare",
    "Model",
    "Pause",
    "Percent",
    "Port",
    "ProcessTemplate",
    "ReadinessProbe",
    "RecreateStrategy",
    "RollbackWindow",
    "RollingUpdateStrategy",
    "Rollout",
    "RolloutSpec",
    "RouteMatch",
    "ServiceSpec",
    "SetCanaryScale",
    "SetHeaderRoute",
    "SetMirrorRoute",
    "ShadowStrategy",
    "Strategy",
    "StringMatch",
    "TrafficSpec",
    "UserKey",
    "format_duration",
    "parse_duration",
]

# --- the process template (local platform) -------------------------------------------


class HttpGetAction(Model):
    path: str = "/"


class ReadinessProbe(Model):
    http_get: HttpGetAction | None = None
    initial_delay_seconds: Annotated[float, Field(ge=0)] = 0.0
    period_seconds: Annotated[float, Field(gt=0)] = 1.0
    timeout_seconds: Annotated[float, Field(gt=0)] = 1.0
    failure_threshold: Annotated[int, Field(ge=1)] = 3
    success_threshold: Annotated[int, Field(ge=1)] = 1


class ProcessTemplate(Model):
    """One replica is one OS process started from ``command`` (an argv list, never a shell).

    ``$(PORT)`` in ``command`` and ``env`` values is replaced by the replica's port, as
    Kubernetes expands ``$(VAR)``; ``PORT`` is also set in the environment.
    """

    command: Annotated[list[str], Field(min_length=1)]
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    readiness_probe: ReadinessProbe | None = None
    # A replica that leaves first stops getting new requests, then has this long to finish
    # the requests and streams in flight (as Kubernetes' terminationGracePeriodSeconds);
    # SIGTERM once they are done, SIGKILL ``killAfterSeconds`` after that.
    termination_grace_period_seconds: Annotated[float, Field(ge=0, le=86400)] = 30.0
    kill_after_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0


class ServiceSpec(Model):
    """Where the builtin router serves this rollout (always loopback unless told otherwise).

    On Kubernetes ``port`` is the Services' port and ``targetPort`` the pods' port (default:
    the first container's first containerPort); the operator manages the Services named
    ``name`` (stable, default: the rollout's name) and ``canaryName`` (default:
    ``<name>-canary``), creating them when absent. ``host`` is local-only.

    ``managed: false`` (what leaving ``spec.service`` out of a Kubernetes Rollout means):
    the operator creates and changes no Service at all, as in Argo Rollouts' basic canary,
    where the user's own Service selects the pods of every revision; only a canary or a
    rolling update without a traffic router can run that way.
    """

    port: Port
    host: str = "127.0.0.1"
    name: str | None = None
    canary_name: str | None = None
    target_port: Port | None = None
    managed: bool = True


ROUTER_NAMES = ("builtin", "haproxy", "istio", "gatewayAPI", "nginx", "smi")

# The YAML key under ``traffic`` → the router's name in ``traffic.base``'s registry.
ROUTER_REGISTRY_NAMES = {
    "builtin": "builtin",
    "haproxy": "haproxy",
    "istio": "istio",
    "gatewayAPI": "gateway-api",
    "nginx": "nginx",
    "smi": "smi",
}
# What carries traffic when ``traffic`` names no router, per platform. On Kubernetes without
# a mesh or ingress router, a canary's weight is approximated by the ratio of replicas.
DEFAULT_ROUTER = {"local": "builtin", "kubernetes": "replica-ratio"}


class TrafficSpec(Model):
    """Which router carries traffic. Each key names a router in ``traffic`` 's registry;
    the Kubernetes routers (istio, gatewayAPI, nginx, smi) take their objects' names."""

    builtin: traffic_settings.BuiltinSettings | None = None
    haproxy: traffic_settings.HAProxySettings | None = None
    istio: traffic_settings.IstioSettings | None = None
    gateway_api: Annotated[
        traffic_settings.GatewayAPISettings | None, Field(alias="gatewayAPI")
    ] = None
    nginx: traffic_settings.NginxSettings | None = None
    smi: traffic_settings.SMISettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_router(cls, data: object) -> object:
        return null_means_empty(data, ROUTER_NAMES)

    @model_validator(mode="after")
    def _at_most_one(self) -> TrafficSpec:
        given = [name for name, value in self if value is not None]
        if len(given) > 1:
            raise ValueError(
                f"expected at most one router of {', '.join(ROUTER_NAMES)}; got {', '.join(given)}"
            )
        return self

    @property
    def chosen(self) -> str | None:
        """The YAML key of the router named under ``traffic``, or None."""
        for key in ROUTER_NAMES:
            attr = "gateway_api" if key == "gatewayAPI" else key
            if getattr(self, attr) is not None:
                return key
        return None

    @property
    def settings(self) -> traffic_settings.Settings | None:
        """The chosen router's parsed settings (None when none is chosen)."""
        key = self.chosen
        if key is None:
            return None
        value: traffic_settings.Settings = getattr(
            self, "gateway_api" if key == "gatewayAPI" else key
        )
        return value

    @property
    def config(self) -> dict[str, Any]:
        """The chosen router's settings as YAML spells them ({} when none is chosen)."""
        settings = self.settings
        if settings is None:
            return {}
        return settings.model_dump(mode="json", by_alias=True, exclude_unset=True)

    @property
    def router(self) -> str:
        """The registry name of the chosen router; 'builtin' when none is (local)."""
        key = self.chosen
        return ROUTER_REGISTRY_NAMES[key] if key is not None else "builtin"


def _first_container_port(template: Any) -> int | None:
    try:
        port = template["spec"]["containers"][0]["ports"][0]["containerPort"]
    except (KeyError, IndexError, TypeError):
        return None
    return port if isinstance(port, int) and 0 < port < 65536 else None


def _template_kind(value: object) -> str:
    return "template[pod]" if pod.looks_like_pod_template(value) else "template[process]"


class RollbackWindow(Model):
    """Argo Rollouts' ``rollbackWindow``: going back to one of the last ``revisions``
    revisions (counting the stable one) skips steps and analysis."""

    revisions: Annotated[int, Field(ge=1, le=1000)]


class RolloutSpec(Model):
    replicas: Annotated[int, Field(ge=0)] = 1
    min_ready_seconds: Annotated[float, Field(ge=0)] = 0.0
    progress_deadline_seconds: Annotated[float, Field(gt=0)] = 600.0
    # When the deadline passes (or the new revision crash-loops): abort, all traffic back
    # on stable, instead of only marking the rollout Degraded.
    progress_deadline_abort: bool = False
    rollback_window: RollbackWindow | None = None
    revision_history_limit: Annotated[int, Field(ge=0)] = 10
    paused: bool = False
    # A process (local) or a pod template (Kubernetes): the shape decides, see ``spec.pod``.
    # The tags hold "[" so error paths leave them out, as they do pydantic's own tags.
    template: Annotated[
        Annotated[ProcessTemplate, Tag("template[process]")]
        | Annotated[pod.PodTemplate, Tag("template[pod]")],
        Discriminator(_template_kind),
    ]
    # Optional on Kubernetes only (``_no_service``); the default is refused locally.
    service: ServiceSpec = Field(default_factory=lambda: ServiceSpec(port=80, managed=False))
    strategy: Strategy
    traffic: TrafficSpec = Field(default_factory=TrafficSpec)
    # Flagger's webhook gates, for every strategy (``spec.analysis.Webhook`` says why here
    # and not under strategy.<x>).
    webhooks: list[spec_analysis.Webhook] = Field(default_factory=list)
    # Flagger's checks, which canary ``check`` steps wait for (``spec.analysis.Checks``).
    checks: spec_analysis.Checks | None = None
    # Phase-change notifications (``analysis.notify``): [{url, format: generic|slack,
    # phases, timeout, retries, headers}]; checked by ``validation.analysis_checks``.
    notifications: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _no_service(cls, data: object) -> object:
        """A pod template without ``service``: the user's own Service (``managed: false``)."""
        if isinstance(data, dict) and "service" not in data:
            template = data.get("template")
            if pod.looks_like_pod_template(template):
                port = _first_container_port(template) or 80
                return {**data, "service": {"port": port, "managed": False}}
        return data

    @model_validator(mode="after")
    def _unmanaged_service(self) -> RolloutSpec:
        if not self.service.managed and self.platform == "local":
            raise ValueError(
                "expected spec.service ({port: ...}): the local platform serves every "
                "rollout through its router on that port"
            )
        needs = self.traffic.chosen or (
            self.strategy.name if self.strategy.name in ("blueGreen", "abTest", "shadow") else ""
        )
        if not self.service.managed and needs:
            raise ValueError(
                f"expected spec.service ({{port: ...}}): {needs} needs Services the operator "
                "points at revisions; only a canary or a rolling update without a traffic "
                "router runs on the user's own Service"
            )
        return self

    @property
    def platform(self) -> Literal["local", "kubernetes"]:
        """Where this spec runs: a pod template means Kubernetes."""
        return "kubernetes" if isinstance(self.template, pod.PodTemplate) else "local"

    @property
    def router(self) -> str:
        """The registry name of the router that carries traffic on this spec's platform."""
        if self.traffic.chosen is not None:
            return self.traffic.router
        return DEFAULT_ROUTER[self.platform]

    def process_template(self, *, source: str = "") -> ProcessTemplate:
        """The template as a process; SpecError (exit 2, naming ``source``) when it is a
        pod template."""
        if isinstance(self.template, ProcessTemplate):
            return self.template
        raise errors.SpecError.single(
            file=source,
            path="spec.template",
            message=(
                "a pod template (spec.template.spec.containers) runs on Kubernetes: apply it "
                "with --platform kubernetes; the local platform expects spec.template.command"
            ),
        )

    def pod_template(self) -> pod.PodTemplate:
        """The template as a pod; SpecError (exit 2) when it is a process template."""
        if isinstance(self.template, pod.PodTemplate):
            return self.template
        raise errors.SpecError.single(
            file="",
            path="spec.template",
            message=(
                "a process template (spec.template.command) runs on the local platform; "
                "Kubernetes expects a pod template: {metadata: {labels}, spec: {containers}}"
            ),
        )


class Rollout(Model):
    api_version: Literal["changeover.dev/v1alpha1"] = API_VERSION
    kind: Literal["Rollout"] = "Rollout"
    metadata: Metadata
    spec: RolloutSpec

    @property
    def name(self) -> str:
        return self.metadata.name
