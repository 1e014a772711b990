"""Rules of one spec that need more than one field, and of the rollouts applied together.

The models check each field on its own; these check fields against each other: a preview
port equal to the service port, maxSurge and maxUnavailable both 0, a ``$(VAR)`` that
nothing defines, a command no process can start with, two rollouts of one apply sharing a
name or a port. They need nothing but the spec; the checks that must know the routers or
the metric providers are ``changeover.validation``'s, which runs these too. Problems with
``severity="warning"`` are worth saying but do not block an apply.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from changeover import errors
from changeover.spec import messages, models, pod, process_checks

# Kubernetes' expansion syntax: $(VAR) expands, $$ is a literal $.
_REFERENCE = re.compile(r"\$(\$|\(([^)]*)\))")
# Shell syntax that an argv list passes through untouched: $PORT, ${PORT}.
_SHELL_REFERENCE = re.compile(r"(?<!\$)\$(\{[A-Za-z_]\w*\}|[A-Za-z_]\w*)")
_ANY_HOST = ("0.0.0.0", "::", "")
# What the probe can put on its request line as it is: no spaces, controls or non-ASCII.
_PROBE_PATH = re.compile(r"^[!-~]*$")


def problem(path: str, message: str, *, warning: bool = False) -> errors.SpecProblem:
    """A problem at ``path`` of a rollout (the caller fills in the file)."""
    return errors.SpecProblem(
        file="", path=path, message=message, severity="warning" if warning else "error"
    )


def rollout_problems(rollout: models.Rollout) -> list[errors.SpecProblem]:
    """Problems within one rollout: strategy settings, ``$(VAR)`` references, processes."""
    return [
        *_strategy_problems(rollout),
        *_reference_problems(rollout),
        *_process_problems(rollout),
    ]


def apply_problems(
    rollouts: Sequence[models.Rollout], labels: Sequence[str]
) -> list[errors.SpecProblem]:
    """Problems across rollouts applied together (``labels[i]`` names ``rollouts[i]``'s
    file): a name twice, a port two of them would listen on."""
    return [*_duplicate_names(rollouts, labels), *_port_clashes(rollouts, labels)]


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
                problem(
                    f"{root}.previewPort",
                    f"expected a port other than spec.service.port ({spec.service.port}): "
                    "preview and active traffic cannot share one port",
                )
            )
        if not blue_green.auto_promotion_enabled and blue_green.auto_promotion_seconds:
            problems.append(
                problem(
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
                problem(
                    root,
                    "maxSurge and maxUnavailable are both 0, so nothing could change; "
                    "maxUnavailable is taken as 1 (Kubernetes rejects this outright)",
                    warning=True,
                )
            )
        if _percent(surge_pair.max_unavailable) > 100:
            problems.append(
                problem(
                    f"{root}.maxUnavailable",
                    "expected an integer or a percentage up to 100%, "
                    f"got {surge_pair.max_unavailable!r}",
                )
            )
    if strategy.canary is not None and not strategy.canary.steps:
        problems.append(
            problem(
                "spec.strategy.canary.steps",
                "no steps: the new revision takes all traffic as soon as it is ready",
                warning=True,
            )
        )
    ab_test = strategy.ab_test
    if ab_test is not None and ab_test.user_key is None and "weight" in ab_test.model_fields_set:
        problems.append(
            problem(
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
                    problem(
                        path,
                        f"$({name}) is not defined: only $(PORT) and keys of "
                        f"spec.template.env are expanded (write $$({name}) for a literal)",
                    )
                )
        if not via_shell and path.startswith("spec.template.command"):
            for match in _SHELL_REFERENCE.finditer(_REFERENCE.sub("", text)):
                name = match.group(1).strip("{}")
                problems.append(
                    problem(
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
    return [problem(path, message) for path, message in found]


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
                    problem(
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
                        problem(
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
