"""changeover's managed HAProxy (``traffic: {haproxy: {}}``) as a proxy of the benchmark.

The harness (``bench/run.py``) imports this module and calls::

    start(ctx: bench.proxies.ProxyContext) -> bench.proxies.Running

``ctx.port`` is the port to serve, ``ctx.backends`` maps revision 1 and 2 to upstream ports
on 127.0.0.1, ``ctx.cpu`` the core to pin HAProxy to (None: unpinned), ``ctx.procs`` starts
and later stops processes by PID. It starts this module as a process (``python -m
bench.haproxy_dataplane --port P --backend 1=A --backend 2=B [--cpu 0]``) that runs an
``HAProxyRouter`` exactly as ``changeover serve`` does and configures it like every proxy of
the benchmark: weights 90/10 (exact, HAProxy's weighted round-robin over server weights), a header
route (``x-canary: always`` → revision 2) and per-revision metrics (stats polled every
second, a rate-bounded sample of requests timed from HAProxy's log, the
``x-changeover-revision`` response header). The hand-configured HAProxy of
``bench/proxies.py`` does the same split, route and header; changeover adds its per-revision
metrics (the log sample and the stats poll); ``--sticky`` adds the builtin router's sticky split
(10% of ``x-user-id`` users → revision 2) for a like-for-like comparison with it.
The returned ``Running`` has that process's PID: its CPU and its HAProxy's (master and
worker, its children) are the data plane's cost. ``stop()`` sends it SIGTERM: the router
closes and HAProxy stops softly. ``ctx.stream`` needs nothing: the
router always renders ``option http-no-delay``.

HAProxy runs with one thread pinned to ``ctx.cpu`` (``nbthread 1`` + ``cpu-map``), as the
hand-configured HAProxy of the benchmark does; the controlling Python process is left
unpinned (it sleeps between stats polls).

Run by hand (prints ``READY <port>``; Ctrl-C stops)::

    python -m bench.haproxy_dataplane --port 8080 --backend 1=9001 --backend 2=9002 --cpu 0

Measured against the hand configuration in paired rounds (``python -m bench.haproxy_dataplane
compare``, ``bench/haproxy_compare.py``; bench/RESULTS.md): four runs, 110 pairs per
concurrency, pooled: requests/s 0.974x hand at c=32 (95% interval of the median
0.961-0.984) and 0.968x at c=256 (0.954-1.002); HAProxy CPU per request 1.026x and 1.030x.

Measured cost (callgrind, user-space instructions per proxied request, c=1, HAProxy 2.6,
the benchmark's job; the kernel's share of each request, most of the CPU here, is the same
for both: same syscalls per request): 34.3k here against 33.4k for the benchmark's
hand-written configuration (+2.7%; 36.3k, +8.5%, with the former request counter over a
100-slot wheel map). What the difference buys: the log-sampling test for latency histograms
(~0.45k), the header route as a runtime-changeable map guarded by the header's presence
(the hand one compares a literal), the revision header as a map lookup of the server id
(the hand one writes ``%[srv_id]`` in). The L7-retry buffer of ``retry-on empty-response``
alone had doubled the whole request, which is why it is not used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Sequence

import uvloop

from bench import proxies
from changeover import errors
from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic.builtin import Registry
from changeover.traffic.haproxy import HAProxyRouter

NAME = "changeover-haproxy"


def start(
    ctx: proxies.ProxyContext, *, extra: Sequence[str] = (), label: str = NAME
) -> proxies.Running:
    """Start changeover's HAProxy data plane for the benchmark's 90/10 split (see above);
    ``extra`` are more arguments of this module's command (``--timed-per-second 0``...)."""
    argv = [
        sys.executable,
        "-m",
        "bench.haproxy_dataplane",
        "--port",
        str(ctx.port),
        *(a for rev, port in sorted(ctx.backends.items()) for a in ("--backend", f"{rev}={port}")),
        *extra,
    ]
    if ctx.cpu is not None:
        argv += ["--cpu", str(ctx.cpu)]
    name = f"{label}-{ctx.port}"
    p = ctx.procs.start(name, argv)
    proxies._ready(p, ctx.port, name, ctx.procs.logdir)
    # The harness reads the process tree once start() returns: wait for READY, printed once
    # the router has configured HAProxy, so the worker it finds is the one that serves.
    log = ctx.procs.logdir / f"{name}.log"
    deadline = time.monotonic() + 30
    while "READY" not in log.read_text(errors="replace"):
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not get ready: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    return proxies.Running(
        label, ctx.port, p.pid, lambda: ctx.procs.stop(p, grace=20.0), notes="HAProxy 2.6"
    )


def _rev_port(text: str) -> tuple[int, int]:
    rev, _, port = text.partition("=")
    return int(rev), int(port)


async def configure(
    router: HAProxyRouter, backends: list[tuple[int, int]], *, sticky: bool = False
) -> None:
    for rev, port in backends:
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
    if sticky:
        await router.set_sticky_split(2, models.UserKey(header="x-user-id"), 10)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="co-bench-hap-") as state_dir:
        router = HAProxyRouter(
            "bench",
            port=args.port,
            metrics=Registry(),
            state_dir=state_dir,
            nbthread=1 if args.cpu is not None else None,
            cpu=args.cpu,
            timed_per_second=args.timed_per_second,
        )
        # Configured before start: HAProxy's first configuration already has the route's
        # rule (set after start, a new header name means one reload).
        await configure(router, args.backend, sticky=args.sticky)
        await router.start()
        try:
            stop = asyncio.Event()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            print(
                f"READY {router.port} (HAProxy pid {router.process and router.process.pid},"
                f" reloads {router.reloads})",
                flush=True,
            )
            await stop.wait()
            with contextlib.suppress(errors.BackendError):
                await router.refresh_metrics()
            snap = router.metrics.snapshot()
            for rev, m in snap["revisions"].items():
                print(
                    f"revision {rev}: requests {m['requests']} timed {m['latency']['count']}",
                    flush=True,
                )
        finally:
            await asyncio.wait_for(router.close(), 30)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.haproxy_dataplane")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backend", type=_rev_port, action="append", default=[])
    p.add_argument("--cpu", type=int)
    p.add_argument("--sticky", action="store_true", help="add the sticky split on x-user-id")
    p.add_argument(
        "--timed-per-second",
        type=int,
        default=200,
        help="requests timed from the log a second (0: no log, no latency histograms)",
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["compare"]:
        from bench import haproxy_compare

        sys.exit(haproxy_compare.main(sys.argv[2:]))
    uvloop.run(main(parse(sys.argv[1:])))
