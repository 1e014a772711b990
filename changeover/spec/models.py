"""The Rollout spec as typed, frozen models: the shape users write in YAML.

Field names follow Argo Rollouts' camelCase where the concept is the same; Python code uses
the snake_case attribute (``spec.min_ready_seconds``), YAML and JSON use the alias
(``minReadySeconds``). Unknown fields are rejected so a typo is an error, not a silent no-op.

Who uses it: ``spec.load`` builds these from YAML (and turns pydantic's errors into
``SpecError`` with field paths); the engine reads them; the controller stores them as JSON.
Cross-field rules that need more than one model (a step the router cannot do, a port
clash) live in ``spec.validate``.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from changeover import errors, regex
from changeover.spec import pod, traffic_settings

if TYPE_CHECKING:
    from changeover.spec import analysis as spec_analysis

API_VERSION: Literal["changeover.dev/v1alpha1"] = "changeover.dev/v1alpha1"

# ASCII digits only: \d also takes '١٠', which YAML and Kubernetes read as text.
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from ``30s``, ``5m``, ``1h``, ``250ms`` or a bare number of seconds.

    >>> parse_duration("30s"), parse_duration("5m"), parse_duration(12), parse_duration("1.5h")
    (30.0, 300.0, 12.0, 5400.0)
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("expected a non-negative duration")
        return _finite(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return _finite(float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {str(value)[:40]!r}")


def _finite(value: float) -> float:
    """Seconds as a float, refusing NaN, infinity and integers past a float's range (a
    10**400 raised OverflowError, which no field error caught)."""
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError("expected a finite duration such as 30s, 5m or 1h")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse of ``parse_duration`` for display: 30.0 → '30s', 300.0 → '5m'."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]

_PERCENT = re.compile(r"^([0-9]{1,3})%$")


def _int_or_percent(value: object) -> int | str:
    if isinstance(value, bool):
        raise ValueError("expected an integer or a percentage such as 25%")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("expected a non-negative integer or a percentage such as 25%")
        return value
    if isinstance(value, str):
        if value.isascii() and value.isdigit() and len(value) <= 18:
            return int(value)
        if _PERCENT.match(value):
            return value
    raise ValueError(f"expected an integer or a percentage such as 25%, got {str(value)[:40]!r}")


IntOrPercent = Annotated[int | str, BeforeValidator(_int_or_percent)]
Percent = Annotated[int, Field(ge=0, le=100)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _null_means_empty(value: object, keys: tuple[str, ...]) -> object:
    """Read ``recreate:`` or ``- pause:`` (YAML null) as ``{}``: the user named the thing
    and left it at its defaults; treating null as "absent" would report "got none"."""
    if isinstance(value, dict):
        return {k: ({} if k in keys and v is None else v) for k, v in value.items()}
    return value


class Model(BaseModel):
    """Base for every spec model: camelCase aliases, frozen, unknown fields rejected, and
    no NaN or infinity in a number (YAML's ``.nan``/``.inf`` would pass every bound)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )

    def to_json_dict(self) -> dict[str, Any]:
        """The user-facing form: camelCase keys, defaults left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- metadata -------------------------------------------------------------------------


class Metadata(Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


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


# --- traffic matching ------------------------------------------------------------------


class StringMatch(Model):
    """Exactly one of exact / prefix / regex (Argo's ``headerValue``)."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StringMatch:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("expected exactly one of exact, prefix, regex")
        return self

    @field_validator("regex")
    @classmethod
    def _linear_time(cls, pattern: str | None) -> str | None:
        # Matched against client-controlled values on every request: RE2 only (linear
        # time), on every router, so a spec means the same wherever it runs.
        return regex.checked(pattern)


class RouteMatch(Model):
    """Match a request by one header or one cookie.

    ``{headerName: x-variant, headerValue: {exact: b}}`` or
    ``{cookieName: variant, cookieValue: {prefix: beta}}``.
    """

    header_name: str | None = None
    header_value: StringMatch | None = None
    cookie_name: str | None = None
    cookie_value: StringMatch | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> RouteMatch:
        header = self.header_name is not None and self.header_value is not None
        cookie = self.cookie_name is not None and self.cookie_value is not None
        if header == cookie:
            raise ValueError(
                "expected either headerName with headerValue, or cookieName with cookieValue"
            )
        return self


class UserKey(Model):
    """Where the sticky split finds the user's identity: one header or one cookie."""

    header: str | None = None
    cookie: str | None = None

    @model_validator(mode="after")
    def _one(self) -> UserKey:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("expected exactly one of header, cookie")
        return self


# --- hooks ----------------------------------------------------------------------------


class Hook(Model):
    """A command run once at a point of a rollout (recreate's pre/mid/post)."""

    command: Annotated[list[str], Field(min_length=1)]
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 300.0
    failure_policy: Literal["Abort", "Ignore"] = "Abort"


# --- strategies -----------------------------------------------------------------------


class RecreateStrategy(Model):
    pre: Hook | None = None
    mid: Hook | None = None
    post: Hook | None = None


class RollingUpdateStrategy(Model):
    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = "25%"


class BlueGreenStrategy(Model):
    """Active and preview: the new revision is served on ``previewPort`` until promoted."""

    active_service: str | None = None
    preview_service: str | None = None
    preview_port: Port | None = None
    auto_promotion_enabled: bool = True
    auto_promotion_seconds: Duration | None = None
    scale_down_delay_seconds: Duration = 30.0
    preview_replica_count: Annotated[int, Field(ge=1)] | None = None
    # Before the switch (its failure aborts), and after it (its failure switches back).
    pre_promotion_analysis: spec_analysis.RolloutAnalysis | None = None
    post_promotion_analysis: spec_analysis.RolloutAnalysis | None = None
    # Passing checks of spec.checks (Flagger's blue/green iterations) before promotion.
    pre_promotion_checks: Annotated[int, Field(ge=1)] | None = None


class Pause(Model):
    """``pause: {}`` waits for promote; ``pause: {duration: 30s}`` waits that long."""

    duration: Duration | None = None


class SetCanaryScale(Model):
    replicas: Annotated[int, Field(ge=0)] | None = None
    weight: Percent | None = None
    match_traffic_weight: bool = False

    @model_validator(mode="after")
    def _one(self) -> SetCanaryScale:
        given = sum([self.replicas is not None, self.weight is not None, self.match_traffic_weight])
        if given != 1:
            raise ValueError("expected exactly one of replicas, weight, matchTrafficWeight")
        return self


class SetHeaderRoute(Model):
    """Send requests matching ``match`` to the canary; an empty ``match`` removes the route."""

    name: str
    match: list[RouteMatch] = Field(default_factory=list)


_COMPARATOR = re.compile(
    r"^(exact|json|text|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"
    r"|[A-Za-z0-9_][A-Za-z0-9_.-]*)$"
)


class MirrorCompare(Model):
    """Compare the shadow's answers with the primary's, for ``percentage`` of the
    mirrored requests (builtin router). ``comparator``: ``exact``, ``json``, ``text``, a
    ``module:function`` path or the name of a ``changeover.comparators`` entry point.
    ``ignore``: JSON pointers left out by ``json`` (``*`` for any key or index);
    ``tolerance``: how far two numbers may differ under ``json``; ``threshold``: the
    least similarity (0..1) ``text`` and scoring comparators accept; ``latencyThreshold``:
    a shadow slower than the primary by more counts a latency difference;
    ``maxBodyBytes``: larger answers are counted as not compared."""

    percentage: Percent = 100
    comparator: str = "exact"
    ignore: list[str] = Field(default_factory=list)
    tolerance: Annotated[float, Field(ge=0)] = 0.0
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.9
    latency_threshold: Duration | None = None
    max_body_bytes: Annotated[int, Field(ge=1, le=16 * 1024 * 1024)] = 1024 * 1024

    @field_validator("comparator")
    @classmethod
    def _comparator(cls, value: str) -> str:
        if not _COMPARATOR.match(value):
            raise ValueError(
                "expected exact, json, text, a module:function path or the name of a "
                f"changeover.comparators entry point, got {value!r}"
            )
        return value

    @field_validator("ignore")
    @classmethod
    def _pointers(cls, value: list[str]) -> list[str]:
        for pointer in value:
            if not pointer.startswith("/"):
                raise ValueError(f"expected JSON pointers such as /id, got {pointer!r}")
        return value


class SetMirrorRoute(Model):
    """Copy ``percentage`` of the requests ``match`` selects (of every request, when only a
    percentage is given) to the canary; clients never see its responses. As in Argo
    Rollouts, a step with neither ``match`` nor ``percentage`` removes the mirror route
    ``name``; so does ``percentage: 0``. A match without a percentage copies all of them."""

    name: str
    percentage: Percent | None = None
    match: list[RouteMatch] = Field(default_factory=list)
    compare: MirrorCompare | None = None

    @property
    def copies(self) -> int:
        """The percentage to copy; 0 removes the mirror route.

        >>> SetMirrorRoute(name="m").copies, SetMirrorRoute(name="m", percentage=20).copies
        (0, 20)
        >>> match = RouteMatch(header_name="x", header_value=StringMatch(exact="1"))
        >>> SetMirrorRoute(name="m", match=[match]).copies
        100
        """
        if self.percentage is not None:
            return self.percentage
        return 100 if self.match else 0


class CheckStep(Model):
    """Wait for ``count`` passing checks of ``spec.checks`` (``spec.analysis.Checks``)."""

    count: Annotated[int, Field(ge=1)] = 1


class CanaryStep(Model):
    """Exactly one of the step kinds. ``analysis`` blocks the step until its run succeeds;
    ``check`` until ``spec.checks`` passed ``count`` times (Flagger's gated steps)."""

    set_weight: Percent | None = None
    pause: Pause | None = None
    set_canary_scale: SetCanaryScale | None = None
    set_header_route: SetHeaderRoute | None = None
    set_mirror_route: SetMirrorRoute | None = None
    analysis: spec_analysis.RolloutAnalysis | None = None
    check: CheckStep | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_pause(cls, data: object) -> object:
        return _null_means_empty(data, ("pause", "check"))

    @model_validator(mode="after")
    def _exactly_one(self) -> CanaryStep:
        kinds = [to_camel(name) for name, value in self if value is not None]
        if len(kinds) != 1:
            raise ValueError(
                "expected exactly one of setWeight, pause, setCanaryScale, setHeaderRoute, "
                f"setMirrorRoute, analysis, check; got {', '.join(kinds) or 'none'}"
            )
        return self

    @property
    def kind(self) -> str:
        return next(name for name, value in self if value is not None)


class CanaryStrategy(Model):
    steps: list[CanaryStep] = Field(default_factory=list)
    # Argo Rollouts' defaults. Only a canary without a traffic router (replica ratio,
    # ``engine.strategies.basic_canary``) resizes stable, and these bound it.
    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = "25%"
    abort_scale_down_delay_seconds: Duration = 30.0
    # After promotion the old stable keeps running this long (Argo Rollouts' default), for a
    # remote data plane to follow; its replicas then drain and stop.
    scale_down_delay_seconds: Duration = 30.0
    # Background analysis: from step ``startingStep`` until the rollout completes.
    analysis: spec_analysis.BackgroundAnalysis | None = None


class ABTestStrategy(Model):
    """Variant B (the new revision) gets requests matching ``match`` plus ``weight`` percent
    of users, chosen by a stable hash of ``userKey``; a request with no key and no match
    stays on A. Without ``duration`` the test runs until promote or abort."""

    match: list[RouteMatch] = Field(default_factory=list)
    user_key: UserKey | None = None
    weight: Percent = 50
    duration: Duration | None = None
    # Runs while the test does: Failed aborts, Successful promotes B before ``duration``.
    analysis: spec_analysis.RolloutAnalysis | None = None

    @model_validator(mode="after")
    def _something_routes(self) -> ABTestStrategy:
        if not self.match and self.user_key is None:
            raise ValueError("expected match, userKey, or both: otherwise B gets no traffic")
        return self


class ShadowStrategy(Model):
    """The new revision receives a copy of ``percentage`` of requests; clients only ever get
    stable's responses. Without ``duration`` the shadow runs until promote or abort."""

    percentage: Percent = 100
    duration: Duration | None = None
    replicas: Annotated[int, Field(ge=1)] | None = None
    # Runs while the shadow does: Failed aborts, Successful promotes before ``duration``.
    analysis: spec_analysis.RolloutAnalysis | None = None
    compare: MirrorCompare | None = None


STRATEGY_NAMES = ("recreate", "rollingUpdate", "blueGreen", "canary", "abTest", "shadow")


class Strategy(Model):
    """Exactly one strategy is set."""

    recreate: RecreateStrategy | None = None
    rolling_update: RollingUpdateStrategy | None = None
    blue_green: BlueGreenStrategy | None = None
    canary: CanaryStrategy | None = None
    ab_test: ABTestStrategy | None = None
    shadow: ShadowStrategy | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_strategy(cls, data: object) -> object:
        return _null_means_empty(data, STRATEGY_NAMES)

    @model_validator(mode="after")
    def _exactly_one(self) -> Strategy:
        given = [to_camel(name) for name, value in self if value is not None]
        if len(given) != 1:
            raise ValueError(
                f"expected exactly one strategy of {', '.join(STRATEGY_NAMES)}; "
                f"got {', '.join(given) or 'none'}"
            )
        return self

    @property
    def name(self) -> str:
        """The camelCase name users wrote: 'canary', 'blueGreen', ..."""
        return next(to_camel(name) for name, value in self if value is not None)


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
        return _null_means_empty(data, ROUTER_NAMES)

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
    # phases, timeout, retries, headers}]; checked by ``spec.analysis_checks``.
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


# The analysis models build on ``Model`` and ``Duration`` above, so they are imported once
# those exist; ``changeover.spec`` always imports this module first, which keeps the order.
from changeover.spec import analysis as spec_analysis  # noqa: E402

_NEED_ANALYSIS: tuple[type[Model], ...] = (
    BlueGreenStrategy,
    CanaryStep,
    CanaryStrategy,
    ABTestStrategy,
    ShadowStrategy,
    Strategy,
    RolloutSpec,
    Rollout,
)
for _model in _NEED_ANALYSIS:
    _model.model_rebuild()
