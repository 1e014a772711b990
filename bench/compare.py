"""The builtin router of two source trees side by side, against nginx, in one run.

    python -m bench.compare OLD_TREE NEW_TREE [--conns 32,256] [--seconds 5] [--rounds 4]
        [--warmup 2] [--no-pin] [--write]

OLD_TREE and NEW_TREE are checkouts of this repo (``git worktree add /tmp/old <commit>``).
Each side is ``bench.router_proc`` started in its tree (working directory and PYTHONPATH),
so it runs that tree's ``changeover`` package; a child prints what it imports once at the
start, and the run stops if a side would import another tree's code. The setup is
``bench.run``'s: upstream nginx (2 workers, unpinned), 90/10 split, header route, sticky
split, metrics on; nginx hand-configured for the same split. Proxies are pinned to core 0,
wrk to core 1; a warm-up per side, then interleaved rounds: at each concurrency old and new
back to back (which goes first alternates by round), then nginx. Reported per side: median
req/s (min–max), × nginx, user and system CPU µs per request (``/proc/PID/stat`` of the
proxy's processes), p99, errors; and per round the paired ratio new/old.

Prints a Markdown table; ``--write`` puts it in bench/RESULTS.md under "## Compare".
"""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from bench import common, proxies
from bench import run as bench_run

SECTION = "## Compare"
SIDES = ("old", "new", "nginx")

# What a side's child imports, printed once at the start (the same env and cwd as its router).
# The third line is the proxy's build: "compiled" (mypyc), "pure" or "stale" (trees from
# before the compiled build have no ``compiled`` module: plain Python).
_PROBE = (
    "import importlib.util, changeover.traffic.builtin as m; "
    "print(m.__file__); print(importlib.util.find_spec('bench.router_proc').origin); "
    "print(m.compiled.state if hasattr(m, 'compiled') else 'pure')"
)


@dataclass(frozen=True)
class Sample:
    """One wrk run against one side."""

    rps: float
    user_us: float  # proxy user CPU µs per request
    sys_us: float  # proxy system CPU µs per request
    p99_ms: float
    errors: int


def sample(
    res: common.WrkResult, before: tuple[float, float], after: tuple[float, float]
) -> Sample:
    """A wrk result with the proxy's (user, system) CPU seconds before and after it."""
    n = res.requests
    user, system = (
        (a - b) / n * 1e6 if n else math.nan for a, b in zip(after, before, strict=True)
    )
    return Sample(res.rps, user, system, res.p99_ms, res.errors)


@dataclass(frozen=True)
class Paired:
    """new/old per round (same round, same concurrency: the pairs share the box's state)."""

    rps: list[float]  # req/s new/old, one per round
    cpu: list[float]  # CPU (user + system) µs per request new/old, one per round

    @property
    def ahead(self) -> int:
        """Rounds in which new answered more requests/s than old."""
        return sum(r > 1 for r in self.rps)


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def paired(old: Sequence[Sample], new: Sequence[Sample]) -> Paired:
    pairs = list(zip(old, new, strict=True))
    return Paired(
        rps=[_ratio(n.rps, o.rps) for o, n in pairs],
        cpu=[_ratio(n.user_us + n.sys_us, o.user_us + o.sys_us) for o, n in pairs],
    )


def _med(xs: Sequence[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else math.nan


def order(rnd: int) -> tuple[str, str, str]:
    """The sides in round ``rnd`` (from 0): old and new back to back, first in turn."""
    return ("old", "new", "nginx") if rnd % 2 == 0 else ("new", "old", "nginx")


def tables(conns: Sequence[int], results: dict[tuple[str, int], list[Sample]]) -> list[str]:
    """The per-side table and the paired new/old table, from each side's samples (one per
    round, in round order)."""
    out = [
        "| conns | side | req/s median (min–max) | × nginx | user µs/req | sys µs/req "
        "| p99 ms | errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in conns:
        ng = _med([s.rps for s in results.get(("nginx", c), [])])
        for side in SIDES:
            ss = results.get((side, c), [])
            if not ss:
                continue
            rps = [s.rps for s in ss]
            out.append(
                f"| {c} | {side} | {_med(rps):,.0f} ({min(rps):,.0f}–{max(rps):,.0f}) "
                f"| {_ratio(_med(rps), ng):.2f} | {_med([s.user_us for s in ss]):.1f} "
                f"| {_med([s.sys_us for s in ss]):.1f} | {_med([s.p99_ms for s in ss]):.2f} "
                f"| {sum(s.errors for s in ss)} |"
            )
    out += [
        "",
        "| conns | new/old req/s by round | median | new ahead | new/old CPU µs/req (median) |",
        "|---:|---|---:|---:|---:|",
    ]
    for c in conns:
        old, new = results.get(("old", c), []), results.get(("new", c), [])
        if not old or not new:
            continue
        p = paired(old, new)
        m = _med(p.rps)
        out.append(
            f"| {c} | {', '.join(f'{r:.3f}' for r in p.rps)} | {m:.3f} ({m - 1:+.1%}) "
            f"| {p.ahead} of {len(p.rps)} | {_med(p.cpu):.3f} |"
        )
    return out


# -- the trees ---------------------------------------------------------------------------


@dataclass
class Tree:
    side: str
    path: Path
    commit: str = ""
    imported: list[str] = field(default_factory=list)  # changeover.traffic.builtin, router_proc
    build: str = "pure"  # the proxy's hot path: "compiled" (mypyc), "pure" or "stale"

    def describe(self) -> str:
        files = " and ".join(f"`{f}`" for f in self.imported)
        where = f"- {self.side}: `{self.path}` at {self.commit}"
        return f"{where} (proxy build: {self.build}); its router imports {files}"


def _git(tree: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), *args], capture_output=True, text=True, timeout=20, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def check_tree(side: str, path: str) -> Tree:
    """The tree's commit and what its router process imports; SystemExit when the tree is
    not a checkout or its child would import another tree's ``changeover``."""
    root = Path(path).resolve()
    for need in ("changeover/traffic/builtin/__init__.py", "bench/router_proc.py"):
        if not (root / need).is_file():
            raise SystemExit(f"{side} tree {root}: no {need} (not a checkout of this repo?)")
    commit = _git(root, "rev-parse", "--short", "HEAD") or "(not a git checkout)"
    if _git(root, "status", "--porcelain", "--untracked-files=no", "--", "changeover", "bench"):
        commit += " + uncommitted changes in changeover/ or bench/"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=root,
        env=proxies.builtin_env(root),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    *files, build = done.stdout.split() or [""]
    if done.returncode != 0 or len(files) != 2:
        raise SystemExit(f"{side} tree {root}: the import probe failed:\n{done.stderr[-2000:]}")
    for f in files:
        if not Path(f).resolve().is_relative_to(root):
            raise SystemExit(f"{side} tree {root}: its child imports {f}, not the tree's code")
    return Tree(side, root, commit, files, build)


# -- the run -----------------------------------------------------------------------------


def measure(
    args: argparse.Namespace, conns: list[int], trees: dict[str, Tree], procs: common.Procs
) -> dict[tuple[str, int], list[Sample]]:
    workdir = procs.logdir
    fp = common.free_port
    up = {1: fp(), 2: fp()}
    proxies.start_upstream_nginx(procs, workdir, [up[1], up[2]])

    def ctx() -> proxies.ProxyContext:
        return proxies.ProxyContext(procs=procs, workdir=workdir, port=fp(), backends=dict(up))

    running = {
        side: proxies.start_builtin(ctx(), name=f"builtin-{side}", tree=trees[side].path)
        for side in ("old", "new")
    }
    running["nginx"] = proxies.start_nginx(ctx())
    pids = {side: r.all_pids() for side, r in running.items()}

    print(f"warm-up ({args.warmup:.0f} s each)", flush=True)
    for side in SIDES:
        common.wrk(running[side].port, connections=max(conns), seconds=args.warmup)

    results: dict[tuple[str, int], list[Sample]] = {}
    for rnd in range(args.rounds):
        for c in conns:
            for side in order(rnd):
                before = common.cpu_times(pids[side])
                res = common.wrk(running[side].port, connections=c, seconds=args.seconds)
                s = sample(res, before, common.cpu_times(pids[side]))
                results.setdefault((side, c), []).append(s)
                print(
                    f"round {rnd + 1} {side:5} c={c:<4} {s.rps:9.0f} req/s "
                    f"user {s.user_us:5.1f} sys {s.sys_us:5.1f} µs/req "
                    f"p99 {s.p99_ms:.2f} ms errors {s.errors}",
                    flush=True,
                )
    for r in running.values():
        r.stop()
    return results


def render(
    args: argparse.Namespace,
    argv: Sequence[str],
    conns: list[int],
    trees: dict[str, Tree],
    results: dict[tuple[str, int], list[Sample]],
    took: float,
) -> str:
    pinning = (
        "nothing pinned"
        if args.no_pin
        else "wrk `-t1` pinned to core 1, each router and nginx (1 worker) to core 0"
    )
    out = [
        SECTION,
        "",
        *bench_run.machine(),
        f"- versions: {bench_run.versions()}",
        f"- command: `.venv/bin/python -m bench.compare {shlex.join(argv)}` ({args.rounds} "
        f"interleaved rounds of {args.seconds:.0f} s per side and concurrency after a "
        f"{args.warmup:.0f} s warm-up; at each concurrency old and new back to back, first "
        f"in turn, then nginx; {pinning}; upstream nginx (2 workers) unpinned; {took:.0f} s)",
        *(trees[s].describe() for s in ("old", "new")),
        "- each side: its tree's `bench/router_proc.py` (90/10 split, `x-canary` header "
        "route, sticky split on `x-user-id`, per-revision metrics); nginx as in ## Router",
        "- compare the paired ratios, not absolutes across runs: the box is shared",
        "",
        *tables(conns, results),
        "",
        f"- load average after the run (1, 5, 15 min): {common.loadavg()}",
    ]
    return "\n".join(out) + "\n"


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through ``finally``: every process is stopped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("old", help="a checkout of this repo (the baseline)")
    p.add_argument("new", help="a checkout of this repo (the change)")
    p.add_argument("--conns", default="32,256")
    p.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--warmup", type=float, default=2.0, help="seconds per side")
    p.add_argument("--no-pin", action="store_true", help="no taskset (a box busy with other work)")
    p.add_argument("--write", action="store_true", help='write "## Compare" in RESULTS.md')
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    common.PINNING = not args.no_pin
    conns = [int(c) for c in args.conns.split(",")]

    trees = {"old": check_tree("old", args.old), "new": check_tree("new", args.new)}
    for t in trees.values():
        print(t.describe().removeprefix("- "), flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="changeover-compare-"))
    procs = common.Procs(workdir)
    previous = signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    try:
        results = measure(args, conns, trees, procs)
    finally:
        procs.stop_all()
        signal.signal(signal.SIGTERM, previous)
    text = render(args, argv, conns, trees, results, time.monotonic() - started)
    print(text)
    print(f"logs in {workdir}")
    if args.write:
        common.write_results_section(SECTION, text)
        print(f"written to {common.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
