"""Rules that need more than one field: what the router can do, port clashes, names.

The models check each field on its own; this module checks a parsed spec against the rest of
the world: a canary step the chosen router cannot carry (``traffic.base.capabilities_of``),
a preview port equal to the service port, two rollouts of one apply sharing a name or a
port, a ``$(VAR)`` that nothing defines. Problems come back as ``SpecProblem``\\ s; those
with ``severity="warning"`` are worth saying but do not block an apply.

Who calls it: the CLI's ``lint`` (``lint``) and ``apply`` (``read``); the controller's HTTP
API (``read_text``, or ``validate_rollouts`` on rollouts it already holds).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Sequence

from changeover import errors
from changeover.spec import (
    analysis_checks,
    limits,
    load,
    messages,
    models,
    pod,
    process_checks,
    traffic_settings,
)
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
}

# Kubernetes' expansion syntax: $(VAR) expands, $$ is a literal $.
_REFERENCE = re.compile(r"\$(\$|\(([^)]*)\))")
# Shell syntax that an argv list passes through untouched: $PORT, ${PORT}.
_SHELL_REFERENCE = re.compile(r"(?<!\$)\$(\{[A-Za-z_]\w*\}|[A-Za-z_]\w*)")
_ANY_HOST = ("0.0.0.0", "::", "")
# What the probe can put on its request line as it is: no spaces, controls or non-ASCII.
_PROBE_PATH = re.compile(r"^[!-~]*$")


# --- entry points ------------------------------------------------------------------------


def lint(path: str | os.PathLike[str]) -> list[errors.SpecProblem]:
    """Every problem and warning in the file or directory at ``path``; never raises."""
    docs, problems = load.collect_path(path)
    return _collect(docs, problems)[1]


def read(path: str | os.PathLike[str]) -> load.Specs:
    """The specs at ``path``, checked; SpecError with every error if any. Warnings ride
    along in ``Specs.warnings`` for the caller to show."""
    return _checked(*load.collect_path(path))


def read_text(text: str, *, source: str = "<string>") -> load.Specs:
    """``read`` for YAML (or JSON) already in memory, such as an HTTP request body."""
    try:
        docs = load.load_text(text, source=source)
    except errors.SpecError as exc:
        return _checked([], exc.problems)
    return _checked(docs, [])


def validate_rollouts(
    rollouts: Sequence[models.Rollout],
    *,
    source: str = "",
    sources: Sequence[str] | None = None,
) -> list[errors.SpecProblem]:
    """Cross-field problems (and warnings: filter on ``severity``) of rollouts applied
    together. Messages name ``sources[i]`` (parallel to ``rollouts``) or else ``source``."""
    labels = list(sources) if sources is not None else [source] * len(rollouts)
    problems: list[errors.SpecProblem] = []
    for rollout, label in zip(rollouts, labels, strict=True):
        problems += check_rollout(rollout, source=label)
    problems += _duplicate_names(rollouts, labels)
    problems += _port_clashes(rollouts, labels)
    return problems


def check_rollout(rollout: models.Rollout, *, source: str = "") -> list[errors.SpecProblem]:
    """Problems within one rollout."""
    problems = [
        *limits.check_rollout(rollout),  # size limits: spec.limits, kept apart from the rest
        *_router_problems(rollout),
        *_strategy_problems(rollout),
        *_reference_problems(rollout),
        *_process_problems(rollout),
    ]
    return [dataclasses.replace(p, file=source) for p in problems]


def _collect(
    docs: list[load.LoadedDocument], problems: list[errors.SpecProblem]
) -> tuple[load.Specs, list[errors.SpecProblem]]:
    specs, found = load.collect_documents(docs)
    parsed, template_problems, broken = analysis_checks.parse_templates(specs.other)
    known = {template.name: template for template, _ in parsed}
    analysis_problems = analysis_checks.check_rollouts(
        specs.rollouts, specs.sources, known, strict=False, broken=broken
    )
    return specs, [
        *problems,
        *found,
        *template_problems,
        *validate_rollouts(specs.rollouts, sources=specs.sources),
        *analysis_problems,
    ]


def _checked(docs: list[load.LoadedDocument], problems: list[errors.SpecProblem]) -> load.Specs:
    specs, found = _collect(docs, problems)
    failures = [p for p in found if p.severity != "warning"]
    if failures:
        raise errors.SpecError(failures)
    return dataclasses.replace(specs, warnings=[p for p in found if p.severity == "warning"])


def _problem(path: str, message: str, *, warning: bool = False) -> errors.SpecProblem:
    return errors.SpecProblem(
        file="", path=path, message=message, severity="warning" if warning else "error"
    )


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


def _router_problems(rollout: models.Rollout) -> list[errors.SpecProblem]:
    router = rollout.spec.router
    needs = list(_needs(rollout))
    key = rollout.spec.traffic.chosen
    chosen = key is not None
    platform = rollout.spec.platform
    if key is not None and traffic_settings.PLATFORM[key] != platform:
        where = "a pod template (Kubernetes)" if platform == "kubernetes" else "a process"
        runs_on = _PLATFORM_WORDS[traffic_settings.PLATFORM[key]]
        return [
            _problem(
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
        return [_problem("spec.traffic", f"unknown router '{router}' (registered: {known})")]
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
        problems.append(_problem(path, message))
    canary = rollout.spec.strategy.canary
    if canary is not None and traffic.Capability.WEIGHTS not in has:
        first = next((i for i, s in enumerate(canary.steps) if s.set_weight is not None), None)
        if first is not None:
            problems.append(
                _problem(
                    f"spec.strategy.canary.steps[{first}].setWeight",
                    f"router '{router}' cannot split by exact weights; setWeight is "
                    "approximated by the ratio of canary to stable replicas",
                    warning=True,
                )
            )
        scales = [i for i, s in enumerate(canary.steps) if s.set_canary_scale is not None]
        if scales:
            problems.append(
                _problem(
                    f"spec.strategy.canary.steps[{scales[0]}].setCanaryScale",
                    f"has no effect with router '{router}': without a traffic router the "
                    "replicas are the weight (as in Argo Rollouts)",
                    warning=True,
                )
            )
    return problems


# --- strategy settings that contradict each other -------------------------------------------


def _strategy_problems(rollout: models.Rollout) -> list[errors.SpecProblem]:
    spec = rollout.spec
    strategy = spec.strategy
    problems: list[errors.SpecProblem] = []
    blue_green = strategy.blue_green
    if blue_green is not None:
        root = "spec.strategy.blueGreen"
        if blue_green.preview_port == spec.service.port:
            problems.append(
                _problem(
                    f"{root}.previewPort",
                    f"expected a port other than spec.service.port ({spec.service.port}): "
                    "preview and active traffic cannot share one port",
                )
            )
        if not blue_green.auto_promotion_enabled and blue_green.auto_promotion_seconds:
            problems.append(
                _problem(
                    f"{root}.autoPromotionSeconds",
                    "ignored: autoPromotionEnabled is false, so only promote goes ahead",
                    warning=True,
                )
            )
    surge_pair = strategy.rolling_update or strategy.canary
    if surge_pair is not None:
        root = f"spec.strategy.{strategy.name}"
        if _is_zero(surge_pair.max_surge) and _is_zero(surge_pair.max_unavailable):
            problems.append(
                _problem(
                    root,
                    "maxSurge and maxUnavailable are both 0, so nothing could change; "
                    "maxUnavailable is taken as 1 (Kubernetes rejects this outright)",
                    warning=True,
                )
            )
        if _percent(surge_pair.max_unavailable) > 100:
            problems.append(
                _problem(
                    f"{root}.maxUnavailable",
                    "expected an integer or a percentage up to 100%, "
                    f"got {surge_pair.max_unavailable!r}",
                )
            )
    if strategy.canary is not None and not strategy.canary.steps:
        problems.append(
            _problem(
                "spec.strategy.canary.steps",
                "no steps: the new revision takes all traffic as soon as it is ready",
                warning=True,
            )
        )
    ab_test = strategy.ab_test
    if ab_test is not None and ab_test.user_key is None and "weight" in ab_test.model_fields_set:
        problems.append(
            _problem(
                "spec.strategy.abTest.weight",
                "ignored without userKey: only requests that match go to B",
                warning=True,
            )
        )
    return problems


def _is_zero(value: int | str) -> bool:
    return value in (0, "0%")


def _percent(value: int | str) -> int:
    return int(value[:-1]) if isinstance(value, str) and value.endswith("%") else 0


# --- $(VAR) references ------------------------------------------------------------------


def _reference_problems(rollout: models.Rollout) -> list[errors.SpecProblem]:
    template = rollout.spec.template
    if not isinstance(template, models.ProcessTemplate):
        return []  # a pod template: the API server expands and checks $(VAR) itself
    defined = {"PORT", *template.env}
    places = [
        *((f"spec.template.command[{i}]", arg) for i, arg in enumerate(template.command)),
        *(
            (messages.render_path(("spec", "template", "env", key)), value)
            for key, value in template.env.items()
        ),
    ]
    # A shell expands $PORT itself, so `sh -c "... $PORT"` is deliberate.
    via_shell = "-c" in template.command
    problems = []
    for path, text in places:
        for match in _REFERENCE.finditer(text):
            name = match.group(2)
            if name is not None and name not in defined:
                problems.append(
                    _problem(
                        path,
                        f"$({name}) is not defined: only $(PORT) and keys of "
                        f"spec.template.env are expanded (write $$({name}) for a literal)",
                    )
                )
        if not via_shell and path.startswith("spec.template.command"):
            for match in _SHELL_REFERENCE.finditer(_REFERENCE.sub("", text)):
                name = match.group(1).strip("{}")
                problems.append(
                    _problem(
                        path,
                        f"${match.group(1)} is passed as is (commands run without a shell); "
                        f"write $({name}) to expand it",
                        warning=True,
                    )
                )
    return problems


def _process_problems(rollout: models.Rollout) -> list[errors.SpecProblem]:
    """What no process can be started with (NUL, '=' in an env name): the replica or hook
    would otherwise never start, with nothing to say why."""
    found: list[process_checks.Problem] = []
    template = rollout.spec.template
    if isinstance(template, models.ProcessTemplate):
        found += process_checks.problems(
            "spec.template", template.command, template.env, template.working_dir
        )
        probe = template.readiness_probe
        path = probe.http_get.path if probe is not None and probe.http_get is not None else ""
        if not _PROBE_PATH.match(path):
            found.append(
                (
                    "spec.template.readinessProbe.httpGet.path",
                    f"expected a URL path of visible ASCII characters (percent-encode the "
                    f"rest, as in /health%20check), got {path[:60]!r}",
                )
            )
    elif isinstance(template, pod.PodTemplate):
        found += process_checks.container_problems("spec.template.spec", template.spec)
    recreate = rollout.spec.strategy.recreate
    for point in ("pre", "mid", "post"):
        hook = getattr(recreate, point) if recreate is not None else None
        if hook is not None:
            root = f"spec.strategy.recreate.{point}"
            found += process_checks.problems(root, hook.command, hook.env, hook.working_dir)
    return [_problem(path, message) for path, message in found]


# --- across the rollouts of one apply ---------------------------------------------------


def _duplicate_names(
    rollouts: Sequence[models.Rollout], labels: Sequence[str]
) -> list[errors.SpecProblem]:
    first: dict[tuple[str, str], str] = {}
    problems = []
    for rollout, label in zip(rollouts, labels, strict=True):
        key = (rollout.metadata.namespace, rollout.name)
        if key in first:
            problems.append(
                dataclasses.replace(
                    _problem(
                        "metadata.name",
                        f"another rollout named '{rollout.name}' is in this apply"
                        f"{_at(first[key])}; expected each name once",
                    ),
                    file=label,
                )
            )
        else:
            first[key] = label
    return problems


def _port_clashes(
    rollouts: Sequence[models.Rollout], labels: Sequence[str]
) -> list[errors.SpecProblem]:
    taken: list[tuple[str, int, str, str]] = []  # host, port, rollout name, label
    problems = []
    for rollout, label in zip(rollouts, labels, strict=True):
        if rollout.spec.platform != "local":
            continue  # Services' ports belong to each Service, not to this machine
        service = rollout.spec.service
        ports = [("spec.service.port", service.port)]
        blue_green = rollout.spec.strategy.blue_green
        if blue_green is not None and blue_green.preview_port is not None:
            ports.append(("spec.strategy.blueGreen.previewPort", blue_green.preview_port))
        for path, port in ports:
            clash = next(
                (
                    t
                    for t in taken
                    if t[1] == port and t[2] != rollout.name and _overlap(t[0], service.host)
                ),
                None,
            )
            if clash is not None:
                problems.append(
                    dataclasses.replace(
                        _problem(
                            path,
                            f"port {port} is already used by rollout '{clash[2]}'"
                            f"{_at(clash[3])}; expected a free port",
                        ),
                        file=label,
                    )
                )
        # Register after checking so a rollout's own preview == service port is reported
        # once, by _strategy_problems, not as a clash with itself.
        taken += [(service.host, port, rollout.name, label) for _, port in ports]
    return problems


def _overlap(host_a: str, host_b: str) -> bool:
    return host_a == host_b or host_a in _ANY_HOST or host_b in _ANY_HOST


def _at(label: str) -> str:
    return f" ({label})" if label else ""
