"""What comparing shadow answers costs the primary: mirroring with comparison against
mirroring without it, in the same run.

    python -m bench.shadow_compare [--seconds 8] [--rounds 3] [--rate 2000] [--write]

Three builtin routers in the ``bench.run`` setup (90/10 split, header route, sticky
split, metrics), each on core 0, upstreams nginx: no mirror; 100% mirrored to a healthy
shadow (nginx); the same plus ``compare: {comparator: exact}`` on every copy (the primary's
and the shadow's answers captured, paired and compared). Per round and router, interleaved:
saturated throughput and p99 (``wrk``, 64 connections, core 1), then p50/p99 at a fixed
rate below saturation (open loop, ``changeover.loadgen``). Medians over rounds; ratios to
mirroring without comparison. ``--write`` puts the table in bench/RESULTS.md under
"## Shadow comparison cost".
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import common, mirror_p99, proxies
from bench import run as bench_run

SECTION = "## Shadow comparison cost"
VARIANTS = ("no mirror", "mirror", "mirror + compare")
_COMPARED = re.compile(r"shadow \d+: compared (\d+) matched (\d+) notCompared (\d+)")


def compared(log: Path) -> tuple[int, int, int] | None:
    """The router's exit summary: pairs compared, matched, not compared."""
    found = _COMPARED.findall(log.read_text()) if log.exists() else []
    return tuple(sum(int(row[i]) for row in found) for i in range(3)) if found else None  # type: ignore[return-value]


def measure(args: argparse.Namespace, procs: common.Procs, workdir: Path) -> list[str]:
    fp = common.free_port
    up = {1: fp(), 2: fp()}
    shadow = fp()
    proxies.start_upstream_nginx(procs, workdir, [up[1], up[2], shadow])
    running: dict[str, proxies.Running] = {}
    for i, variant in enumerate(VARIANTS):
        ctx = proxies.ProxyContext(
            procs=procs,
            workdir=workdir,
            port=fp(),
            backends=dict(up),
            mirror=shadow if variant != "no mirror" else None,
            compare="exact" if variant == "mirror + compare" else None,
        )
        running[variant] = proxies.start_builtin(ctx, name=f"router-{i}")
    for r in running.values():
        common.wrk(r.port, connections=64, seconds=1)  # warm-up: pools, caches
    rps: dict[str, list[float]] = {v: [] for v in VARIANTS}
    wrk_p99: dict[str, list[float]] = {v: [] for v in VARIANTS}
    fixed_p99: dict[str, list[float]] = {v: [] for v in VARIANTS}
    errors = dict.fromkeys(VARIANTS, 0)
    for rnd in range(args.rounds):
        order = VARIANTS[rnd % len(VARIANTS) :] + VARIANTS[: rnd % len(VARIANTS)]
        for variant in order:
            port = running[variant].port
            res = common.wrk(port, connections=64, seconds=args.seconds)
            fixed = mirror_p99.load(port, args.rate, args.seconds, 64)
            rps[variant].append(res.rps)
            wrk_p99[variant].append(res.p99_ms)
            fixed_p99[variant].append(fixed.p99_ms)
            errors[variant] += res.errors + fixed.failures
            print(
                f"round {rnd + 1} {variant:16} {res.rps:8.0f} req/s p99 {res.p99_ms:6.2f} ms; "
                f"at {args.rate:g}/s p99 {fixed.p99_ms:6.2f} ms",
                flush=True,
            )
    for r in running.values():
        r.stop()  # the router prints its copy and comparison counts as it exits
    copies = {
        v: bench_run.mirror_counts(workdir / f"router-{i}.log") for i, v in enumerate(VARIANTS)
    }
    pairs = compared(workdir / f"router-{VARIANTS.index('mirror + compare')}.log")
    med = statistics.median
    base_rps, base_p99 = med(rps["mirror"]), med(fixed_p99["mirror"])
    out = [
        "| primary's router | req/s (wrk c=64) | × mirror | p99 ms (wrk) | p99 ms at "
        f"{args.rate:g}/s | × mirror | copies answered / dropped | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in VARIANTS:
        c = copies.get(v)
        counted = f"{c.sent:,} / {c.dropped:,}" if c and v != "no mirror" else "–"
        out.append(
            f"| {v} | {med(rps[v]):,.0f} | {med(rps[v]) / base_rps:.2f} | {med(wrk_p99[v]):.2f} "
            f"| {med(fixed_p99[v]):.2f} | {med(fixed_p99[v]) / base_p99:.2f} | {counted} "
            f"| {errors[v]} |"
        )
    if pairs is not None:
        out += [
            "",
            f"- compared pairs: {pairs[0]:,} ({pairs[1]:,} matched), not compared: {pairs[2]:,} "
            "(at saturation the mirror's CPU budget sends a share of the copies, and a pair is "
            "made only while the copy will be queued and fewer than 256 pairs wait)",
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.shadow_compare")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rate", type=float, default=2000.0, help="requests/s of the fixed-rate run")
    p.add_argument("--write", action="store_true", help=f'put the table under "{SECTION}"')
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="changeover-shadow-compare-"))
    procs = common.Procs(workdir)
    t0 = time.monotonic()
    try:
        table = measure(args, procs, workdir)
    finally:
        procs.stop_all()
    head = [
        SECTION,
        "",
        *bench_run.machine(),
        f"- load average after the run (1, 5, 15 min): {common.loadavg()}",
        f"- command: `python -m bench.shadow_compare {' '.join(argv or sys.argv[1:])}` "
        f"({args.rounds} interleaved rounds of {args.seconds:g} s per router and load; "
        f"{time.monotonic() - t0:.0f} s)",
        "- each router: the `bench.run` setup on core 0; the mirrored ones copy 100% of "
        "requests to an nginx shadow; `mirror + compare` also compares every copy's answer "
        "with the primary's (`comparator: exact`); ratios are to `mirror` (same run)",
        "",
    ]
    text = "\n".join([*head, *table]) + "\n"
    print(text)
    if args.write:
        common.write_results_section(SECTION, text)
        print(f"written to {common.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
