"""The controller parses a stored spec once per generation, not on every tick."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from changeover.spec import models
from changeover.testing import local_world


def _rollout(port: int, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "template": {"command": ["python3", "app.py"], "env": {"VERSION": version}},
            "service": {"port": port},
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    }


async def test_ticks_do_not_re_parse_an_unchanged_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[object] = []
    real = models.Rollout.model_validate

    def counting(obj: Any, *args: Any, **kwargs: Any) -> models.Rollout:
        parsed.append(obj)
        return real(obj, *args, **kwargs)

    async with local_world.started(tmp_path, tick_seconds=0.01) as world:
        service, controller = world.service, world.controller
        await service.apply([_rollout(18080, "v1")], source="t")
        monkeypatch.setattr(models.Rollout, "model_validate", counting)
        await asyncio.sleep(0.3)  # ~30 ticks, and a status read
        service.status("web")
        assert len(parsed) <= 1, f"{len(parsed)} parses of an unchanged spec"
        monkeypatch.setattr(models.Rollout, "model_validate", real)
        await service.apply([_rollout(18080, "v2")], source="t")
        await asyncio.sleep(0.1)
        found = controller.parsed("web")
        assert found is not None
        assert found[0].generation == 2
        assert found[1].spec.template.env == {"VERSION": "v2"}  # type: ignore[union-attr]
