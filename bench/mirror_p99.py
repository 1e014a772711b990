"""The primary's latency with a shadow attached, at a fixed load below saturation.

    python -m bench.mirror_p99 [--rate 3000] [--seconds 10] [--rounds 3] [--write]

``bench.run`` measures mirroring at saturation, where any copy costs throughput and so
latency (at c=256 latency is connections over throughput). What matters here is something
else: a slow or dead shadow must not raise the primary's p99. So here the load is open-loop at a
fixed rate (``changeover.loadgen`` on core 1, the router on core 0), well below what the
router can serve, and four routers in the ``bench.run`` setup (90/10 split, header route,
sticky split, metrics) take turns, interleaved by round: no mirror, 100% mirrored to a
healthy shadow (nginx), to a slow one (a 20-chunk stream over 100 ms) and to a dead port.
Reports p50/p99 per variant (median over rounds, min–max), p99 over the no-mirror p99,
and what happened to the copies. ``--write`` puts the table in bench/RESULTS.md under
"## Mirroring at a fixed load".
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import common, proxies
from bench import run as bench_run

SECTION = "## Mirroring at a fixed load"
VARIANTS = ("no mirror", "healthy shadow", "slow shadow", "dead shadow")


@dataclass(frozen=True)
class Round:
    p50_ms: float
    p99_ms: float
    sent: int  # requests the load generator sent in the round
    failures: int
    saturated: int  # ticks where the generator waited for a free connection


def load(port: int, rate: float, seconds: float, concurrency: int) -> Round:
    """One open-loop run of ``changeover.loadgen`` on core 1 (JSON report on stdout)."""
    argv = [
        *common.pin(1),
        sys.executable,
        "-m",
        "changeover.loadgen",
        f"http://127.0.0.1:{port}/",
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--concurrency",
        str(concurrency),
        "--max-requests",
        str(int(rate * seconds) + 1),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr[-2000:]}")
    r = json.loads(done.stdout)
    return Round(
        r["latency_p50_ms"], r["latency_p99_ms"], r["total"], r["failures"], r["saturated"]
    )


def measure(args: argparse.Namespace, procs: common.Procs, workdir: Path) -> list[str]:
    fp = common.free_port
    up = {1: fp(), 2: fp()}
    healthy, slow, dead = fp(), fp(), fp()
    proxies.start_upstream_nginx(procs, workdir, [up[1], up[2], healthy])
    proxies.start_stream_server(procs, "slow", [slow])
    shadow = {"healthy shadow": healthy, "slow shadow": slow, "dead shadow": dead}
    running: dict[str, proxies.Running] = {}
    for i, variant in enumerate(VARIANTS):
        ctx = proxies.ProxyContext(
            procs=procs,
            workdir=workdir,
            port=fp(),
            backends=dict(up),
            mirror=shadow.get(variant),
        )
        running[variant] = proxies.start_builtin(ctx, name=f"router-{i}")
    for r in running.values():
        load(r.port, args.rate, 2, args.concurrency)  # warm-up: pools, caches
    rounds: dict[str, list[Round]] = {v: [] for v in VARIANTS}
    for rnd in range(args.rounds):
        order = VARIANTS[rnd % len(VARIANTS) :] + VARIANTS[: rnd % len(VARIANTS)]
        for variant in order:
            res = load(running[variant].port, args.rate, args.seconds, args.concurrency)
            rounds[variant].append(res)
            print(
                f"round {rnd + 1} {variant:15} p50 {res.p50_ms:6.2f} ms p99 {res.p99_ms:6.2f} ms "
                f"requests {res.sent} failures {res.failures} saturated {res.saturated}",
                flush=True,
            )
    for r in running.values():
        r.stop()  # the router prints its copy counts as it exits
    copies = {
        v: bench_run.mirror_counts(workdir / f"router-{i}.log") for i, v in enumerate(VARIANTS)
    }
    return render(args, rounds, copies)


def render(
    args: argparse.Namespace,
    rounds: dict[str, list[Round]],
    copies: dict[str, bench_run.Copies | None],
) -> list[str]:
    def values(v: str, key: str) -> list[float]:
        return [float(getattr(r, key)) for r in rounds[v]]

    def med(v: str, key: str) -> float:
        return statistics.median(values(v, key))

    def span(v: str, key: str) -> str:
        xs = values(v, key)
        return f"{med(v, key):.2f} ({min(xs):.2f}–{max(xs):.2f})"

    base = med("no mirror", "p99_ms")
    out = [
        "| primary's router | p50 ms median (min–max) | p99 ms median (min–max) | p99 × no mirror "
        "| failed requests | copies answered / dropped / failed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for v in VARIANTS:
        c = copies.get(v)
        counted = f"{c.sent:,} / {c.dropped:,} / {c.failed:,}" if c and v != "no mirror" else "–"
        failures = sum(r.failures for r in rounds[v])
        out.append(
            f"| {v} | {span(v, 'p50_ms')} | {span(v, 'p99_ms')} | "
            f"{med(v, 'p99_ms') / base:.2f} | {failures} | {counted} |"
        )
    saturated = sum(r.saturated for rs in rounds.values() for r in rs)
    out += [
        "",
        f"- the load generator could not keep the rate {saturated} times (ticks waiting for a "
        "free connection) over the whole run",
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.mirror_p99")
    p.add_argument("--rate", type=float, default=3000.0, help="requests/s (open loop)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=64, help="the generator's connections")
    p.add_argument("--write", action="store_true", help=f'put the table under "{SECTION}"')
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="changeover-mirror-p99-"))
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
        f"- command: `python -m bench.mirror_p99 {' '.join(argv or sys.argv[1:])}` "
        f"({args.rounds} interleaved rounds of {args.seconds:g} s per router at "
        f"{args.rate:g} requests/s, open loop (`changeover.loadgen`, {args.concurrency} "
        f"connections, core 1); each router on core 0; {time.monotonic() - t0:.0f} s)",
        "- each router: the `bench.run` setup (90/10 split, `x-canary` header route, sticky "
        "split, metrics); the mirrored ones copy 100% of requests to their shadow: nginx "
        "(healthy), a stream of 20 chunks 5 ms apart (slow), a port nobody listens on (dead)",
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
