"""Many concurrent long-lived token streams through one proxy: ``python -m bench.many_streams``.

The upstream (``bench.stream_server long``) answers every request with 60 server-sent
events 0.5 s apart (a 30-second LLM completion). The client opens ``--streams`` of them at
once (default 5,000) through the builtin router (one process, one worker) and through
nginx (one worker, ``proxy_buffering off``), on the same upstream, and reports:

- errors: streams that failed, or ended without all 60 events and their last chunk;
- memory per open stream: the proxy's resident memory with every stream open, less its
  memory before, over the streams that were open at that moment;
- added time to first token: at low concurrency (one stream at a time, ``--ttft-samples``
  of them, upstream mode ``stream``: first event at once), the median time to the first
  event through the proxy less the median straight from the upstream.

File descriptors: each proxied stream holds two sockets in the proxy, so the soft
``RLIMIT_NOFILE`` is raised to the hard limit here (children inherit it) and the number
of streams is capped to fit. Writes the "## Many streams" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench import common, judge, proxies, stream_client

SECTION = "## Many streams"
EVENTS = 60  # what bench.stream_server's "long" mode sends per stream
REQUEST = b"GET /v1/stream HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\n\r\n"


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE toward ``wanted`` within the hard limit; the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


@dataclass
class Load:
    streams: int
    errors: int
    open_at_peak: int
    ttft_p50_ms: float  # under the full load: request to first event
    ttft_p99_ms: float
    seconds: float


async def _one(
    port: int, opened: Callable[[float], None], gate: asyncio.Semaphore
) -> tuple[bool, float]:
    """One stream: (complete, seconds to its first event). ``opened`` is called once per
    stream: with the time to its first event, or with -1 when it failed before one."""
    first = 0.0
    try:
        async with gate:  # connects in waves: a listen backlog is finite
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        opened(-1.0)
        return False, 0.0
    try:
        t0 = time.monotonic()
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return False, 0.0
        events = 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return events == EVENTS, first
            data = await reader.readexactly(size + 2)
            events += data.count(b"data:")
            if not first:
                first = time.monotonic() - t0
                opened(first)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        return False, 0.0
    finally:
        if not first:
            opened(-1.0)
        writer.close()


async def _load(port: int, n: int, pids: list[int], idle_rss: int) -> tuple[Load, int]:
    firsts: list[float] = []
    failed = 0
    all_open = asyncio.Event()

    def opened(t: float) -> None:
        nonlocal failed
        if t < 0:
            failed += 1
        else:
            firsts.append(t)
        if len(firsts) + failed == n:
            all_open.set()

    gate = asyncio.Semaphore(256)
    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(_one(port, opened, gate)) for _ in range(n)]
    done = asyncio.ensure_future(asyncio.gather(*tasks))
    waiter = asyncio.ensure_future(all_open.wait())
    await asyncio.wait([waiter, done], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    await asyncio.sleep(1.0)  # let the proxy settle with everything open
    open_now = len(firsts) - sum(t.done() and t.result()[0] for t in tasks)
    peak_rss = common.rss_bytes(pids)
    results = await done
    ok = [r for r in results if r[0]]
    ttfts = sorted(r[1] for r in ok) or [0.0]
    load = Load(
        streams=n,
        errors=n - len(ok),
        open_at_peak=open_now,
        ttft_p50_ms=statistics.median(ttfts) * 1000,
        ttft_p99_ms=ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))] * 1000,
        seconds=time.monotonic() - t0,
    )
    return load, peak_rss - idle_rss


def _ttft_ms(port: int, samples: int) -> float:
    return statistics.median(t.ttfb_ms for t in stream_client.measure(port, samples))


@dataclass
class Side:
    name: str
    load: Load
    per_stream_kib: float
    idle_mib: float
    ttft_ms: float


def run_proxy(
    start: Callable[[proxies.ProxyContext], proxies.Running],
    ctx: proxies.ProxyContext,
    args: argparse.Namespace,
    quick_port: int,
) -> Side:
    running = start(ctx)
    try:
        pids = running.all_pids()
        _ttft_ms(ctx.port, 3)  # warm both ends
        time.sleep(0.5)
        idle = common.rss_bytes(pids)
        load, grown = uvloop.run(_load(ctx.port, args.streams, pids, idle))
        per_stream = grown / max(1, load.open_at_peak) / 1024
    finally:
        running.stop()
    quick = proxies.ProxyContext(
        procs=ctx.procs,
        workdir=ctx.workdir,
        port=common.free_port(),
        backends={1: quick_port, 2: quick_port},
        stream=True,
        cpu=ctx.cpu,
    )
    running = start(quick)
    try:
        ttft = _ttft_ms(quick.port, args.ttft_samples)
    finally:
        running.stop()
    return Side(running.name, load, per_stream, idle / 2**20, ttft)


def render(sides: list[Side], direct_ms: float, args: argparse.Namespace, took: float) -> str:
    cmd = "python -m bench.many_streams" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    out = [
        SECTION,
        "",
        *judge.machine(),
        f"- load average before: {args.load_before}",
        f"- command: `.venv/bin/{cmd}` ({took:.0f} s; RLIMIT_NOFILE soft {args.nofile})",
        f"- {args.streams} concurrent streams of {EVENTS} server-sent events 0.5 s apart "
        "(30 s each, `bench.stream_server long`), all opened at once (256 connects at a "
        "time) through one proxy process: the builtin router (one worker; its per-revision "
        "token accounting on) and nginx (one worker, `proxy_buffering off`), same upstream",
        "- memory per stream: proxy RSS with every stream open, less RSS before, over the "
        "streams open at that moment; TTFT under load: request to first event, at the client",
        f"- added TTFT: one stream at a time ({args.ttft_samples} each), median first-event "
        f"time through the proxy less straight from the upstream ({direct_ms:.2f} ms)",
        "",
        "| proxy | streams | errors | open at peak | memory per open stream | idle RSS "
        "| TTFT p50 / p99 under load | added TTFT (median, unloaded) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sides:
        out.append(
            f"| {s.name} | {s.load.streams} | {s.load.errors} | {s.load.open_at_peak} "
            f"| {s.per_stream_kib:.1f} KiB | {s.idle_mib:.1f} MiB "
            f"| {s.load.ttft_p50_ms:.1f} / {s.load.ttft_p99_ms:.1f} ms "
            f"| {s.ttft_ms - direct_ms:+.3f} ms |"
        )
    if len(sides) == 2 and sides[1].per_stream_kib > 0:
        ratio = sides[0].per_stream_kib / sides[1].per_stream_kib
        out += ["", f"Memory per stream, builtin / nginx: {ratio:.2f}×."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--streams", type=int, default=5000)
    p.add_argument("--ttft-samples", type=int, default=300)
    p.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    args = p.parse_args(argv)
    args.nofile = raise_fd_limit(2 * args.streams + 1024)
    if 2 * args.streams + 256 > args.nofile:
        args.streams = (args.nofile - 256) // 2
        print(f"RLIMIT_NOFILE {args.nofile}: capped at {args.streams} streams", file=sys.stderr)
    args.load_before = common.loadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="changeover-streams-") as tmp:
        workdir = Path(tmp)
        procs = common.Procs(workdir)
        try:
            long_ports = [common.free_port(), common.free_port()]
            quick_port = common.free_port()
            proxies.start_stream_server(procs, "long", long_ports)
            proxies.start_stream_server(procs, "stream", [quick_port])
            direct = _ttft_ms(quick_port, args.ttft_samples)
            sides = []
            for start in (proxies.start_builtin, proxies.start_nginx):
                ctx = proxies.ProxyContext(
                    procs=procs,
                    workdir=workdir,
                    port=common.free_port(),
                    backends={1: long_ports[0], 2: long_ports[1]},
                    stream=True,
                    # Two slots per stream are not enough for nginx: it closes connections
                    # to reuse their slots ("worker_connections are not enough").
                    connections=4 * args.streams + 512,
                )
                sides.append(run_proxy(start, ctx, args, quick_port))
        finally:
            procs.stop_all()
    text = render(sides, direct, args, time.monotonic() - started)
    print(text)
    if not args.no_write:
        common.write_results_section(SECTION, text)
        print(f"written to {common.RESULTS}")
    return 0 if all(s.load.errors == 0 for s in sides) else 1


if __name__ == "__main__":
    sys.exit(main())
