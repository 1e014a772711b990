"""Documented size limits of a Rollout, refused at ``lint`` and ``apply`` with the field path.

A spec is data the controller reads on every change, so its size is bounded like a
Kubernetes object's (1.5 MiB in etcd). Past these limits nothing useful is gained and the
controller pays for it: a 1.25 MB spec of 50,000 steps was once accepted.

=====================================  =========  ===========================================
limit                                  value      field
=====================================  =========  ===========================================
the whole Rollout, as compact JSON     256 KiB    ``spec``
canary steps                           200        ``spec.strategy.canary.steps``
replicas (and per-step/shadow counts)  256        ``spec.replicas``, ``...setCanaryScale``
route matches per route                64         ``...match``
webhooks / notifications               32         ``spec.webhooks``, ``spec.notifications``
=====================================  =========  ===========================================
"""

from __future__ import annotations

import json

from changeover import errors
from changeover.spec import models

MAX_SPEC_BYTES = 256 * 1024
MAX_STEPS = 200
MAX_REPLICAS = 256
MAX_MATCHES = 64
MAX_HOOKS = 32


def check_rollout(rollout: models.Rollout) -> list[errors.SpecProblem]:
    """Every limit ``rollout`` exceeds (no ``file``: the caller sets it)."""
    problems: list[errors.SpecProblem] = []

    def over(path: str, count: int, limit: int, what: str) -> None:
        if count > limit:
            problems.append(
                errors.SpecProblem(
                    file="", path=path, message=f"{count} {what}: at most {limit} allowed"
                )
            )

    spec = rollout.spec
    size = len(json.dumps(rollout.to_json_dict(), separators=(",", ":")).encode())
    over("spec", size, MAX_SPEC_BYTES, "bytes of spec (as JSON)")
    over("spec.replicas", spec.replicas, MAX_REPLICAS, "replicas")
    over("spec.webhooks", len(spec.webhooks), MAX_HOOKS, "webhooks")
    over("spec.notifications", len(spec.notifications), MAX_HOOKS, "notifications")
    strategy = spec.strategy
    if strategy.canary is not None:
        steps = strategy.canary.steps
        over("spec.strategy.canary.steps", len(steps), MAX_STEPS, "steps")
        for i, step in enumerate(steps[: MAX_STEPS + 1]):
            at = f"spec.strategy.canary.steps[{i}]"
            scale = step.set_canary_scale
            if scale is not None and scale.replicas is not None:
                over(f"{at}.setCanaryScale.replicas", scale.replicas, MAX_REPLICAS, "replicas")
            for kind, route in (
                ("setHeaderRoute", step.set_header_route),
                ("setMirrorRoute", step.set_mirror_route),
            ):
                if route is not None:
                    over(f"{at}.{kind}.match", len(route.match), MAX_MATCHES, "matches")
    if strategy.ab_test is not None:
        over("spec.strategy.abTest.match", len(strategy.ab_test.match), MAX_MATCHES, "matches")
    if strategy.shadow is not None and strategy.shadow.replicas is not None:
        over("spec.strategy.shadow.replicas", strategy.shadow.replicas, MAX_REPLICAS, "replicas")
    return problems
