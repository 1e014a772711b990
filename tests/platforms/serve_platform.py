"""A stand-in for ``changeover serve`` in adoption tests: run a LocalPlatform until killed.

    python serve_platform.py STATE_DIR ROLLOUT REVISION REPLICAS

Scales the echo app to REPLICAS, prints one JSON line ``{"replicas": [{id, pid, port}]}``
once they are all ready, then waits to be SIGKILLed, as a crashing server would be.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from platform_helpers import echo_template, ready, wait_for

from changeover.platforms.local import LocalPlatform


async def main(state_dir: str, rollout: str, revision: int, replicas: int) -> None:
    platform = LocalPlatform(Path(state_dir))
    await platform.start()
    await platform.ensure_revision(rollout=rollout, revision=revision, template=echo_template())
    await platform.scale(rollout=rollout, revision=revision, replicas=replicas)
    await wait_for(lambda: len(ready(platform, rollout, revision)) == replicas, within=20)
    running = [
        {"id": r.id, "pid": r.pid, "port": r.endpoint.port if r.endpoint else None}
        for r in ready(platform, rollout, revision)
    ]
    print(json.dumps({"replicas": running}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
