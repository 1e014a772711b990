"""What the router must be able to do: a spec step the chosen router cannot carry.

Each step and strategy setting needs a capability (a header route needs header routes, a
shadow needs mirroring); the router the spec chooses, or its platform's default, must
declare it in the registry (``traffic.base.capabilities_of``), which answers without
importing any router. The error names the routers of the same platform that can.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from changeover import errors
from changeover.spec import models, traffic_settings
from changeover.spec.rules import problem
from changeover.traffic import base as traffic

# How each capability reads in "setMirrorRoute needs a router with mirroring: builtin".
_CAPABILITY_WORDS = {
    traffic.Capability.WEIGHTS: "exact weights",
    traffic.Capability.HEADER_ROUTES: "header routes",
    traffic.Capability.COOKIE_ROUTES: "cookie routes",
    traffic.Capability.STICKY: "sticky user splits",
    traffic.Capability.MIRROR: "mirroring",
    traffic.Capability.MIRROR_COMPARE: "shadow answers compared",
    traffic.Capability.PREVIEW: "a preview endpoint",
    traffic.Capability.MAINTENANCE: "a maintenance page",
    traffic.Capability.BACKENDS: "replica endpoints",
    traffic.Capability.WEBSOCKET: "WebSocket connections",
}


# --- what the router must be able to do ----------------------------------------------------

Need = tuple[str, str, traffic.Capability]  # (path, what needs it, capability)


def _needs(rollout: models.Rollout) -> Iterator[Need]:
    strategy = rollout.spec.strategy
    root = f"spec.strategy.{strategy.name}"
    if strategy.canary is not None:
        for i, step in enumerate(strategy.canary.steps):
            path = f"{root}.steps[{i}]"
            if step.set_header_route is not None:
                yield from _match_needs(
                    f"{path}.setHeaderRoute", "setHeaderRoute", step.set_header_route.match
                )
            if step.set_mirror_route is not None:
                mirror = f"{path}.setMirrorRoute"
                yield mirror, "setMirrorRoute", traffic.Capability.MIRROR
                yield from _match_needs(mirror, "setMirrorRoute", step.set_mirror_route.match)
                if step.set_mirror_route.compare is not None:
                    yield f"{mirror}.compare", "compare", traffic.Capability.MIRROR_COMPARE
    if strategy.ab_test is not None:
        yield from _match_needs(f"{root}.match", "abTest match", strategy.ab_test.match)
        if strategy.ab_test.user_key is not None:
            yield f"{root}.userKey", "abTest userKey", traffic.Capability.STICKY
    if strategy.shadow is not None:
        yield root, "shadow", traffic.Capability.MIRROR
        if strategy.shadow.compare is not None:
            yield f"{root}.compare", "compare", traffic.Capability.MIRROR_COMPARE
    if strategy.blue_green is not None and strategy.blue_green.preview_port is not None:
        yield f"{root}.previewPort", "previewPort", traffic.Capability.PREVIEW


def _match_needs(path: str, what: str, matches: Sequence[models.RouteMatch]) -> Iterator[Need]:
    for j, match in enumerate(matches):
        if match.header_name is not None:
            yield f"{path}.match[{j}]", f"{what} by header", traffic.Capability.HEADER_ROUTES
        else:
            yield f"{path}.match[{j}]", f"{what} by cookie", traffic.Capability.COOKIE_ROUTES


# Registry name → the platform the router runs on; routers in neither (the unit tests'
# ``recording`` fake) are never suggested.
_ROUTER_PLATFORM = {
    **{models.ROUTER_REGISTRY_NAMES[k]: p for k, p in traffic_settings.PLATFORM.items()},
    **{router: platform for platform, router in models.DEFAULT_ROUTER.items()},
}


_PLATFORM_WORDS = {"local": "the local platform", "kubernetes": "Kubernetes"}


def _routers_on(platform: str) -> list[str]:
    return [r for r in traffic.registered() if _ROUTER_PLATFORM.get(r) == platform]


def problems(rollout: models.Rollout) -> list[errors.SpecProblem]:
    router = rollout.spec.router
    needs = list(_needs(rollout))
    key = rollout.spec.traffic.chosen
    chosen = key is not None
    platform = rollout.spec.platform
    if key is not None and traffic_settings.PLATFORM[key] != platform:
        where = "a pod template (Kubernetes)" if platform == "kubernetes" else "a process"
        runs_on = _PLATFORM_WORDS[traffic_settings.PLATFORM[key]]
        return [
            problem(
                f"spec.traffic.{key}",
                f"router '{key}' runs on {runs_on}, but this rollout's "
                f"template is {where}; expected one of "
                + ", ".join(k for k, p in traffic_settings.PLATFORM.items() if p == platform),
            )
        ]
    if router not in traffic.registered():
        # Unknown only matters if something asks the router for anything; a bare
        # rollingUpdate on the default router is fine even before routers register.
        if not needs and not chosen:
            return []
        known = ", ".join(traffic.registered()) or "none"
        return [problem("spec.traffic", f"unknown router '{router}' (registered: {known})")]
    has = traffic.capabilities_of(router)
    problems = []
    reported: set[tuple[str, traffic.Capability]] = set()
    for path, what, capability in needs:
        if capability in has or (what, capability) in reported:
            continue
        reported.add((what, capability))  # one problem per kind of need, not per match
        words = _CAPABILITY_WORDS[capability]
        able = [r for r in _routers_on(platform) if capability in traffic.capabilities_of(r)]
        message = (
            f"{what} needs a router with {words}: {', '.join(able)} (this rollout uses '{router}')"
            if able
            else f"{what} needs a router with {words}, and no registered router has it"
        )
        problems.append(problem(path, message))
    canary = rollout.spec.strategy.canary
    if canary is not None and traffic.Capability.WEIGHTS not in has:
        first = next((i for i, s in enumerate(canary.steps) if s.set_weight is not None), None)
        if first is not None:
            problems.append(
                problem(
                    f"spec.strategy.canary.steps[{first}].setWeight",
                    f"router '{router}' cannot split by exact weights; setWeight is "
                    "approximated by the ratio of canary to stable replicas",
                    warning=True,
                )
            )
        scales = [i for i, s in enumerate(canary.steps) if s.set_canary_scale is not None]
        if scales:
            problems.append(
                problem(
                    f"spec.strategy.canary.steps[{scales[0]}].setCanaryScale",
                    f"has no effect with router '{router}': without a traffic router the "
                    "replicas are the weight (as in Argo Rollouts)",
                    warning=True,
                )
            )
    return problems
