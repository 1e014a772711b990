"""The demo's stage: narration, the live view, and watching a rollout under load.

``Stage`` is what the acts (``demo.acts``) talk to. It holds the private server, the load
thread and the step log, and offers the verbs a scripted operator needs: ``apply``,
``command`` (promote, undo ...), ``wait_for`` a status, ``hold`` for a while, and ``say``.
Every status it sees (from a poll or from a command's answer) goes through ``observe``,
which opens a new segment in the step log when the rollout's situation changed and redraws
the live view; a Degraded or Aborted rollout stops the demo with a ``DemoError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from changeover import loadgen
from changeover.cli import api_client
from changeover.demo import load_thread, private_server, rollout_docs, view

JSON = dict[str, Any]
TICK = 0.25
EVENTS = 6


@dataclass(frozen=True)
class Timing:
    rate: float  # requests per second of steady load
    warmup: float  # v1 alone under load before each act's change
    pause: float  # the canary's timed pauses
    manual: float  # how long the demo "thinks" at `pause: {}` before promoting
    preview: float  # blue-green: green on preview before the switch
    switched: float  # after each switch
    scale_down: float  # blue-green scaleDownDelaySeconds: blue stays up this long
    timeout: float  # the longest any single wait may take


NORMAL = Timing(
    rate=150, warmup=6, pause=12, manual=10, preview=8, switched=8, scale_down=60, timeout=90
)
FAST = Timing(
    rate=100, warmup=2, pause=2, manual=1.5, preview=1.5, switched=2, scale_down=30, timeout=60
)


class Stage:
    def __init__(
        self,
        console: Console,
        timing: Timing,
        server: private_server.DemoServer,
        load: load_thread.LoadThread,
    ) -> None:
        self.console, self.t, self.server, self.load = console, timing, server, load
        self.log = view.StepLog()
        self.acts: list[view.ActResult] = []
        self.started = time.monotonic()
        self.live: Live | None = None
        # The act in progress.
        self.act = ""
        self.rollout = ""
        self.url = ""
        self.versions: dict[str, str] = {}
        self.label: Callable[[JSON], str] = lambda status: ""
        self.gen: loadgen.LoadGenerator | None = None
        self.status: JSON | None = None
        self.events: list[JSON] = []
        self.report: loadgen.LoadReport | None = None
        # The analysis act aborts a bad canary on purpose: then Aborted is no failure.
        self.abort_expected = False

    @property
    def api(self) -> api_client.Client:
        return self.server.client

    # --- output -------------------------------------------------------------------------

    def say(self, message: str, *, style: str = "bold") -> None:
        self.console.print(Text(message, style=style), soft_wrap=True)

    def note(self, message: str) -> None:
        self.say(message, style="dim")

    def cmd(self, command: str) -> None:
        self.say(f"  $ changeover {command}", style="cyan")

    def render(self) -> Group:
        return view.live_view(
            title=f"{self.act}: {self.rollout}",
            elapsed=time.monotonic() - self.started,
            status=self.status,
            events=self.events,
            report=self.report,
            versions=self.versions,
            url=self.url,
        )

    # --- acts -----------------------------------------------------------------------------

    def begin(self, act: str, *, rollout: str, port: int, label: Callable[[JSON], str]) -> None:
        """Start an act on ``rollout`` served on ``port``; ``label`` names each situation."""
        self.act, self.rollout, self.label = act, rollout, label
        self.url = f"http://127.0.0.1:{port}"
        self.versions, self.status, self.events, self.report, self.gen = {}, None, [], None, None
        self.abort_expected = False
        self.console.print()
        self.console.rule(Text(f"{act}: {rollout}", style="bold magenta"))

    def end(self) -> None:
        """Stop the act's load and keep its report for the summary."""
        if self.gen is not None:
            self.report = self.load.stop(self.gen)
            self.gen = None
        self.log.close(time.monotonic(), self.report)
        if self.report is not None:
            self.acts.append(
                view.ActResult(self.act, self.rollout, self.report, dict(self.versions))
            )

    def start_load(
        self,
        *,
        path: str = "",
        rate: float | None = None,
        body_fn: Callable[[int], bytes] | None = None,
    ) -> None:
        """Steady load on this act's URL (+ ``path``); ``body_fn``: POST these bodies."""
        rate = rate or self.t.rate
        what = "chat requests" if body_fn is not None else "requests"
        self.say(f"→ steady load: {rate:g} {what}/s from changeover.loadgen to {self.url}{path}")
        self.gen = self.load.start(self.url + path, rate=rate, body_fn=body_fn)

    def second(self) -> int:
        """The current second of this act's load timeline."""
        assert self.gen is not None
        return int(self.load.snapshot(self.gen).duration_s)

    # --- talking to the server --------------------------------------------------------------

    def apply(self, doc: JSON, *, version: str, file: str) -> int:
        """Apply one Rollout document; remembers which version its revision runs."""
        self.cmd(f"apply -f {file}        # {version}")
        result = self.api.apply([doc], source=file)[0]
        revision = int(result["revision"])
        self.versions[str(revision)] = version
        return revision

    def command(self, verb: str, body: JSON | None = None) -> JSON:
        """``promote`` / ``undo`` / ... on this act's rollout; the answer is observed at once,
        so the step log switches segments at the moment of the command."""
        self.cmd(f"{verb} {self.rollout}")
        status = self.api.command(self.rollout, verb, body or {})
        self.observe(status, self.api.events(self.rollout, limit=EVENTS))
        return status

    # --- watching -------------------------------------------------------------------------

    def tick(self) -> JSON:
        status = self.api.status(self.rollout)
        self.observe(status, self.api.events(self.rollout, limit=EVENTS))
        return status

    def observe(self, status: JSON, events: list[JSON]) -> None:
        self.status, self.events = status, events
        if self.gen is not None:
            self.report = self.load.snapshot(self.gen)
        label = self.label(status)
        now = time.monotonic()
        if self.log.enter(
            act=self.act, label=label, now=now, report=self.report, versions=self.versions
        ):
            clock = view.clock(now - self.started)
            self.note(f"  {clock}  {label:<34} {view.traffic_line(status, self.versions)}")
        if self.live is not None:
            self.live.update(self.render(), refresh=True)
        expected = self.abort_expected and status.get("phase") == "Aborted"
        if status.get("phase") in ("Degraded", "Aborted") and not expected:
            error = f" ({status['error']})" if status.get("error") else ""
            raise rollout_docs.DemoError(
                f"{self.rollout} is {status['phase']}: {status.get('message')}{error}"
            )

    def wait_for(self, what: str, done: Callable[[JSON], bool]) -> JSON:
        deadline = time.monotonic() + self.t.timeout
        while True:
            status = self.tick()
            if done(status):
                return status
            if time.monotonic() > deadline:
                raise rollout_docs.DemoError(
                    f"timed out after {self.t.timeout:g}s waiting for {what}: {self.rollout} "
                    f"is {status.get('phase')}: {status.get('message')}"
                    + (f" ({status['error']})" if status.get("error") else "")
                )
            time.sleep(TICK)

    def hold(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.tick()
            time.sleep(min(TICK, left))


def serves(revision: int) -> Callable[[JSON], bool]:
    """Done when ``revision`` is stable and has all the traffic."""

    def done(status: JSON) -> bool:
        return status.get("phase") == "Healthy" and status.get("stableRevision") == revision

    return done


def paused(status: JSON) -> bool:
    return status.get("phase") == "Paused"
