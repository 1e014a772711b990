"""The builtin router in its own process, configured like the other proxies of the bench.

    python -m bench.router_proc --port 8080 --backend 1=9001 --backend 2=9002 \\
        [--mirror 3=9003 --mirror-percent 100 [--compare exact]] [--workers 2]

Weights 90/10 between revisions 1 and 2, a header route (``x-canary: always`` → 2) and a
sticky split (10% of ``x-user-id`` users → 2), so the per-request routing does all its work
(``x-user-id: bench`` hashes outside the sticky bucket, so wrk's traffic follows the wheel).
Per-revision metrics are always on. Prints ``READY <port>`` once it accepts connections;
SIGTERM closes it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic.builtin import BuiltinRouter, Registry


def _rev_port(text: str) -> tuple[int, int]:
    rev, _, port = text.partition("=")
    return int(rev), int(port)


async def configure(router: BuiltinRouter, args: argparse.Namespace) -> None:
    for rev, port in args.backend:
        await router.set_backends(rev, [Endpoint("127.0.0.1", port)])
    await router.set_weight({1: 90, 2: 10})
    await router.set_header_route(
        "canary",
        2,
        [
            models.RouteMatch(
                header_name="x-canary", header_value=models.StringMatch(exact="always")
            )
        ],
    )
    await router.set_sticky_split(2, models.UserKey(header="x-user-id"), 10)
    if args.mirror:
        rev, port = args.mirror
        await router.set_backends(rev, [Endpoint("127.0.0.1", port)])
        compare = models.MirrorCompare(comparator=args.compare) if args.compare else None
        await router.set_mirror_route("shadow", rev, args.mirror_percent, [], compare)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    router = BuiltinRouter("bench", port=args.port, metrics=Registry(), workers=args.workers)
    await router.start()
    await configure(router, args)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"READY {router.port}", flush=True)
    await stop.wait()
    await router.collect_metrics()
    snap = router.metrics.snapshot()
    for rev, m in snap["revisions"].items():
        print(
            f"revision {rev}: requests {m['requests']} mirror {m['mirror']['sent']} sent "
            f"{m['mirror']['dropped']} dropped {m['mirror']['failed']} failed",
            flush=True,
        )
        if "shadow" in m:
            s = m["shadow"]
            print(
                f"shadow {rev}: compared {s['compared']} matched {s['matched']} "
                f"notCompared {sum(s['notCompared'].values())}",
                flush=True,
            )
    await asyncio.wait_for(router.close(), 15)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.router_proc")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backend", type=_rev_port, action="append", default=[])
    p.add_argument("--mirror", type=_rev_port)
    p.add_argument("--mirror-percent", type=int, default=100)
    p.add_argument("--compare", help="compare the shadow's answers with this comparator")
    p.add_argument("--workers", type=int, default=1)
    return p.parse_args(argv)


if __name__ == "__main__":
    uvloop.run(main(parse(sys.argv[1:])))
