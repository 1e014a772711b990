"""The operator under benchmark, in its own process (so its CPU and memory are its own).

    python -m bench.k8s_operator_proc NAMESPACE STATS.json [WORKERS]

Runs ``Operator`` on NAMESPACE and rewrites STATS.json every half second: API requests by
verb and resource, reconciles, and for every rollout the wall-clock time of its first
action towards each revision (``ensure_revision``), which bench/k8s_scale.py turns into
"spec change to first action" latencies.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from changeover.operator.runtime import Operator
from changeover.platforms.kubernetes import client as kube


async def main(namespace: str, stats_path: Path, workers: int) -> None:
    client = await kube.KubeClient.connect()
    op = Operator(client, namespace=namespace, workers=workers, leader_election=False)
    first_action: dict[str, dict[str, float]] = {}
    ensure = op.platform.ensure_revision

    async def timed_ensure(rollout: dict[str, Any], **kw: Any) -> None:
        name = rollout["metadata"]["name"]
        first_action.setdefault(name, {}).setdefault(str(kw["revision"]), time.time())
        await ensure(rollout, **kw)

    op.platform.ensure_revision = timed_ensure  # type: ignore[method-assign]
    task = asyncio.create_task(op.run())
    while not task.done():
        doc = {
            "pid": os.getpid(),
            "requests": dict(client.requests),
            "reconciles": op.stats.reconciles,
            "actions": op.stats.actions,
            "errors": op.stats.errors,
            "queue": len(op.queue),
            "firstAction": first_action,
            "ready": op.ready.is_set(),
        }
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(stats_path)
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 32))
