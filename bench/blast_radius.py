"""Blast radius of a bad canary: how long it lives and how many requests it serves.

For a bad canary under a fixed request rate, one ``changeover serve`` (private state dir,
free loopback ports, from ``changeover.demo.private_server``) runs real replicas of
``examples/app.py`` behind the builtin router, with background analysis on the builtin
provider (error rate and p99 latency of the canary). Per trial:

1. apply a fresh rollout, stable v1 (1 replica), and wait until it is Healthy;
2. start ``changeover.loadgen`` at ``--rate`` requests/s (open loop) on its port;
3. apply v2, bad in one way (20% 500s, +30% latency, or 100% 500s as a sanity row);
4. poll ``status`` every 50 ms: *time to stable* runs from the first poll that shows the
   canary with a weight to the first that shows all traffic back on v1;
5. stop the load and count what users saw: responses from v2 (``x-changeover-revision``),
   the 5xx among them, and v2's share of all responses in the canary's lifetime.

Settings varied (so the trade-off shows): the analysis ``interval`` (5s vs 10s; the
builtin window is the interval, the first measurement comes one interval after the run
starts) and the first ``setWeight`` (10% vs 25%). Writes the "## Blast radius" section of
bench/RESULTS.md; ``--no-write`` only prints. Every process it starts (``serve``, which
starts the replicas) is stopped by PID at the end, also on Ctrl-C: ``DemoServer.stop``
SIGTERMs ``serve`` and ends any process still carrying this run's marker.

    .venv/bin/python -m bench.blast_radius              # ~6 minutes on 2 cores
    .venv/bin/python -m bench.blast_radius --reps 1 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common
from changeover import loadgen
from changeover.demo import load_thread, private_server

SECTION = "## Blast radius"
APP = Path(__file__).resolve().parents[1] / "examples" / "app.py"
JSON = dict[str, Any]

# The stable version answers in 80–90 ms: its p99 stays in the router's (50 ms, 100 ms]
# histogram bucket, and +30% (104–117 ms) lands wholly in (100 ms, 250 ms], so a p99 bound of
# 150 ms separates them despite the buckets' coarseness (see traffic/builtin/metrics.py).
LATENCY_MS, JITTER_MS = 80.0, 10.0
P99_BOUND_S = 0.15
ERROR_BOUND = 0.05
POLL_S = 0.05
WARMUP_S = 2.0
TRIAL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Bad:
    key: str
    label: str
    env: dict[str, str]


BAD_KINDS = {
    "errors20": Bad("errors20", "20% errors", {"ERROR_RATE": "0.2"}),
    "latency30": Bad(
        "latency30",
        "+30% latency",
        {"LATENCY_MS": f"{LATENCY_MS * 1.3:g}", "JITTER_MS": f"{JITTER_MS * 1.3:g}"},
    ),
    "errors100": Bad("errors100", "100% 500s (sanity)", {"ERROR_RATE": "1"}),
}


@dataclass(frozen=True)
class Setting:
    interval_s: int
    first_weight: int

    @property
    def label(self) -> str:
        return f"interval {self.interval_s}s, first step {self.first_weight}%"


BASE = Setting(interval_s=5, first_weight=10)
VARIED = (Setting(interval_s=10, first_weight=10), Setting(interval_s=5, first_weight=25))


@dataclass(frozen=True)
class Trial:
    bad: str
    setting: Setting
    to_stable_s: float  # canary's first weight → all traffic back on stable
    bad_served: int  # responses the bad revision answered
    bad_5xx: int  # of those, failed (5xx)
    window_total: int  # all responses while the canary had traffic
    verdict: str  # the rollout's phase and message at the end

    @property
    def share(self) -> float:
        return self.bad_served / self.window_total if self.window_total else math.nan


# --- specs ------------------------------------------------------------------------------


def rollout(name: str, *, port: int, version: str, env: dict[str, str], s: Setting) -> JSON:
    """The document a user would write: steps, plus background analysis from step 0."""
    interval = f"{s.interval_s}s"

    def metric(name: str, builtin: str, condition: str) -> JSON:
        return {
            "name": name,
            "interval": interval,
            "initialDelay": interval,
            "successCondition": condition,
            "provider": {"builtin": {"metric": builtin, "window": interval, "minRequests": 10}},
        }

    app_env = {"ERROR_RATE": "0", "LATENCY_MS": f"{LATENCY_MS:g}", "JITTER_MS": f"{JITTER_MS:g}"}
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "template": {
                "command": [sys.executable, str(APP), "--port", "$(PORT)", "--version", version],
                "env": {**app_env, **env},
                "workingDir": str(APP.parents[1]),
                "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 0.5},
            },
            "service": {"port": port},
            "strategy": {
                "canary": {
                    "steps": [
                        {"setWeight": s.first_weight},
                        {"pause": {"duration": "60s"}},
                        {"setWeight": 50},
                        {"pause": {"duration": "60s"}},
                    ],
                    "analysis": {
                        "startingStep": 0,
                        "metrics": [
                            metric("error-rate", "error-rate", f"result < {ERROR_BOUND}"),
                            metric("latency-p99", "latency-p99", f"result < {P99_BOUND_S}"),
                        ],
                    },
                }
            },
        },
    }


# --- one trial --------------------------------------------------------------------------


def wait_status(server: private_server.DemoServer, name: str, ok: Any, what: str) -> JSON:
    deadline = time.monotonic() + TRIAL_TIMEOUT_S
    while True:
        status: JSON = server.client.status(name)
        if ok(status):
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: no {what} in {TRIAL_TIMEOUT_S:g}s: {status}")
        time.sleep(POLL_S)


def window_responses(report: loadgen.LoadReport, start: float, end: float) -> int:
    """Responses in [start, end) seconds of the load run, the edge seconds pro rata."""
    total = 0.0
    for second, counts in enumerate(report.timeline):
        overlap = min(end, second + 1) - max(start, second)
        if overlap > 0:
            total += overlap * sum(counts.values())
    return round(total)


def run_trial(
    server: private_server.DemoServer,
    load: load_thread.LoadThread,
    *,
    index: int,
    bad: Bad,
    s: Setting,
    rate: float,
) -> Trial:
    name, port = f"blast-{index}", private_server.free_port()
    good = rollout(name, port=port, version="v1", env={}, s=s)
    server.client.apply([good], source="bench/blast_radius.py")
    wait_status(server, name, lambda st: st.get("phase") == "Healthy", "healthy v1")
    gen = load.start(f"http://127.0.0.1:{port}", rate=rate)
    load_t0 = time.monotonic()  # the generator started just before: within a millisecond
    try:
        time.sleep(WARMUP_S)
        canary = rollout(name, port=port, version="v2", env=bad.env, s=s)
        revision = str(server.client.apply([canary], source="bench/blast_radius.py")[0]["revision"])
        wait_status(server, name, lambda st: st["weights"].get(revision, 0) > 0, "canary weight")
        t_first = time.monotonic()
        back = wait_status(
            server,
            name,
            lambda st: st["weights"].get(revision, 0) == 0 or st.get("phase") == "Healthy",
            "traffic back on stable",
        )
        t_back = time.monotonic()
        time.sleep(1.0)  # responses in flight at the switch land in the report
    finally:
        report = load.stop(gen)
    server.client.delete(name)
    verdict = f"{back.get('phase')}: {back.get('message', '')}"
    return Trial(
        bad=bad.key,
        setting=s,
        to_stable_s=t_back - t_first,
        bad_served=report.by_revision.get(revision, 0),
        bad_5xx=report.failures_by_revision.get(revision, 0),
        window_total=window_responses(report, t_first - load_t0, t_back - load_t0),
        verdict=verdict,
    )


# --- the table --------------------------------------------------------------------------


def med(values: Sequence[float], fmt: str) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "–"
    return (
        f"{format(statistics.median(finite), fmt)} "
        f"({format(min(finite), fmt)}–{format(max(finite), fmt)})"
    )


def render(trials: list[Trial], args: argparse.Namespace, took: float, loads: list[str]) -> str:
    cmd = "python -m bench.blast_radius" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    out = [
        SECTION,
        "",
        f"- machine: `{' '.join(platform.uname())}`, {os.cpu_count()} cores, CPU: {cpu}",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {common.commit()}",
        f"- load average (`uptime`) before / after: {loads[0]} / {loads[-1]}",
        f"- command: `.venv/bin/{cmd}` ({args.reps} repetition{'s' * (args.reps != 1)} per "
        f"row, {took:.0f} s)",
        f"- workload: `examples/app.py` at {LATENCY_MS:g}–{LATENCY_MS + JITTER_MS:g} ms, 1 "
        f"replica per revision behind the builtin router; `changeover.loadgen` at "
        f"{args.rate:g} requests/s (open loop, 127.0.0.1); steps: setWeight W, pause 60s, "
        "setWeight 50, pause 60s",
        f"- analysis: in the background from step 0, builtin provider, two metrics: canary "
        f"error-rate `result < {ERROR_BOUND}` and latency-p99 `result < {P99_BOUND_S}` (s), "
        "window = interval, first measurement one interval after the run starts, "
        "failureLimit 0",
        "- time to stable: from the first `status` poll (every 50 ms) showing the canary with a "
        "weight to the first showing all traffic on stable; bad served: responses from the bad "
        "revision; share: of all responses in that time",
        "- medians, (min–max) over the repetitions",
        "- reading: the canary is caught by the first measurement, one interval after the "
        "run starts (the run starts with the canary, about half a second before its first "
        "weight), so time to stable is about the interval and the share about the first "
        "step's weight; bad requests scale with interval × weight × rate. Measuring sooner "
        "(shorter window or initialDelay) trades against noisier verdicts on fewer requests.",
        "",
        "| bad canary | setting | time to stable (s) | bad served | of which 5xx | share | "
        "aborted by |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    keys = list(dict.fromkeys((t.bad, t.setting) for t in trials))
    for bad, setting in keys:
        row = [t for t in trials if t.bad == bad and t.setting == setting]
        share = med([t.share * 100 for t in row], ".1f").replace(" (", "% (").replace(")", "%)")
        aborted = sorted({_metric(t.verdict) for t in row})
        cells = [
            BAD_KINDS[bad].label,
            setting.label,
            med([t.to_stable_s for t in row], ".1f"),
            med([t.bad_served for t in row], ".0f"),
            med([t.bad_5xx for t in row], ".0f"),
            share,
            ", ".join(aborted),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join([*out, ""])


def _metric(verdict: str) -> str:
    """Which metric aborted the canary, read from the rollout's message."""
    for name in ("error-rate", "latency-p99"):
        if f"metric {name} " in verdict:
            return name
    return verdict.split(":", 1)[0] or "?"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def plan(reps: int) -> list[tuple[Bad, Setting]]:
    """Every kind at the base setting; the two real regressions at the varied settings."""
    rows = [(bad, BASE) for bad in BAD_KINDS.values()]
    rows += [(BAD_KINDS[k], s) for s in VARIED for k in ("errors20", "latency30")]
    # Repetitions interleaved, so a slow minute of the shared box hits every row alike.
    return [row for _ in range(reps) for row in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--reps", type=int, default=3, help="repetitions per row")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second")
    p.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    args = p.parse_args(argv)
    started = time.monotonic()
    loads = [load_average()]
    trials: list[Trial] = []
    server = private_server.DemoServer()
    load = load_thread.LoadThread()
    try:
        server.start()
        for index, (bad, setting) in enumerate(plan(args.reps)):
            trial = run_trial(server, load, index=index, bad=bad, s=setting, rate=args.rate)
            trials.append(trial)
            print(
                f"{bad.label:>20} | {setting.label:<32} | {trial.to_stable_s:5.1f} s | "
                f"bad {trial.bad_served:5d} ({trial.share:6.1%}) | {trial.verdict[:90]}",
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted: stopping what was started", file=sys.stderr)
        return 130
    finally:
        load.close()
        swept = server.stop()
        if swept:
            print(f"ended leftover processes by PID: {swept}", file=sys.stderr)
    loads.append(load_average())
    text = render(trials, args, time.monotonic() - started, loads)
    print(text)
    if not args.no_write:
        common.write_results_section(SECTION, text)
        print(f"written to {common.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
