"""Soak: the builtin router at a fixed load for N minutes, its memory sampled throughout.

    .venv/bin/python -m bench.soak --minutes 10

wrk (64 connections, as fast as the router answers) runs in 30-second segments against the
router in front of two nginx upstreams (the bench's 90/10 setup, all routing features on);
the router's RSS is sampled before the load and after each segment. The first minute is
warm-up (allocator pools, connection pools); after it, RSS must stay within
``--tolerance-mb`` of its value at the end of the first minute. Exit status 1 otherwise, or
on any failed request. The last lines are a Markdown summary for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import common, proxies


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.soak")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--tolerance-mb", type=float, default=16.0)
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="changeover-soak-"))
    procs = common.Procs(workdir)
    samples: list[tuple[float, int]] = []
    errors = requests = 0
    try:
        up = {1: common.free_port(), 2: common.free_port()}
        proxies.start_upstream_nginx(procs, workdir, [up[1], up[2]])
        ctx = proxies.ProxyContext(
            procs=procs, workdir=workdir, port=common.free_port(), backends=up
        )
        router = proxies.start_builtin(ctx)
        t0 = time.monotonic()
        samples.append((0.0, common.rss_bytes([router.pid])))
        print(f"     0 s  (idle)  RSS {samples[0][1] / 2**20:6.1f} MiB", flush=True)
        end = t0 + args.minutes * 60
        while end - time.monotonic() >= 5.0:  # no stub segment of a second or two at the end
            seg = min(30.0, end - time.monotonic())
            res = common.wrk(router.port, connections=args.connections, seconds=seg)
            errors += res.errors
            requests += res.requests
            rss = common.rss_bytes([router.pid])
            samples.append((time.monotonic() - t0, rss))
            print(
                f"{samples[-1][0]:6.0f} s  {res.rps:8.0f} req/s  p99 {res.p99_ms:7.2f} ms  "
                f"RSS {rss / 2**20:6.1f} MiB  errors {res.errors}",
                flush=True,
            )
    finally:
        procs.stop_all()
    after_warmup = [rss for t, rss in samples if t >= 60] or [samples[-1][1]]
    ref = after_warmup[0]
    growth = (max(after_warmup) - ref) / 2**20
    ok = errors == 0 and growth <= args.tolerance_mb
    print(
        f"requests {requests}, errors {errors}; RSS idle {samples[0][1] / 2**20:.1f} MiB, "
        f"after warm-up {ref / 2**20:.1f} MiB, last {samples[-1][1] / 2**20:.1f} MiB, "
        f"growth after warm-up {growth:.1f} MiB (tolerance {args.tolerance_mb} MiB)"
    )
    print(summary(samples, requests, errors, args, ok=ok))
    return 0 if ok else 1


def summary(
    samples: list[tuple[float, int]],
    requests: int,
    errors: int,
    args: argparse.Namespace,
    *,
    ok: bool,
) -> str:
    """RSS at start, at each whole minute (the sample nearest it) and at the end."""
    marks = [0.0, *(60.0 * m for m in range(1, int(samples[-1][0] // 60) + 1))]
    picked = list(dict.fromkeys(min(samples, key=lambda s, m=m: abs(s[0] - m)) for m in marks))
    if picked[-1] != samples[-1]:
        picked.append(samples[-1])
    cells = " | ".join(f"{t / 60:.1f} min: {rss / 2**20:.1f}" for t, rss in picked)
    return (
        f"- {args.minutes:g} minutes, wrk -c{args.connections}; {requests:,} requests, "
        f"{errors} errors; {'PASS' if ok else 'FAIL'} (tolerance {args.tolerance_mb:g} MiB)\n"
        f"- router RSS (MiB) at {cells}"
    )


if __name__ == "__main__":
    sys.exit(main())
