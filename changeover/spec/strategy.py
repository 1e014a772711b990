"""How a rollout moves from one revision to the next: the ``strategy`` block, its canary
steps, recreate hooks, and the header/cookie matches that route requests.

Exactly one strategy is set (``Strategy``): recreate, rollingUpdate, blueGreen, canary,
abTest or shadow, each with Argo Rollouts' (or Flagger's) field names and defaults. The
analysis blocks they hold are ``spec.analysis`` models.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from changeover import regex
from changeover.spec import analysis as spec_analysis
from changeover.spec.fields import Duration, IntOrPercent, Model, Percent, Port, null_means_empty

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
        return null_means_empty(data, ("pause", "check"))

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
        return null_means_empty(data, STRATEGY_NAMES)

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
