"""Flag evaluation cost: in-process per call, and over OFREP from a running ``changeover serve``.

    python -m bench.flags [--seconds 5] [--rounds 3] [--write]

In-process (``changeover.flags.evaluate``, one core): nanoseconds per ``evaluate`` call for
a static flag, a 10% split, and a flag with five targeting rules before the split, against
the OpenFeature Python SDK resolving a static flag from its own ``InMemoryProvider`` (what a
call through the SDK costs before any remote evaluation).

Over HTTP: a real ``changeover serve`` (pinned to core 0) with those flags applied; wrk (one
thread, core 1, keep-alive) POSTs OFREP single evaluations (``/ofrep/v1/evaluate/flags/KEY``,
a new targetingKey per request) and bulk evaluations, against the same server's ``GET
/healthz``: the cost of evaluating over the API's own HTTP floor. Requests per second and
p99, median over interleaved rounds. ``--write`` puts the table in bench/RESULTS.md under
"## Flags".
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common

SECTION = "## Flags"
BOOLEAN = {"type": "boolean", "variants": {"on": True, "off": False}, "defaultVariant": "off"}
RULES = [
    {"when": [{"attribute": "email", "emailDomain": ["example.com"]}], "variant": "on"},
    {"when": [{"attribute": "country", "in": ["DE", "FR", "NL"]}], "variant": "on"},
    {"when": [{"attribute": "appVersion", "semver": ">=2.1.0"}], "variant": "on"},
    {"when": [{"attribute": "plan", "in": ["beta"]}], "variant": "on"},
    {"when": [{"attribute": "userAgent", "startsWith": "bot/"}], "variant": "off"},
]
FLAGS: dict[str, dict[str, Any]] = {
    "static": BOOLEAN,
    "split": {**BOOLEAN, "split": [{"variant": "on", "weight": 10}]},
    "rules": {**BOOLEAN, "rules": RULES, "split": [{"variant": "on", "weight": 10}]},
}
CONTEXT = {"email": "ann@elsewhere.org", "country": "US", "appVersion": "2.0.3", "plan": "pro"}


# --- in-process -----------------------------------------------------------------------


def _per_call_ns(call: Callable[[int], object], n: int) -> float:
    started = time.perf_counter_ns()
    for i in range(n):
        call(i)
    return (time.perf_counter_ns() - started) / n


def in_process(rounds: int, n: int) -> dict[str, list[float]]:
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

    from changeover.flags import evaluate
    from changeover.spec import flag as spec_flag

    compiled = {
        k: evaluate.compile_flag(spec_flag.FlagSpec.model_validate(v)) for k, v in FLAGS.items()
    }
    keys = [f"user-{i}" for i in range(n)]
    contexts = [{**CONTEXT, "targetingKey": k} for k in keys]
    api.set_provider(InMemoryProvider({"static": InMemoryFlag("off", {"on": True, "off": False})}))
    client = api.get_client()
    sdk_contexts = [EvaluationContext(k, CONTEXT) for k in keys]
    calls: dict[str, Callable[[int], object]] = {
        f"changeover {name}": (lambda f: lambda i: f.evaluate(contexts[i]))(flag)
        for name, flag in compiled.items()
    }
    calls["OpenFeature SDK, InMemoryProvider static"] = lambda i: client.get_boolean_value(
        "static", False, sdk_contexts[i]
    )
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            out[name].append(_per_call_ns(call, n))
    return out


# --- over OFREP -----------------------------------------------------------------------

_POST = """
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer TOKEN"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil,
    '{"context":{"targetingKey":"user-' .. n .. '","email":"ann@elsewhere.org","country":"US"}}')
end
"""


def _serve(root: Path) -> tuple[subprocess.Popen[bytes], int, dict[str, str]]:
    port = common.free_port()
    env = {
        **os.environ,
        "CHANGEOVER_STATE_DIR": str(root / "state"),
        "CHANGEOVER_CONFIG": str(root / "servers.json"),
    }
    argv = [*common.pin(0), sys.executable, "-m", "changeover.cli.main", "serve"]
    proc = subprocess.Popen(
        [*argv, "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(root / "serve.log").open("wb"),
    )
    common.wait_port(port, timeout=30)
    return proc, port, env


def _apply(root: Path, env: dict[str, str]) -> None:
    import yaml

    docs = [
        {
            "apiVersion": "changeover.dev/v1alpha1",
            "kind": "Flag",
            "metadata": {"name": k},
            "spec": v,
        }
        for k, v in FLAGS.items()
    ]
    path = root / "flags.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    subprocess.run(
        [sys.executable, "-m", "changeover.cli.main", "apply", "-f", str(path)],
        env=env,
        check=True,
        capture_output=True,
    )


def _wrk(
    port: int, path: str, script: Path | None, seconds: float, connections: int
) -> common.WrkResult:
    argv = [*common.pin(1), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    argv += [
        "--latency",
        *(["-s", str(script)] if script else []),
        f"http://127.0.0.1:{port}{path}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    return common.parse_wrk(done.stdout)


def over_ofrep(rounds: int, seconds: float, connections: int) -> dict[str, list[common.WrkResult]]:
    with tempfile.TemporaryDirectory(prefix="bench-flags-") as tmp:
        root = Path(tmp)
        proc, port, env = _serve(root)
        try:
            _apply(root, env)
            token = (root / "state" / "flags" / "token").read_text().strip()
            single = root / "post.lua"
            single.write_text(_POST.replace("TOKEN", token))
            targets = {
                "GET /healthz (the API's floor)": ("/healthz", None),
                "OFREP single, static flag": ("/ofrep/v1/evaluate/flags/static", single),
                "OFREP single, 5 rules + split": ("/ofrep/v1/evaluate/flags/rules", single),
                "OFREP bulk (3 flags)": ("/ofrep/v1/evaluate/flags", single),
            }
            _wrk(port, "/healthz", None, 1, connections)  # warm-up
            out: dict[str, list[common.WrkResult]] = {name: [] for name in targets}
            for r in range(rounds):
                names = list(targets)
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    path, script = targets[name]
                    result = _wrk(port, path, script, seconds, connections)
                    if result.errors:
                        raise RuntimeError(f"{name}: {result.errors} failed requests")
                    out[name].append(result)
            return out
        finally:
            proc.terminate()
            proc.wait(10)


# --- the report -----------------------------------------------------------------------


def _spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def report(
    local: dict[str, list[float]],
    remote: dict[str, list[common.WrkResult]],
    args: argparse.Namespace,
    took: float,
) -> str:
    floor = statistics.median(r.rps for r in next(iter(remote.values())))
    sdk = statistics.median(local["OpenFeature SDK, InMemoryProvider static"])
    lines = [
        SECTION,
        "",
        f"- machine: `{' '.join(platform.uname())}`",
        f"- cores: {common.NCPU}; load average before / after: {args.load_before} / "
        f"{common.loadavg()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- commit: {common.commit()}",
        f"- command: `python -m bench.flags --write` ({args.rounds} interleaved rounds; "
        f"in-process {args.calls:,} calls per round on one core; wrk -t1 -c{args.connections} "
        f"{args.seconds:g} s per target on core 1, serve on core 0; {took:.0f} s)",
        "- flags: a static boolean, a 10% split, five targeting rules (email domain, country list, "
        "semver, plan, prefix) before a 10% split; every context misses the rules (the worst case)",
        "",
        "### In-process evaluation (`changeover.flags.evaluate`)",
        "",
        "| evaluation | ns per call median (min–max) | × SDK static |",
        "|---|---:|---:|",
    ]
    for name, values in local.items():
        lines.append(
            f"| {name} | {_spread(values, '.0f')} | {statistics.median(values) / sdk:.3f} |"
        )
    lines += [
        "",
        "### Over OFREP (`changeover serve`)",
        "",
        "| request | req/s median (min–max) | p50 ms | p99 ms | × floor req/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, results in remote.items():
        rps = [r.rps for r in results]
        p50 = statistics.median(r.p50_ms for r in results)
        p99 = statistics.median(r.p99_ms for r in results)
        ratio = statistics.median(rps) / floor
        lines.append(f"| {name} | {_spread(rps, ',.0f')} | {p50:.2f} | {p99:.2f} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    args.load_before = common.loadavg()
    started = time.monotonic()
    local = in_process(args.rounds, args.calls)
    remote = over_ofrep(args.rounds, args.seconds, args.connections)
    text = report(local, remote, args, time.monotonic() - started)
    print(text)
    if args.write:
        common.write_results_section(SECTION, text)
        print(f"written to {common.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
