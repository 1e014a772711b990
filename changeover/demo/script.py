"""``changeover demo``'s entry point: set the stage, play the acts, clean up, summarize.

``run`` starts a private ``serve`` (``demo.private_server``) and a load thread
(``demo.load_thread``), plays ``demo.acts`` on a ``demo.stage.Stage`` with a live view when
stdout is a terminal (plain narration otherwise), stops everything it started (also on
Ctrl-C, SIGTERM and errors), and prints the summary. The exit code: 0 when every act ran and
no request failed but those the bad version of the analysis act failed before it was aborted
(that is the point of the act), 1 on a failure, 130 on Ctrl-C, 143 on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from changeover import errors
from changeover.demo import acts, load_thread, model_act, private_server, rollout_docs, stage, view


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that cleanup runs as it does for Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def run(*, fast: bool | None = None) -> int:
    """Run the demo; the exit code. ``fast`` (or ``CHANGEOVER_DEMO_FAST=1``) shortens pauses."""
    if fast is None:
        fast = os.environ.get("CHANGEOVER_DEMO_FAST", "").lower() not in ("", "0", "false", "no")
    console = Console(highlight=False)
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: no handler
        return _play(console, stage.FAST if fast else stage.NORMAL)
    try:
        return _play(console, stage.FAST if fast else stage.NORMAL)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _play(console: Console, timing: stage.Timing) -> int:
    server: private_server.DemoServer | None = None
    load: load_thread.LoadThread | None = None
    st: stage.Stage | None = None
    code = 1
    expected = 0  # failed requests of the analysis act's bad version
    started = time.monotonic()
    try:
        root = rollout_docs.repo_root()
        _intro(console)
        server = private_server.DemoServer()
        server.start()
        _say(console, f"  serve pid {server.pid}, API {server.url}, state in {server.dir}", "dim")
        _say(
            console,
            f"  watch it in a browser: {server.url}/dashboard/ (actions: sign in with the token "
            f"in {server.state_dir / 'token'})",
            "dim",
        )
        load = load_thread.LoadThread()
        st = stage.Stage(console, timing, server, load)
        with _live(st):
            acts.canary(st, root)
            expected = acts.analysis(st, root)
            model_act.play(st, root)
            acts.blue_green(st, root)
        code = 0
    except KeyboardInterrupt:
        _say(console, "interrupted: cleaning up", "yellow")
        code = 130
    except _Terminated:
        _say(console, "terminated: cleaning up", "yellow")
        code = 143
    except errors.ChangeoverError as exc:
        _say(console, f"demo failed: {exc}", "bold red")
        if server is not None:
            server.keep_dir = True
            _say(console, f"  serve's and the replicas' logs are kept in {server.dir}", "")
    finally:
        _cleanup(console, server, load)
    if code == 0 and st is not None:
        code = _summary(console, st, started, expected)
    return code


def _say(console: Console, message: str, style: str = "bold") -> None:
    console.print(Text(message, style=style), soft_wrap=True)


def _intro(console: Console) -> None:
    console.rule(Text("changeover demo", style="bold magenta"))
    _say(console, "Versions of examples/app.py under steady load through the builtin router, on")
    _say(console, "this machine: a canary, a canary decided by analysis alone (a good version")
    _say(console, "promoted, a bad one aborted), a chat model judged as a shadow on its answers")
    _say(console, "and as a canary on its time to first token, and a blue-green switch and back.")
    _say(console, "→ starting `changeover serve` on a free loopback port, with its state and")
    _say(console, "  config in a temporary directory (your own servers and config are untouched)")


@contextmanager
def _live(st: stage.Stage) -> Iterator[None]:
    """The live view while the acts play, on a terminal only (narration shows either way)."""
    if not st.console.is_terminal:
        yield
        return
    with Live(console=st.console, auto_refresh=False, transient=True) as live:
        st.live = live
        try:
            yield
        except errors.ChangeoverError:
            live.transient = False  # leave the last picture up: it shows what went wrong
            raise
        finally:
            st.live = None


def _cleanup(
    console: Console, server: private_server.DemoServer | None, load: load_thread.LoadThread | None
) -> None:
    if load is not None:
        load.close()
    if server is None:
        return
    pid = server.pid
    swept = server.stop()
    if pid is not None:
        extra = f"; ended {len(swept)} leftover processes of this run" if swept else ""
        what = "and with it the routers and replicas (--down-on-exit)"
        _say(console, f"→ stopped serve (pid {pid}) with SIGTERM, {what}{extra}")


def _summary(console: Console, st: stage.Stage, started: float, expected: int) -> int:
    console.print()
    console.rule(Text("summary", style="bold magenta"))
    console.print(view.revisions_summary(st.acts))
    console.print(view.steps_summary(st.log.segments))
    total = sum(a.report.total for a in st.acts)
    failed = sum(a.report.failures for a in st.acts)
    versions = sorted({a.versions.get(r, r) for a in st.acts for r in a.report.by_revision})
    if failed > expected:  # the bad version's own 500s are the point, not a problem
        for example in [e for a in st.acts for e in a.report.failure_examples][:5]:
            _say(console, f"  {example}", "red")
    _say(console, "Try it yourself: `changeover serve` in one terminal, then in another", "dim")
    _say(
        console,
        "`changeover apply -f examples/canary.yaml` and `changeover get chat-api -w`",
        "dim",
    )
    if expected:
        _say(
            console,
            f"  {expected:,} of the failed requests were answered by v3, the bad version, "
            "before its analysis aborted it",
            "yellow",
        )
    elapsed = view.clock(time.monotonic() - started)
    unexpected = failed - expected
    mark, style = ("✖", "bold red") if unexpected else ("✔", "bold green")
    _say(
        console,
        f"{mark} demo finished in {elapsed}: {total:,} requests, {failed:,} failed, "
        f"served by {' and '.join(versions)}",
        style,
    )
    return 1 if unexpected else 0
