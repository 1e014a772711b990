"""``local_server.router_factory``: how many processes a builtin router gets.

Given ``serve --router-workers`` and a rollout's ``traffic.builtin.workers``, when the
controller builds the rollout's router, then the rollout's own count wins, ``serve``'s is
the default, and a blue-green rollout with a preview port keeps one process. Building a
router starts nothing, so these tests only read the unstarted router.
"""

from __future__ import annotations

from typing import Any

import pytest

from changeover import local_server
from changeover.spec import models
from changeover.traffic import builtin
from changeover.traffic.haproxy import router as haproxy_router


def rollout(traffic: dict[str, Any], *, preview_port: int | None = None) -> models.Rollout:
    strategy: dict[str, Any] = (
        {"blueGreen": {"previewPort": preview_port}} if preview_port else {"canary": {}}
    )
    return models.Rollout.model_validate(
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "template": {"command": ["app", "--port", "$(PORT)"]},
                "service": {"port": 8080},
                "strategy": strategy,
                "traffic": traffic,
            },
        }
    )


def workers_of(spec: models.Rollout, *, router_workers: int) -> int:
    router = local_server.router_factory(builtin.Registry(), router_workers=router_workers)(spec)
    assert isinstance(router, builtin.BuiltinRouter)
    return router.workers_n


@pytest.mark.parametrize(
    ("traffic", "router_workers", "expected"),
    [
        ({"builtin": {}}, 1, 1),
        ({"builtin": {}}, 3, 3),  # serve --router-workers is the default
        ({"builtin": {"workers": 2}}, 1, 2),  # the rollout's own ...
        ({"builtin": {"workers": 2}}, 4, 2),  # ... beats serve's
        ({}, 3, 3),  # no traffic key: the builtin router, serve's count
    ],
)
def test_the_rollouts_workers_beat_serves(
    traffic: dict[str, Any], router_workers: int, expected: int
) -> None:
    assert workers_of(rollout(traffic), router_workers=router_workers) == expected


def test_a_preview_port_keeps_one_process() -> None:
    spec = rollout({"builtin": {"workers": 4}}, preview_port=9103)
    assert workers_of(spec, router_workers=4) == 1


def test_other_routers_get_no_workers_argument() -> None:
    spec = rollout({"haproxy": {"nbthread": 2}})
    router = local_server.router_factory(builtin.Registry(), router_workers=4)(spec)
    assert isinstance(router, haproxy_router.HAProxyRouter)
