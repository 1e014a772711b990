"""FakePlatform: the Protocol in memory, controllable from tests."""

from __future__ import annotations

import pytest

from changeover import errors
from changeover.endpoints import Endpoint
from changeover.platforms import base
from changeover.spec import models
from changeover.testing.fake_platform import FakePlatform

TEMPLATE = models.ProcessTemplate(command=["srv"])


def fits_protocol(platform: base.Platform) -> base.Platform:
    return platform


async def test_scale_is_instant_by_default() -> None:
    platform = fits_protocol(FakePlatform())
    await platform.ensure_revision(rollout="chat", revision=1, template=TEMPLATE)
    await platform.scale(rollout="chat", revision=1, replicas=3)
    rev = platform.observe("chat")[1]
    assert rev.desired == 3
    assert len(rev.ready) == 3
    assert len({r.endpoint for r in rev.ready}) == 3


async def test_replicas_wait_for_make_ready_when_asked() -> None:
    changes: list[int] = []
    platform = FakePlatform(auto_ready=False, on_change=lambda: changes.append(1))
    await platform.ensure_revision(rollout="chat", revision=2, template=TEMPLATE)
    await platform.scale(rollout="chat", revision=2, replicas=3)
    assert platform.observe("chat")[2].ready == ()

    platform.make_ready("chat", 2, count=1)
    assert len(platform.observe("chat")[2].ready) == 1
    platform.make_ready("chat", 2)
    assert len(platform.observe("chat")[2].ready) == 3
    platform.make_not_ready("chat", 2, count=1)
    assert len(platform.observe("chat")[2].ready) == 2
    assert changes
    assert ("scale", "chat", 2, 3) in platform.calls


async def test_scale_down_drains_ready_victims_not_ready_first() -> None:
    drained: list[Endpoint] = []

    async def drainer(endpoint: Endpoint, grace_seconds: float) -> None:
        drained.append(endpoint)

    platform = FakePlatform(auto_ready=False, drainer=drainer)
    await platform.ensure_revision(rollout="chat", revision=1, template=TEMPLATE)
    await platform.scale(rollout="chat", revision=1, replicas=3)
    platform.make_ready("chat", 1, count=2)
    first, second, _starting = platform.observe("chat")[1].replicas

    await platform.scale(rollout="chat", revision=1, replicas=1)

    assert [r.id for r in platform.observe("chat")[1].replicas] == [first.id]
    assert drained == [second.endpoint]  # the Starting one had no traffic to drain


async def test_crash_counts_restarts_and_sets_message() -> None:
    platform = FakePlatform()
    await platform.ensure_revision(rollout="chat", revision=1, template=TEMPLATE)
    await platform.scale(rollout="chat", revision=1, replicas=2)
    platform.crash("chat", 1, message="exited with code 2")
    rev = platform.observe("chat")[1]
    assert len(rev.ready) == 1
    assert rev.restarts == 1
    assert rev.message == "exited with code 2"


async def test_hooks_succeed_at_once_or_when_finished() -> None:
    hook = models.Hook(command=["migrate"])
    platform = FakePlatform(auto_hooks=False)
    assert platform.hook_status(rollout="chat", hook_id="pre") is None
    await platform.start_hook(rollout="chat", hook_id="pre", hook=hook)
    status = platform.hook_status(rollout="chat", hook_id="pre")
    assert status is not None and status.state is base.HookState.RUNNING
    platform.finish_hook("chat", "pre", succeeded=False, message="boom")
    status = platform.hook_status(rollout="chat", hook_id="pre")
    assert status is not None and status.state is base.HookState.FAILED

    instant = FakePlatform()
    await instant.start_hook(rollout="chat", hook_id="pre", hook=hook)
    status = instant.hook_status(rollout="chat", hook_id="pre")
    assert status is not None and status.state is base.HookState.SUCCEEDED


async def test_delete_and_unknown_revisions() -> None:
    platform = FakePlatform()
    with pytest.raises(errors.NotFound):
        await platform.scale(rollout="chat", revision=9, replicas=1)
    await platform.ensure_revision(rollout="chat", revision=1, template=TEMPLATE)
    await platform.ensure_revision(rollout="chat", revision=2, template=TEMPLATE)
    await platform.delete_revision(rollout="chat", revision=1)
    assert list(platform.observe("chat")) == [2]
    await platform.delete_rollout("chat")
    assert platform.observe("chat") == {}
