"""The data-plane benchmark: ``make bench`` (``.venv/bin/python -m bench.run``).

Starts loopback upstreams (nginx, ~100-byte answers; a Python streaming upstream), then
every proxy doing the same 90/10 split with keep-alive, loads each with wrk pinned to one
core while the proxy is pinned to the other, in interleaved rounds, and writes the table to
bench/RESULTS.md under "## Router". See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.util
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import common, proxies, stream_client

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Router"


@dataclass
class Spec:
    label: str
    start: Callable[[proxies.ProxyContext], proxies.Running]
    mirror: str | None = None  # "ok" | "dead" | "slow"


def _hook() -> Callable[[proxies.ProxyContext], proxies.Running] | None:
    """Engineer 4b's changeover-managed HAProxy, when bench/haproxy_dataplane.py exists."""
    if importlib.util.find_spec("bench.haproxy_dataplane") is None:
        return None
    mod = importlib.import_module("bench.haproxy_dataplane")
    start: Callable[[proxies.ProxyContext], proxies.Running] = mod.start
    return start


def _mirrored(kind: str) -> Callable[[proxies.ProxyContext], proxies.Running]:
    return lambda c: proxies.start_builtin(c, name=f"builtin-mirror-{kind}")


def _direct(ctx: proxies.ProxyContext) -> proxies.Running:
    # The physical limit: wrk straight at revision 1's upstream (no proxy, no split).
    port = ctx.backends[1]
    return proxies.Running("direct", port, 0, lambda: None)


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def machine() -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"- machine: `{' '.join(platform.uname())}`",
        f"- cores: {common.NCPU} (`nproc`), CPU: {cpu}",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {common.commit()}",
        f"- load average before the run (1, 5, 15 min): {LOAD_BEFORE}",
    ]


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


LOAD_BEFORE = _loadavg()


def versions() -> str:
    out = []
    for argv in (["nginx", "-v"], ["haproxy", "-v"], ["wrk", "--version"]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
            first = (done.stdout + done.stderr).strip().splitlines()
            if first:
                out.append(first[0].split(" - ")[0].replace("nginx version: ", ""))
    out.append(f"Python {platform.python_version()}")
    return ", ".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__)
    p.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--conns", default="32,256")
    p.add_argument("--streams", type=int, default=20, help="streamed requests per proxy/round")
    p.add_argument(
        "--only", default="", help="comma-separated proxy labels (default: all); writes nothing"
    )
    p.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    p.add_argument("--quick", action="store_true", help="1 round of 2 s (a smoke run)")
    p.add_argument("--no-pin", action="store_true", help="no taskset (a box busy with other work)")
    args = p.parse_args(argv)
    common.PINNING = not args.no_pin
    if args.quick:
        args.seconds, args.warmup, args.rounds, args.streams = 2.0, 1.0, 1, 10
    conns = [int(c) for c in args.conns.split(",")]
    only = {s for s in args.only.split(",") if s}

    workdir = Path(tempfile.mkdtemp(prefix="changeover-bench-"))
    procs = common.Procs(workdir)
    t_start = time.monotonic()
    try:
        lines = run(args, conns, only, procs, workdir)
    finally:
        procs.stop_all()
    lines.append("")
    lines.append(f"Run time {time.monotonic() - t_start:.0f} s; logs in `{workdir}`.")
    text = "\n".join(lines) + "\n"
    print(text)
    if only:
        # a partial run must not replace the whole table of "## Router"
        print(f"--only: {RESULTS} left as it was (a partial run writes nothing)")
    elif not args.no_write:
        write_section(text)
        print(f"written to {RESULTS}")
    return 0


def run(
    args: argparse.Namespace,
    conns: list[int],
    only: set[str],
    procs: common.Procs,
    workdir: Path,
) -> list[str]:
    fp = common.free_port
    up = {1: fp(), 2: fp()}
    shadow_ok, shadow_slow, shadow_dead = fp(), fp(), fp()
    upstream = proxies.start_upstream_nginx(procs, workdir, [up[1], up[2], shadow_ok])
    proxies.start_stream_server(procs, "slow", [shadow_slow])

    specs = [
        Spec("direct", _direct),
        Spec("nginx", proxies.start_nginx),
        Spec("haproxy", proxies.start_haproxy),
        Spec("builtin", proxies.start_builtin),
        Spec("builtin x2", lambda c: proxies.start_builtin(c, workers=2, name="builtin-x2")),
    ]
    hook = _hook()
    if hook is not None:
        specs.append(Spec("changeover-haproxy", hook))
    specs += [
        Spec(f"builtin +mirror{suffix}", _mirrored(kind), mirror=kind)
        for kind, suffix in (("ok", ""), ("dead", " dead"), ("slow", " slow"))
    ]
    if only:
        specs = [s for s in specs if s.label in only or s.label in ("direct", "nginx")]

    mirror_port = {"ok": shadow_ok, "slow": shadow_slow, "dead": shadow_dead}
    running: dict[str, proxies.Running] = {}
    for s in specs:
        ctx = proxies.ProxyContext(
            procs=procs,
            workdir=workdir,
            port=fp(),
            backends=dict(up),
            mirror=mirror_port[s.mirror] if s.mirror else None,
        )
        running[s.label] = s.start(ctx)
    pids = {
        label: (r.all_pids() if label != "direct" else upstream.all_pids())
        for label, r in running.items()
    }

    print(f"warm-up ({args.warmup:.0f} s each)", flush=True)
    for r in running.values():
        common.wrk(r.port, connections=max(conns), seconds=args.warmup)

    results: dict[tuple[str, int], list[common.WrkResult]] = {}
    labels = list(running)
    for rnd in range(args.rounds):
        order = labels[rnd % len(labels) :] + labels[: rnd % len(labels)]
        for label in order:
            for c in conns:
                res = common.wrk(
                    running[label].port,
                    connections=c,
                    seconds=args.seconds,
                    measure_pids=pids[label],
                )
                results.setdefault((label, c), []).append(res)
                print(
                    f"round {rnd + 1} {label:22} c={c:<4} {res.rps:9.0f} req/s "
                    f"p50 {res.p50_ms:.3f} ms p99 {res.p99_ms:.3f} ms cpu {res.cpu:.2f} "
                    f"errors {res.errors}",
                    flush=True,
                )

    light: dict[str, list[common.WrkResult]] = {}
    light_labels = [x for x in ("direct", "nginx", "haproxy", "builtin") if x in running]
    for _ in range(args.rounds):
        for label in light_labels:
            res = common.wrk(running[label].port, connections=1, seconds=max(2.0, args.seconds / 2))
            light.setdefault(label, []).append(res)
    for r in running.values():
        r.stop()
    copies = {
        s.label: mirror_counts(workdir / f"builtin-mirror-{s.mirror}.log")
        for s in specs
        if s.mirror and s.label in running
    }

    # Streaming: the same proxies in front of the streaming upstream.
    sp = {1: fp(), 2: fp()}
    proxies.start_stream_server(procs, "stream", [sp[1], sp[2]])
    stream_specs = [s for s in specs if s.mirror is None and s.label != "builtin x2"]
    stream_running: dict[str, proxies.Running] = {}
    for s in stream_specs:
        ctx = proxies.ProxyContext(
            procs=procs, workdir=workdir, port=fp(), backends=dict(sp), stream=True
        )
        stream_running[s.label] = s.start(ctx)
    streams: dict[str, list[stream_client.StreamTiming]] = {}
    for _ in range(args.rounds):
        for label, r in stream_running.items():
            streams.setdefault(label, []).extend(stream_client.measure(r.port, args.streams))
    for r in stream_running.values():
        r.stop()
    return render(args, conns, results, light, streams, copies)


@dataclass
class Copies:
    """What a mirrored router did over the whole run (its exit summary, bench.router_proc)."""

    requests: int  # primary requests answered, warm-up and every round included
    sent: int  # copies the shadow answered
    dropped: int  # copies dropped: queue full (in copies or bytes)
    failed: int  # copies that failed (refused, reset, timed out)


_SUMMARY = re.compile(r"revision (\d+): requests (\{[^}]*\}) mirror (\d+) sent (\d+) dropped (\d+)")


def mirror_counts(log: Path) -> Copies | None:
    """Parse ``revision N: requests {...} mirror S sent D dropped F failed`` lines."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    out = Copies(0, 0, 0, 0)
    for line in text.splitlines():
        m = _SUMMARY.search(line)
        if m is None:
            continue
        out.requests += sum(int(n) for n in re.findall(r"'\dxx': (\d+)", m.group(2)))
        out.sent += int(m.group(3))
        out.dropped += int(m.group(4))
        out.failed += int(m.group(5))
    return out


def render(
    args: argparse.Namespace,
    conns: list[int],
    results: dict[tuple[str, int], list[common.WrkResult]],
    light: dict[str, list[common.WrkResult]],
    streams: dict[str, list[stream_client.StreamTiming]],
    copies: dict[str, Copies | None],
) -> list[str]:
    cmd = "make bench" if len(sys.argv) <= 1 else "python -m bench.run " + shlex.join(sys.argv[1:])
    out = [
        SECTION,
        "",
        *machine(),
        f"- versions: {versions()}",
        f"- command: `{cmd}` ({args.rounds} interleaved rounds of {args.seconds:.0f} s per "
        f"proxy and concurrency, after a {args.warmup:.0f} s warm-up; "
        + (
            "nothing pinned"
            if args.no_pin
            else "wrk `-t1` pinned to core 1 (`taskset -c 1`), each single-process proxy "
            "pinned to core 0"
        )
        + "; upstream nginx (2 workers) unpinned)",
        "- every proxy: 90/10 split between two upstreams, keep-alive both sides, "
        "`x-canary: always` header route to the 10% side; the builtin router also has a "
        "sticky split on `x-user-id` and per-revision metrics on",
        "",
        "### Throughput (~100-byte responses)",
        "",
        "| proxy | conns | req/s median (min–max) | × nginx | p50 ms | p99 ms | p99 × nginx "
        "| proxy CPU (cores) | µs CPU per request | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    seen_labels = list(dict.fromkeys(label for label, _ in results))
    for c in conns:
        ng = results.get(("nginx", c), [])
        ng_rps = _med([r.rps for r in ng])
        ng_p99 = _med([r.p99_ms for r in ng])
        for label in seen_labels:
            rs = results.get((label, c))
            if not rs:
                continue
            rps = [r.rps for r in rs]
            p99 = _med([r.p99_ms for r in rs])
            out.append(
                f"| {label} | {c} | {_med(rps):,.0f} ({min(rps):,.0f}–{max(rps):,.0f}) "
                f"| {_med(rps) / ng_rps:.2f} | {_med([r.p50_ms for r in rs]):.2f} "
                f"| {p99:.2f} | {p99 / ng_p99:.2f} | {_med([r.cpu for r in rs]):.2f} "
                f"| {_med([r.cpu / r.rps * 1e6 for r in rs if r.rps]):.1f} "
                f"| {sum(r.errors for r in rs)} |"
            )
    out += ["", "### Added latency at c=1 (wrk -c1, p50 over the direct p50)", ""]
    out += ["| proxy | p50 ms | added p50 ms | p99 ms |", "|---|---:|---:|---:|"]
    direct = _med([r.p50_ms for r in light.get("direct", [])])
    for label, rs in light.items():
        p50 = _med([r.p50_ms for r in rs])
        out.append(
            f"| {label} | {p50:.3f} | {p50 - direct:+.3f} | {_med([r.p99_ms for r in rs]):.3f} |"
        )
    out += [
        "",
        "### Streaming (20 chunks 5 ms apart; nginx `proxy_buffering off`, HAProxy "
        "`option http-no-delay`)",
        "",
        "| proxy | first chunk ms (median) | − nginx ms | last chunk ms (median) "
        "| chunks batched (<1 ms apart) |",
        "|---|---:|---:|---:|---:|",
    ]
    ng_ttfb = _med([s.ttfb_ms for s in streams.get("nginx", [])])
    for label, ss in streams.items():
        ttfb = _med([s.ttfb_ms for s in ss])
        out.append(
            f"| {label} | {ttfb:.2f} | {ttfb - ng_ttfb:+.2f} "
            f"| {_med([s.total_ms for s in ss]):.1f} "
            f"| {sum(s.batched for s in ss)} of {sum(s.chunks for s in ss)} |"
        )
    out += ["", "### Against the targets", ""]
    out += targets(conns, results, light, streams)
    for label, cp in copies.items():
        if cp is not None and cp.requests:
            out.append(
                f"- {label}: copies over the whole run (both concurrencies): "
                f"{cp.sent:,} answered by the shadow ({cp.sent / cp.requests:.0%} of "
                f"{cp.requests:,} requests), {cp.dropped:,} dropped, {cp.failed:,} failed"
            )
    out.append(f"- load average after the run (1, 5, 15 min): {_loadavg()}")
    return out


def targets(
    conns: list[int],
    results: dict[tuple[str, int], list[common.WrkResult]],
    light: dict[str, list[common.WrkResult]],
    streams: dict[str, list[stream_client.StreamTiming]],
) -> list[str]:
    def rps(label: str, c: int) -> float:
        return _med([r.rps for r in results.get((label, c), [])])

    def p99(label: str, c: int) -> float:
        return _med([r.p99_ms for r in results.get((label, c), [])])

    out = []
    for c in conns:
        ratio = rps("builtin", c) / rps("nginx", c)
        p99r = p99("builtin", c) / p99("nginx", c)
        out.append(
            f"- c={c}: throughput {ratio:.2f}× nginx (target ≥ 0.6: "
            f"{'met' if ratio >= 0.6 else 'missed'}); p99 {p99r:.2f}× nginx (target ≤ 1.5: "
            f"{'met' if p99r <= 1.5 else 'missed'})"
        )
        base = rps("builtin", c)
        for variant in ("builtin +mirror", "builtin +mirror dead", "builtin +mirror slow"):
            if (variant, c) in results:
                cost = 1 - rps(variant, c) / base
                out.append(
                    f"  - {variant}: primary throughput {-cost:+.0%}, p99 "
                    f"{p99(variant, c):.2f} ms vs {p99('builtin', c):.2f} ms without mirroring"
                )
        if ("builtin x2", c) in results:
            out.append(f"  - 2 workers (SO_REUSEPORT): {rps('builtin x2', c) / base:.2f}× one")
    if "builtin" in light and "direct" in light:
        added = _med([r.p50_ms for r in light["builtin"]]) - _med(
            [r.p50_ms for r in light["direct"]]
        )
        out.append(
            f"- added p50 at c=1: {added:.3f} ms "
            f"(target < 0.2: {'met' if added < 0.2 else 'missed'})"
        )
    if "builtin" in streams and "nginx" in streams:
        d = _med([s.ttfb_ms for s in streams["builtin"]]) - _med(
            [s.ttfb_ms for s in streams["nginx"]]
        )
        out.append(
            f"- streaming first chunk {d:+.2f} ms vs nginx (target within 0.3: "
            f"{'met' if abs(d) <= 0.3 or d < 0 else 'missed'})"
        )
    return out


def write_section(text: str) -> None:
    """Replace (or append) the "## Router" section, leaving the others' sections alone.

    Subsections of the old section that this run does not write (``### Soak``, notes, the
    HAProxy data plane's comparison...) are kept, after the new ones."""
    common.write_results_section(SECTION, text, keep=_foreign_subsections)


# The subsections ``render`` writes (by title prefix); any other is someone else's.
GENERATED = ("### Throughput", "### Added latency", "### Streaming", "### Against the targets")


def _foreign_subsections(section: list[str]) -> list[str]:
    """The ``### `` subsections (with their lines) that ``render`` does not write."""
    kept: list[str] = []
    keep = False
    for ln in section:
        if ln.startswith("### "):
            keep = not ln.startswith(GENERATED)
        if keep:
            kept.append(ln)
    return kept


if __name__ == "__main__":
    sys.exit(main())
