"""Reverting is rolling back: a re-applied earlier template is that revision again, and
``undo`` goes to the last revision that was Healthy. A real Controller and LocalService
with the fake platform and the recording router."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from changeover.local_controller.local_service import LocalService
from changeover.testing import local_world

JSON = dict[str, Any]
STEPS = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[LocalService]:
    async with local_world.started(tmp_path) as world:
        yield world.service


def rollout(version: str) -> JSON:
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "template": {"command": ["app", "--version", version]},
            "service": {"port": 18080},
            "strategy": {"canary": {"steps": STEPS}},
        },
    }


async def until(service: LocalService, ok: Callable[[JSON], bool], what: str) -> JSON:
    for _ in range(200):
        doc = service.status("web")
        if ok(doc):
            return doc
        await asyncio.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}: {service.status('web')}")


async def apply(service: LocalService, version: str) -> JSON:
    (result,) = await service.apply([rollout(version)], source="web.yaml")
    return result


async def healthy_on(service: LocalService, version: str, revision: int) -> None:
    await apply(service, version)
    while True:
        doc = await until(service, lambda d: _settled(d, revision), f"{version} paused or Healthy")
        if doc["phase"] == "Healthy":
            return
        await service.promote("web")


def _settled(doc: JSON, revision: int) -> bool:
    healthy = doc["phase"] == "Healthy" and doc["stableRevision"] == revision
    return healthy or (doc["phase"] == "Paused" and doc["revision"] == revision)


@pytest.mark.parametrize("aborted", [False, True])
async def test_reapplying_the_stable_template_goes_back_at_once(
    service: LocalService, aborted: bool
) -> None:
    await healthy_on(service, "v1", 1)
    await apply(service, "v2")
    await until(service, lambda d: d["phase"] == "Paused", "the canary paused")
    if aborted:
        await service.abort("web")
    result = await apply(service, "v1")  # the reverted commit, re-applied
    assert result["revision"] == 1 and not result["newRevision"]
    doc = await until(service, lambda d: d["phase"] == "Healthy", "Healthy")
    assert doc["stableRevision"] == 1 and doc["weights"] == {"1": 100}
    assert [h["revision"] for h in service.history("web")] == [1, 2]
    assert not [e for e in service.events("web") if e["reason"] == "AnalysisStarted"]


async def test_reapplying_an_earlier_template_is_that_revision(service: LocalService) -> None:
    await healthy_on(service, "v1", 1)
    await healthy_on(service, "v2", 2)
    result = await apply(service, "v1")
    assert result["revision"] == 1 and not result["newRevision"]
    assert [h["revision"] for h in service.history("web")] == [1, 2]


async def test_undo_goes_to_the_last_revision_that_was_healthy(service: LocalService) -> None:
    await healthy_on(service, "v1", 1)
    await apply(service, "v2")
    await until(service, lambda d: d["phase"] == "Paused", "v2 paused")
    await service.abort("web")  # revision 2 was never Healthy
    await apply(service, "v3")
    await until(service, lambda d: d["phase"] == "Paused" and d["revision"] == 3, "v3 paused")
    undone = await service.undo("web")
    assert undone["undoneTo"] == 1  # not 2, the highest earlier number
    doc = await until(service, lambda d: d["phase"] == "Healthy", "Healthy")
    assert doc["stableRevision"] == 1
