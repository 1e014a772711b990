"""WebSocket through the builtin router vs nginx, same server, same run.

    python -m bench.websocket               # prints the table
    python -m bench.websocket --write       # and puts it under "## WebSocket" in RESULTS.md
    python -m bench.websocket --baseline ../old   # plus the router of another checkout

One echo server (``bench.ws_peers server``) behind: nothing (direct), the builtin router
(``bench.router_proc``: its 90/10 split, header route, sticky split and metrics) and nginx
(``bench.proxies.start_nginx``: ``proxy_http_version 1.1`` with the Upgrade/Connection
fields passed on, as nginx's WebSocket guide has it). Each proxy is pinned to core 0, the
server and the client to core 1. Per round and target, interleaved:

- throughput: ``--connections`` WebSockets, each keeping ``--window`` 32-byte binary
  messages in flight, for ``--seconds``: echoed messages/s, and the proxy's CPU time per
  message (both directions);
- connection setup: ``--setups`` WebSockets opened, one message each way, closed (close
  frames), 16 at a time: connections/s.

``--baseline DIR`` adds the builtin router of another checkout (a ``git worktree`` at an
older commit, its ``make fast`` build) as one more target of the same run, so a change to
the relay is measured against what it replaces on the same machine at the same time.
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

SECTION = "## WebSocket"
TARGETS = ("direct", "builtin", "nginx")
BASELINE = "baseline"


@dataclass
class Round:
    messages_per_s: float
    cpu_us_per_message: float  # the proxy's (0 direct)
    setups_per_s: float


def peer(role: str, port: int, *args: str, timeout: float) -> dict[str, float]:
    argv = [*common.pin(1), sys.executable, "-m", "bench.ws_peers", role, str(port), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ws_peers {role} failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout)
    return result


def one_round(args: argparse.Namespace, port: int, pids: list[int]) -> Round:
    cpu0 = common.cpu_seconds(pids)
    load = peer(
        "throughput",
        port,
        *("--connections", str(args.connections), "--window", str(args.window)),
        *("--seconds", str(args.seconds)),
        timeout=args.seconds + 60,
    )
    cpu = common.cpu_seconds(pids) - cpu0
    setup = peer("setup", port, "--connections", str(args.setups), timeout=120)
    return Round(
        messages_per_s=load["messages"] / load["seconds"],
        cpu_us_per_message=cpu / load["messages"] * 1e6 if pids else 0.0,
        setups_per_s=setup["connections"] / setup["seconds"],
    )


def measure(args: argparse.Namespace, procs: common.Procs, workdir: Path) -> list[str]:
    targets = list(TARGETS)
    fp = common.free_port
    server = fp()
    argv = [*common.pin(1), sys.executable, "-m", "bench.ws_peers", "server", str(server)]
    procs.start("ws-server", argv)
    common.wait_port(server)
    ctx = proxies.ProxyContext(procs=procs, workdir=workdir, port=fp(), backends={1: server})
    ctx.backends[2] = server
    builtin = proxies.start_builtin(ctx)
    nginx = proxies.start_nginx(
        proxies.ProxyContext(procs=procs, workdir=workdir, port=fp(), backends=ctx.backends)
    )
    ports = {"direct": server, "builtin": builtin.port, "nginx": nginx.port}
    pids = {"direct": [], "builtin": builtin.all_pids(), "nginx": nginx.all_pids()}
    if args.baseline is not None:
        base = proxies.start_builtin(
            proxies.ProxyContext(procs=procs, workdir=workdir, port=fp(), backends=ctx.backends),
            name=BASELINE,
            tree=args.baseline,
        )
        targets.insert(2, BASELINE)
        ports[BASELINE] = base.port
        pids[BASELINE] = base.all_pids()
    for target in targets:  # warm-up
        peer("setup", ports[target], "--connections", "50", timeout=60)
    rounds: dict[str, list[Round]] = {t: [] for t in targets}
    n = len(targets)
    for rnd in range(args.rounds):
        order = targets[rnd % n :] + targets[: rnd % n]
        for target in order:
            res = one_round(args, ports[target], pids[target])
            rounds[target].append(res)
            print(
                f"round {rnd + 1} {target:8} {res.messages_per_s:10,.0f} msg/s "
                f"{res.cpu_us_per_message:5.2f} µs CPU/msg {res.setups_per_s:7,.0f} conn/s",
                flush=True,
            )
    label = {BASELINE: f"builtin at {_commit(args.baseline)}"} if args.baseline else {}
    return render(rounds, label)


def _commit(tree: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or str(tree)


def render(rounds: dict[str, list[Round]], label: dict[str, str]) -> list[str]:
    def med(t: str, key: str) -> float:
        return statistics.median(getattr(r, key) for r in rounds[t])

    def span(t: str, key: str, fmt: str) -> str:
        xs = [getattr(r, key) for r in rounds[t]]
        return f"{med(t, key):{fmt}} ({min(xs):{fmt}}–{max(xs):{fmt}})"

    out = [
        "| target | messages/s median (min–max) | × nginx | proxy CPU µs per message "
        "| × nginx | connections/s median (min–max) | × nginx |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in rounds:
        cpu = med(t, "cpu_us_per_message")
        cpu_ratio = cpu / med("nginx", "cpu_us_per_message") if t != "direct" else 0.0
        out.append(
            f"| {label.get(t, t)} | {span(t, 'messages_per_s', ',.0f')} | "
            f"{med(t, 'messages_per_s') / med('nginx', 'messages_per_s'):.2f} | "
            f"{f'{cpu:.2f}' if t != 'direct' else '–'} | "
            f"{f'{cpu_ratio:.2f}' if t != 'direct' else '–'} | "
            f"{span(t, 'setups_per_s', ',.0f')} | "
            f"{med(t, 'setups_per_s') / med('nginx', 'setups_per_s'):.2f} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.websocket")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--window", type=int, default=64, help="messages in flight per connection")
    p.add_argument("--setups", type=int, default=2000, help="connections per setup round")
    p.add_argument("--write", action="store_true", help=f'put the table under "{SECTION}"')
    p.add_argument(
        "--baseline",
        type=Path,
        help="another checkout whose builtin router runs as one more target",
    )
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="changeover-websocket-"))
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
        f"- command: `python -m bench.websocket {' '.join(argv or sys.argv[1:])}` "
        f"({args.rounds} interleaved rounds per target; {time.monotonic() - t0:.0f} s)",
        f"- throughput: {args.connections} WebSockets × {args.window} messages of 32 bytes in "
        f"flight, {args.seconds:g} s, echoed by one `bench.ws_peers` server; setup: "
        f"{args.setups} WebSockets opened, one message each way, closed, 16 at a time",
        "- proxies on core 0, server and client on core 1; CPU from /proc (the proxy's "
        "processes only)",
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
