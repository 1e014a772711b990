"""Process handling, ports, CPU accounting and wrk for the benchmark (bench/run.py).

Every process the benchmark starts goes through ``Procs.start`` and is stopped by PID in
``Procs.stop_all`` (SIGTERM, then SIGKILL after a grace); every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


PINNING = True  # bench.run --no-pin turns it off (a box busy with other work)


def pin(cpu: int | None) -> list[str]:
    """A ``taskset`` prefix when the box has a core to spare for it, else nothing."""
    if not PINNING or cpu is None or NCPU < 2 or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu % NCPU)]


class Procs:
    """Processes started by the benchmark, stopped by PID (never by name)."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        p: subprocess.Popen[bytes] = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **kw,  # type: ignore[call-overload]
        )
        log.close()
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        with contextlib.suppress(ValueError):
            self.procs.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.procs)):
            self.stop(p)


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (nginx and HAProxy work in child processes)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return [pid, *(c.pid for c in proc.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def cpu_times(pids: Sequence[int]) -> tuple[float, float]:
    """(utime, stime) of ``pids`` in seconds, from /proc/<pid>/stat (a gone PID counts 0)."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime (field 14)
        system += int(fields[12])  # stime (field 15)
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` from /proc/<pid>/stat."""
    return sum(cpu_times(pids))


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg has them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors + non-2xx/3xx responses
    cpu: float = 0.0  # proxy CPU seconds per wall second (1.0 = one core busy)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"unparsed wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    reqs = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return WrkResult(rps, p50, p99, reqs, errors)


def wrk(
    port: int,
    *,
    connections: int,
    seconds: float,
    cpu: int | None = 1,
    path: str = "/",
    measure_pids: Sequence[int] = (),
) -> WrkResult:
    threads = 1 if connections < 64 or NCPU < 3 else 2
    argv = [
        *pin(cpu),
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-H",
        "x-user-id: bench",  # exercises the sticky hash (outside the sticky bucket)
        f"http://127.0.0.1:{port}{path}",
    ]
    c0 = cpu_seconds(measure_pids)
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    wall = time.monotonic() - t0
    c1 = cpu_seconds(measure_pids)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    res = parse_wrk(done.stdout)
    res.cpu = (c1 - c0) / wall if measure_pids else 0.0
    return res


# --- bench/RESULTS.md -------------------------------------------------------------------

RESULTS = Path(__file__).with_name("RESULTS.md")


def commit() -> str:
    """The checkout's commit (short), "+changes" when changeover/ or bench/ differ from it:
    the ``- commit:`` line of every RESULTS.md section, so a table names the code it ran."""
    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--", "changeover", "bench") else "")


def write_results_section(
    section: str,
    text: str,
    *,
    keep: Callable[[list[str]], list[str]] | None = None,
    path: Path = RESULTS,
) -> None:
    """Replace (or append) ``section`` (a "## ..." title line) of RESULTS.md with ``text``;
    other sections stay as they are. ``keep`` picks lines of the old section to carry over
    after the new text (another benchmark's subsection, say)."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = old.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == section), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        kept = keep(lines[start + 1 : end]) if keep is not None else []
        body = text.rstrip("\n") + ("\n\n" + "\n".join(kept).rstrip("\n") if kept else "")
        tail = lines[end:]
        new = "\n".join(lines[:start]) + "\n" + body + ("\n\n" + "\n".join(tail) if tail else "")
    path.write_text(new.rstrip("\n") + "\n")
