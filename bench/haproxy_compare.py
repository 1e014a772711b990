"""changeover's HAProxy data plane against hand-configured HAProxy, in paired rounds.

    python -m bench.haproxy_dataplane compare [--rounds 30] [--seconds 2] [--write]

The comparison mode of ``bench.haproxy_dataplane`` (which starts the data plane itself);
``COMPARE_DOC`` below says what it measures and how.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import resource
import shlex
import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import common, haproxy_dataplane, proxies

# -- the comparison: python -m bench.haproxy_dataplane compare ---------------------------
#
# changeover's HAProxy against the benchmark's hand-configured HAProxy, same job, in many
# short paired rounds (see COMPARE_DOC). What decides "within 5%" is the paired ratio per
# round, not medians of either side: the box's other work moves both sides of a pair alike.

COMPARE_DOC = """changeover's HAProxy data plane against hand-configured HAProxy, paired.

    python -m bench.haproxy_dataplane compare [--rounds 30] [--seconds 2] [--conns 32,256]
        [--warmup 2] [--sides hand,changeover] [--write]

Setup as ``bench.run``'s: upstream nginx (2 workers, unpinned, ~100-byte answers), wrk
``-t1`` pinned to core 1 with ``x-user-id`` on every request; each HAProxy runs one thread
pinned to core 0. Both proxies run throughout; in each round, at each concurrency, they are
loaded back to back for ``--seconds`` each, which one goes first alternating by round. Per
run: wrk's requests/s and latency, and each HAProxy's CPU from ``/proc``: on-CPU time of all
its threads from ``schedstat`` (nanoseconds), the user/system split from ``stat``, voluntary
and involuntary context switches from ``status``; changeover's controller (the Python
process that polls stats and reads the log sample) separately; the box's other work (busy
time in ``/proc/stat`` less every process of this run and wrk). Reported: per side medians
(min-max), and per round the paired ratio changeover / hand of requests/s and of HAProxy CPU
per request: median, a distribution-free 95% interval of the median (order statistics),
min-max, and in how many rounds changeover answered more; the same over the quiet rounds
(other work at most ``QUIET`` cores in both runs of the pair); a verdict per concurrency.
Every run's figures go to ``samples.json`` in the logs directory. ``--write`` puts the
text in bench/RESULTS.md as the subsection below "## Router" (what follows its "#### Earlier"
line is kept).
"""

SUBSECTION = "### changeover's HAProxy data plane against hand-configured HAProxy"
KEEP_FROM = "#### Earlier"


@dataclasses.dataclass(frozen=True)
class Usage:
    """CPU use of some processes so far (all their threads)."""

    ns: int  # on-CPU nanoseconds (/proc/PID/task/TID/schedstat, field 1)
    user: float  # seconds (/proc/PID/stat)
    system: float
    vcsw: int  # voluntary context switches (waited: epoll_wait found nothing)
    nvcsw: int  # involuntary ones (preempted: something else wanted the core)


def usage(pids: Sequence[int]) -> Usage:
    ns = vcsw = nvcsw = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                ns += int((task / "schedstat").read_text().split()[0])
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        vcsw += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        nvcsw += int(line.split()[1])
    user, system = common.cpu_times(pids)
    return Usage(ns, user, system, vcsw, nvcsw)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One wrk run against one side."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float  # HAProxy's on-CPU µs per request (schedstat)
    user_us: float  # HAProxy user µs per request (stat: a sampled split of cpu_us)
    sys_us: float
    busy: float  # HAProxy's on-CPU share of the run's wall time (1.0: its core saturated)
    ctl_us: float  # changeover's controller µs per request (0 for hand)
    waits_per_k: float  # HAProxy's voluntary context switches per 1000 requests
    preempted_per_k: float  # involuntary ones per 1000 requests
    other: float = 0.0  # the box's CPU (cores) spent outside this benchmark during the run


def sample(
    res: common.WrkResult,
    wall: float,
    before: Usage,
    after: Usage,
    ctl: tuple[Usage, Usage] | None = None,
    other: float = 0.0,
) -> Sample:
    n = res.requests or 0

    def per(x: float, scale: float = 1e6) -> float:
        return x / n * scale if n else math.nan

    ctl_ns = ctl[1].ns - ctl[0].ns if ctl else 0
    return Sample(
        rps=res.rps,
        p50_ms=res.p50_ms,
        p99_ms=res.p99_ms,
        errors=res.errors,
        cpu_us=per((after.ns - before.ns) / 1e3, 1),
        user_us=per(after.user - before.user),
        sys_us=per(after.system - before.system),
        busy=(after.ns - before.ns) / 1e9 / wall if wall > 0 else math.nan,
        ctl_us=per(ctl_ns / 1e3, 1),
        waits_per_k=per(after.vcsw - before.vcsw, 1e3),
        preempted_per_k=per(after.nvcsw - before.nvcsw, 1e3),
        other=other,
    )


def box_busy() -> float:
    """CPU seconds the whole box has spent busy (all cores: /proc/stat less idle, iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / common.CLK_TCK


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children (wrk, once each run returns)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def ours(pids: Sequence[int]) -> float:
    """The box's busy seconds, less what ``pids`` and the finished wrk runs used."""
    return box_busy() - usage(pids).ns / 1e9 - children_cpu()


def median_interval(xs: Sequence[float], conf: float = 0.95) -> tuple[float, float, float]:
    """A distribution-free interval for the median of ``xs`` (order statistics: the k-th
    smallest to the k-th largest, k the largest with P(Binomial(n, 1/2) < k) ≤ (1-conf)/2),
    and its actual coverage; (nan, nan, 0) when n is too small for ``conf``.

    >>> lo, hi, cover = median_interval([float(x) for x in range(1, 21)])
    >>> (lo, hi, round(cover, 3))
    (6.0, 15.0, 0.959)
    """
    v = sorted(x for x in xs if not math.isnan(x))
    n = len(v)
    tail, k = 0.0, 0
    while n and tail + math.comb(n, k) / 2**n <= (1 - conf) / 2:
        tail += math.comb(n, k) / 2**n
        k += 1
    if k == 0:
        return math.nan, math.nan, 0.0
    return v[k - 1], v[n - k], 1 - 2 * tail


def _med(xs: Sequence[float]) -> float:
    v = [x for x in xs if not math.isnan(x)]
    return statistics.median(v) if v else math.nan


def _ratios(a: Sequence[Sample], b: Sequence[Sample], field: str) -> list[float]:
    """``a``/``b`` of ``field``, round by round (a missing round is a bug: strict zip)."""
    out = []
    for x, y in zip(a, b, strict=True):
        num, den = getattr(x, field), getattr(y, field)
        out.append(num / den if den else math.nan)
    return out


Starter = Callable[[proxies.ProxyContext], proxies.Running]

# The sides a run can have. "hand" is the reference every other side is paired with; the
# variants switch one feature of changeover's off, to price it (they do less than hand).
STARTERS: dict[str, Starter] = {
    "hand": proxies.start_haproxy,
    "changeover": haproxy_dataplane.start,
    "changeover-nolog": lambda c: haproxy_dataplane.start(
        c, extra=("--timed-per-second", "0"), label="changeover-nolog"
    ),
}


def order(sides: Sequence[str], rnd: int) -> list[str]:
    """The sides in round ``rnd`` (from 0), first in turn.

    >>> order(["hand", "changeover"], 0), order(["hand", "changeover"], 1)
    (['hand', 'changeover'], ['changeover', 'hand'])
    """
    k = rnd % len(sides)
    return [*sides[k:], *sides[:k]]


def measure(
    args: argparse.Namespace, sides: list[str], conns: list[int], procs: common.Procs
) -> dict[tuple[str, int], list[Sample]]:
    workdir = procs.logdir
    fp = common.free_port
    up = {1: fp(), 2: fp()}
    upstream = proxies.start_upstream_nginx(procs, workdir, [up[1], up[2]])
    running: dict[str, proxies.Running] = {}
    for side in sides:
        ctx = proxies.ProxyContext(procs=procs, workdir=workdir, port=fp(), backends=dict(up))
        running[side] = STARTERS[side](ctx)
    # HAProxy's processes, and changeover's controller (the root, a Python process) apart.
    hap: dict[str, list[int]] = {}
    ctl: dict[str, list[int]] = {}
    for side, r in running.items():
        tree = r.all_pids()
        if side == "hand":
            hap[side], ctl[side] = tree, []
        else:
            hap[side], ctl[side] = tree[1:], tree[:1]
        print(f"{side}: port {r.port}, HAProxy pids {hap[side]}, controller {ctl[side]}")
    # Everything of this benchmark: what the box spends beyond it is other people's work.
    everything = [*upstream.all_pids(), *(p for r in running.values() for p in r.all_pids())]

    print(f"warm-up ({args.warmup:.0f} s each)", flush=True)
    for side in sides:
        common.wrk(running[side].port, connections=max(conns), seconds=args.warmup)

    results: dict[tuple[str, int], list[Sample]] = {}
    for rnd in range(args.rounds):
        for c in conns:
            for side in order(sides, rnd):
                h0, c0, o0 = usage(hap[side]), usage(ctl[side]), ours(everything)
                t0 = time.monotonic()
                res = common.wrk(running[side].port, connections=c, seconds=args.seconds)
                wall = time.monotonic() - t0
                other = (ours(everything) - o0) / wall
                s = sample(res, wall, h0, usage(hap[side]), (c0, usage(ctl[side])), other)
                results.setdefault((side, c), []).append(s)
                print(
                    f"round {rnd + 1:2} c={c:<4} {side:18} {s.rps:8.0f} req/s "
                    f"p99 {s.p99_ms:6.2f} ms  HAProxy {s.cpu_us:5.2f} µs/req "
                    f"(busy {s.busy:.2f}, preempted {s.preempted_per_k:.2f}/1k) "
                    f"controller {s.ctl_us:.2f} µs/req  other work {s.other:.2f} cores  "
                    f"errors {s.errors}",
                    flush=True,
                )
    for r in running.values():
        r.stop()
    return results


def tables(
    sides: Sequence[str], conns: Sequence[int], results: dict[tuple[str, int], list[Sample]]
) -> list[str]:
    """The per-side table, then each side paired with "hand" round by round."""

    def rng(xs: list[float], fmt: str) -> str:
        return f"{_med(xs):{fmt}} ({min(xs):{fmt}}–{max(xs):{fmt}})"

    out = [
        "| conns | side | req/s median (min–max) | p50 / p99 ms | HAProxy CPU µs/req "
        "median (min–max) | user / sys µs/req | HAProxy core busy | preempted / 1k req "
        "| controller µs/req | other work (cores) | errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in conns:
        for side in sides:
            ss = results.get((side, c), [])
            if not ss:
                continue
            out.append(
                f"| {c} | {side} | {rng([s.rps for s in ss], ',.0f')} "
                f"| {_med([s.p50_ms for s in ss]):.2f} / {_med([s.p99_ms for s in ss]):.2f} "
                f"| {rng([s.cpu_us for s in ss], '.2f')} "
                f"| {_med([s.user_us for s in ss]):.1f} / {_med([s.sys_us for s in ss]):.1f} "
                f"| {_med([s.busy for s in ss]):.2f} "
                f"| {_med([s.preempted_per_k for s in ss]):.2f} "
                + (f"| {_med([s.ctl_us for s in ss]):.2f} " if side != "hand" else "| – ")
                + f"| {_med([s.other for s in ss]):.2f} | {sum(s.errors for s in ss)} |"
            )
    out += [
        "",
        "| conns | side ÷ hand | rounds | req/s: median [95% interval] (min–max) "
        "| rounds side led | HAProxy CPU µs/req: median [95% interval] (min–max) "
        "| CPU with the controller |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for c in conns:
        hand = results.get(("hand", c), [])
        for side in sides:
            ss = results.get((side, c), [])
            if side == "hand" or not ss or not hand:
                continue
            for which, keep in (("all", None), ("quiet", quiet(ss, hand))):
                a = [x for i, x in enumerate(ss) if keep is None or i in keep]
                b = [x for i, x in enumerate(hand) if keep is None or i in keep]
                rps = _ratios(a, b, "rps")
                total = [
                    (x.cpu_us + x.ctl_us) / h.cpu_us if h.cpu_us else math.nan
                    for x, h in zip(a, b, strict=True)
                ]
                out.append(
                    f"| {c} | {side} | {which} ({len(rps)}) | {_interval(rps)} "
                    f"| {sum(r > 1 for r in rps)} of {len(rps)} "
                    f"| {_interval(_ratios(a, b, 'cpu_us'))} | {_med(total):.3f} |"
                )
    return out


# A run is "quiet" when the box did at most this much other work (cores) meanwhile.
QUIET = 0.1


def quiet(a: Sequence[Sample], b: Sequence[Sample], limit: float = QUIET) -> set[int]:
    """The rounds (indexes) in which neither run of the pair saw more than ``limit`` cores
    of other work on the box.

    >>> s = [Sample(1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, other=x) for x in (0.3, 0.05, 0.0, 0.2)]
    >>> sorted(quiet(s, [*s[1:], s[0]]))
    [1]
    """
    return {i for i, (x, y) in enumerate(zip(a, b, strict=True)) if max(x.other, y.other) <= limit}


def _interval(xs: list[float]) -> str:
    lo, hi, _ = median_interval(xs)
    return f"**{_med(xs):.3f}** [{lo:.3f}–{hi:.3f}] ({min(xs):.3f}–{max(xs):.3f})"


def verdicts(conns: Sequence[int], results: dict[tuple[str, int], list[Sample]]) -> list[str]:
    """What the paired figures say about "within 5%" at each concurrency."""
    out = []
    for c in conns:
        co, hand = results.get(("changeover", c), []), results.get(("hand", c), [])
        if not co or not hand:
            continue
        rps = _ratios(co, hand, "rps")
        cpu = _ratios(co, hand, "cpu_us")
        r_lo, r_hi, cover = median_interval(rps)
        c_lo, c_hi, _ = median_interval(cpu)
        if math.isnan(r_lo):
            out.append(f"- c={c}: too few rounds ({len(rps)}) for a 95% interval of the median")
            continue
        out.append(
            f"- c={c}: requests/s {_med(rps):.3f}× hand ({cover:.1%} interval "
            f"{r_lo:.3f}–{r_hi:.3f}): **{judge(r_lo, r_hi, 0.95)}**; HAProxy CPU per request "
            f"{_med(cpu):.3f}× hand ({c_lo:.3f}–{c_hi:.3f}; 5% slower is 1.053×): "
            f"**{judge(1 / c_hi, 1 / c_lo, 0.95)}**"
        )
    return out


def judge(lo: float, hi: float, bound: float) -> str:
    """Where an interval of a ratio (changeover / hand, higher is better) lies against
    ``bound``.

    >>> judge(0.96, 1.02, 0.95), judge(0.90, 0.94, 0.95), judge(0.93, 0.99, 0.95)
    ('within 5%', 'more than 5% behind', 'undecided: the interval straddles the 5% line')
    """
    if lo >= bound:
        return "within 5%"
    if hi < bound:
        return "more than 5% behind"
    return "undecided: the interval straddles the 5% line"


def render(
    args: argparse.Namespace,
    argv: Sequence[str],
    sides: list[str],
    conns: list[int],
    results: dict[tuple[str, int], list[Sample]],
    took: float,
    load_before: str,
) -> str:
    from bench import run as bench_run  # its machine() and versions(); it imports us

    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        SUBSECTION,
        "",
        "Target: `traffic: {haproxy: {}}` within 5% of hand-configured "
        "HAProxy's throughput doing the same job. Same job on both sides: 90/10 by HAProxy's "
        "weighted round-robin over server weights (changeover sets them over the runtime "
        "API), the `x-canary: always` header route (hand: a literal compare; changeover: a "
        "runtime map guarded by the header's presence), keep-alive on both sides, the "
        "`x-changeover-revision` response header (hand: `%[srv_id]` written in; changeover: "
        "a map lookup of the server id). changeover's also has per-revision metrics (stats "
        "polled every second; a rate-bounded sample, ≤ 200 requests/s, of requests logged "
        "to its controller for latency histograms), which hand lacks: its cost is in "
        "changeover's column; `changeover-nolog` rows, when present, price the log sample. "
        "Also in hand's favour: `http-reuse always` (changeover keeps HAProxy's default, "
        "`safe`, so that a client's first request never goes on an idle connection the app "
        "may be closing) and no sticky split on either side (wrk sends `x-user-id`, which "
        "neither reads here).",
        "",
        f"- {when}; commit {common.commit()}; {bench_run.versions()}; load average before → "
        "after (1, 5, 15 min): "
        f"{load_before} → {common.loadavg()}",
        f"- command: `flock /tmp/changeover-heavy.lock .venv/bin/python -m "
        f"bench.haproxy_dataplane compare {shlex.join(argv)}` ({args.rounds} rounds of "
        f"{args.seconds:.0f} s per side and concurrency after a {args.warmup:.0f} s warm-up, "
        f"sides back to back, first in turn; {took:.0f} s in all)",
        "- setup: upstream nginx (2 workers, unpinned); wrk `-t1` on core 1; each HAProxy "
        "one thread on core 0. CPU per request is HAProxy's on-CPU time (all its threads, "
        "`/proc/PID/task/*/schedstat`) over wrk's requests; *busy* is that time over the "
        "run's wall time; *preempted* counts involuntary context switches; the controller "
        "is changeover's Python process, unpinned; *other work* is the box's busy time "
        "(`/proc/stat`, both cores) less this benchmark's processes and wrk, in cores",
        "- the ratios are paired by round (same round, same concurrency, back to back), so "
        "the box's slower and faster minutes cancel; the interval is a distribution-free "
        "95% interval of the median ratio (order statistics); *quiet*: the rounds in "
        f"which neither run of the pair saw more than {QUIET} cores of other work",
        "",
        *tables(sides, conns, results),
        "",
        *verdicts(conns, results),
    ]
    return "\n".join(out) + "\n"


def write_subsection(text: str, path: Path = common.RESULTS) -> None:
    """Replace SUBSECTION of "## Router" with ``text``, keeping what follows a line starting
    with KEEP_FROM inside it (the earlier measurements); the rest of the file as it was."""
    lines = path.read_text().splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == SUBSECTION), None)
    new = text.rstrip("\n").splitlines()
    if start is None:
        router = next((i for i, ln in enumerate(lines) if ln.strip() == "## Router"), None)
        if router is None:
            raise SystemExit(f'{path}: no "## Router" section to put {SUBSECTION!r} in')
        end = next(
            (i for i in range(router + 1, len(lines)) if lines[i].startswith("## ")),
            len(lines),
        )
        lines[end:end] = [*new, ""]
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "### "))),
            len(lines),
        )
        kept_at = next((i for i in range(start + 1, end) if lines[i].startswith(KEEP_FROM)), None)
        kept = lines[kept_at:end] if kept_at is not None else [""]
        if kept and kept[-1].strip():
            kept.append("")
        lines[start:end] = [*new, "", *kept]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through ``finally``: every process is stopped


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="bench.haproxy_dataplane compare", description=COMPARE_DOC.split("\n\n")[0]
    )
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--seconds", type=float, default=2.0, help="per wrk run (whole seconds)")
    p.add_argument("--conns", default="32,256")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds per side")
    p.add_argument(
        "--sides", default="hand,changeover", help=f"of {', '.join(STARTERS)}; hand first"
    )
    p.add_argument("--write", action="store_true", help="write the subsection of RESULTS.md")
    args = p.parse_args(argv)
    sides = [s for s in args.sides.split(",") if s]
    if sides[:1] != ["hand"] or not set(sides) <= set(STARTERS) or len(sides) < 2:
        p.error(f"--sides: hand first, then some of {', '.join(STARTERS)}")
    conns = [int(c) for c in args.conns.split(",")]
    load_before = common.loadavg()
    workdir = Path(tempfile.mkdtemp(prefix="changeover-hapcmp-"))
    procs = common.Procs(workdir)
    previous = signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    try:
        results = measure(args, sides, conns, procs)
    finally:
        procs.stop_all()
        signal.signal(signal.SIGTERM, previous)
    text = render(args, argv, sides, conns, results, time.monotonic() - started, load_before)
    raw = [
        {"side": side, "conns": c, "round": i + 1, **dataclasses.asdict(x)}
        for (side, c), xs in results.items()
        for i, x in enumerate(xs)
    ]
    (workdir / "samples.json").write_text(json.dumps(raw, indent=1))
    print(text)
    print(f"logs and every run's figures (samples.json) in {workdir}")
    if args.write:
        write_subsection(text)
        print(f"written to {common.RESULTS} ({SUBSECTION})")
    return 0
