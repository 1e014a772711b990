"""A progressive flag rollout as a pure state machine: the variant's weight walks the steps.

``advance`` takes the flag's rollout spec, the status stored for it, the time and what the
analysis run of the current step and the webhook calls say, and returns the next status,
the events to record, the analysis run to start and the webhook calls to start or stop.
No I/O: ``flags.flag_service`` does that.

The walk, like a canary's: ``setWeight`` sets the variant's weight in the split;
``pause`` waits its duration (or for ``promote`` without one); ``analysis`` starts a run
and moves on when it succeeds. A failed (or erroring) run turns the flag off: everyone gets
the default variant (phase Aborted) until ``retry`` or a new apply.

``spec.rollout.webhooks`` gate the walk as they gate a canary's (``spec.analysis.Webhook``):
``confirm-rollout`` and then ``pre-rollout`` before the first step, ``confirm-traffic-
increase`` before each ``setWeight`` that raises the weight, ``confirm-promotion`` before
the variant gets its destination weight; ``rollout`` (more than ``failureLimit`` failed
calls) and ``rollback`` (a 2xx) are called every ``interval`` while the walk is in flight;
``post-rollout`` once it completed or was turned off; ``event`` with every event. A failed
``pre-rollout``, ``rollout`` or a ``rollback`` that passes turns the flag off. A passed gate
is remembered in the status (``gates``), so it is not asked again. Before the first
``setWeight`` the variant has weight 0; after the last step it has the weight the spec's
split gives it (the destination).

Status shape (stored as JSON)::

    {"phase": "Progressing", "message": "...", "off": false,
     "rollout": {"variant": "on", "stepIndex": 2, "totalSteps": 5, "weight": 20,
                 "stepStartedAt": 1700000000.0, "run": "flag-checkout-3-2-0",
                 "attempt": 0, "userPaused": false, "promote": false, "done": false,
                 "lastRun": "...", "runPhase": "Running", "runMessage": ""}}
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

from changeover.spec import analysis as spec_analysis
from changeover.spec import flag as spec_flag

JSON = dict[str, Any]
MAX_STEPS_PER_TICK = 200  # more than any rollout has; a bound, not a tuning knob


@dataclasses.dataclass(frozen=True)
class StartRun:
    run_id: str
    step_index: int


@dataclasses.dataclass(frozen=True)
class HookCall:
    """Start calling ``webhook`` as its type says (a no-op for an id in progress)."""

    call_id: str
    webhook: spec_analysis.Webhook


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: JSON
    events: list[tuple[str, str]]
    start: StartRun | None = None
    calls: list[HookCall] = dataclasses.field(default_factory=list)
    stops: list[str] = dataclasses.field(default_factory=list)  # call ids to stop


# call id → (state: waiting | passed | failed, message) as the webhook runner reports it,
# None for a call it does not know.
HookStates = Callable[[str], tuple[str, str] | None]
FLIGHT = ("rollout", "rollback")  # called while the walk is in flight


@dataclasses.dataclass
class _Hooks:
    """The webhooks of one walk (one revision and attempt of the flag's rollout)."""

    webhooks: list[spec_analysis.Webhook]
    seen: HookStates
    prefix: str
    r: JSON
    calls: list[HookCall] = dataclasses.field(default_factory=list)
    stops: list[str] = dataclasses.field(default_factory=list)

    def gate(self, kind: str, where: str) -> tuple[str, str] | None:
        """None once every ``kind`` hook passed at ``where``, else (waiting or failed, why)."""
        passed: list[str] = self.r.setdefault("gates", [])
        for hook in self.webhooks:
            call_id = f"{self.prefix}-{where}-{hook.name}"
            if hook.type != kind or call_id in passed:
                continue
            state, message = self.seen(call_id) or ("", "")
            if state == "passed":
                passed.append(call_id)
                self.stops.append(call_id)
                continue
            if state == "failed":
                return "failed", f"{kind} webhook {hook.name} failed: {message}"
            if not state:
                self.calls.append(HookCall(call_id, hook))
            return "waiting", f"waiting for {kind} webhook {hook.name} {message}".rstrip()
        return None

    def in_flight(self) -> str | None:
        """Keep the ``rollout`` and ``rollback`` hooks calling; why to turn off, if any."""
        for hook in self.webhooks:
            if hook.type not in FLIGHT:
                continue
            call_id = f"{self.prefix}-flight-{hook.name}"
            state, message = self.seen(call_id) or ("", "")
            if not state:
                self.calls.append(HookCall(call_id, hook))
            elif hook.type == "rollout" and state == "failed":
                return f"rollout webhook {hook.name} failed: {message}"
            elif hook.type == "rollback" and state == "passed":
                return f"rollback webhook {hook.name} asked for it: {message}"
        return None

    def end(self) -> None:
        """The walk completed or was turned off: stop the flight hooks, call post-rollout."""
        for hook in self.webhooks:
            if hook.type in FLIGHT:
                self.stops.append(f"{self.prefix}-flight-{hook.name}")
            elif hook.type == "post-rollout" and not self.r.get("postRollout"):
                self.calls.append(HookCall(f"{self.prefix}-post-{hook.name}", hook))
        self.r["postRollout"] = True


def advance(
    name: str,
    revision: int,
    spec: spec_flag.FlagSpec,
    status: JSON,
    *,
    now: float,
    run_phase: str | None,
    run_message: str = "",
    hooks: HookStates | None = None,
) -> Outcome:
    """The next status of ``name``'s rollout. ``run_phase`` is the phase of the run named
    in ``status`` (None when there is none or it is unknown yet); ``hooks`` what the
    webhook calls this walk asked for say."""
    rollout = spec.rollout
    if rollout is None:
        return Outcome(status, [])
    r: JSON = dict(status.get("rollout") or {})
    if status.get("off"):
        if not r or r.get("postRollout") or not rollout.webhooks:
            return Outcome(status, [])
        # Turned off by the user (abort): the walk's hooks end too.
        ended = _Hooks(rollout.webhooks, hooks or _unknown, _prefix(name, revision, r), r)
        ended.end()
        return Outcome({**status, "rollout": r}, [], calls=ended.calls, stops=ended.stops)
    if not r or r.get("variant") != rollout.variant:
        r = _fresh(rollout, now, attempt=0)
    gates = _Hooks(rollout.webhooks, hooks or _unknown, _prefix(name, revision, r), r)
    events: list[tuple[str, str]] = []
    if r.get("run") and run_phase is not None:
        # What the step's run says, shown in status (the failing metric and its value).
        r.update(lastRun=r["run"], runPhase=run_phase, runMessage=run_message[:500])
    out: JSON = {**status, "rollout": r}
    start: StartRun | None = None
    if not r.get("done"):
        held = _held(r, gates)
        if held is not None:
            _hold(out, events, held, gates)
            return Outcome(out, events, None, gates.calls, gates.stops)
    for _ in range(MAX_STEPS_PER_TICK):
        i = int(r["stepIndex"])
        if r.get("done") or i >= len(rollout.steps):
            _complete(spec, r, out, events, gates)
            break
        if r.get("userPaused"):
            out.update(phase="Paused", message="paused by the user: resume or promote")
            break
        step = rollout.steps[i]
        if step.set_weight is not None:
            if step.set_weight > int(r["weight"]):
                held = gates.gate("confirm-traffic-increase", f"step{i}")
                if held is not None:
                    _hold(out, events, held, gates)
                    break
            r["weight"] = step.set_weight
            events.append(("SetWeight", f"{rollout.variant} at {step.set_weight}%"))
            _next(r, now)
            continue
        if step.pause is not None:
            duration = step.pause.duration
            waited = now - float(r["stepStartedAt"])
            if r.get("promote") or (duration is not None and waited >= duration):
                _next(r, now)
                continue
            left = "until promote" if duration is None else f"for {duration:g}s"
            out.update(phase="Paused", message=f"paused at step {i + 1} ({left})")
            break
        # an analysis step
        if r.get("promote"):
            r["run"] = None
            _next(r, now)
            continue
        if r.get("run") is None:
            r["run"] = f"flag-{name}-{revision}-{i}-{r.get('attempt', 0)}"
            start = StartRun(r["run"], i)
            events.append(("AnalysisStarted", f"step {i + 1}: analysis run {r['run']}"))
            out.update(phase="Progressing", message=f"analysis at step {i + 1}")
            break
        if run_phase == "Successful":
            events.append(("AnalysisPassed", f"step {i + 1}: analysis passed"))
            r["run"] = None
            _next(r, now)
            continue
        if run_phase in ("Failed", "Error"):
            why = f"analysis at step {i + 1} {run_phase.lower()}: {run_message}".rstrip(": ")
            _turn_off(out, events, why, gates)
            break
        if run_phase == "Inconclusive":
            out.update(phase="Paused", message=f"analysis at step {i + 1} inconclusive")
            break
        out.update(phase="Progressing", message=f"analysis at step {i + 1}")
        break
    r["totalSteps"] = len(rollout.steps)
    return Outcome(out, events, start, gates.calls, gates.stops)


def _unknown(call_id: str) -> None:
    return None


def _prefix(name: str, revision: int, r: JSON) -> str:
    return f"flag-{name}-{revision}-{r.get('attempt', 0)}"


def _held(r: JSON, gates: _Hooks) -> tuple[str, str] | None:
    """Before the first step: confirm-rollout, then pre-rollout; then, in flight: what the
    rollout and rollback hooks say. None: go on."""
    if not r.get("started"):
        held = gates.gate("confirm-rollout", "start") or gates.gate("pre-rollout", "start")
        if held is not None:
            return held
        r["started"] = True
    why = gates.in_flight()
    return ("failed", why) if why is not None else None


def _hold(out: JSON, events: list[tuple[str, str]], held: tuple[str, str], gates: _Hooks) -> None:
    state, why = held
    if state == "failed":
        _turn_off(out, events, why, gates)
    else:
        out.update(phase="Progressing", message=why)


def _turn_off(out: JSON, events: list[tuple[str, str]], why: str, gates: _Hooks) -> None:
    out.update(phase="Aborted", off=True, message=f"turned off: {why}")
    events.append(("Aborted", f"turned off: {why}"))
    gates.end()


def _complete(
    spec: spec_flag.FlagSpec,
    r: JSON,
    out: JSON,
    events: list[tuple[str, str]],
    gates: _Hooks,
) -> None:
    """The steps are done: the variant gets its destination weight once confirm-promotion
    passed."""
    assert spec.rollout is not None
    if not r.get("done"):
        held = gates.gate("confirm-promotion", "promotion")
        if held is not None:
            _hold(out, events, held, gates)
            return
        r.update(done=True, weight=_destination(spec), run=None)
        events.append(("Completed", f"rollout of {spec.rollout.variant} complete"))
        gates.end()
    out.update(phase="Healthy", message=f"{spec.rollout.variant} at {r['weight']}%")


def _fresh(rollout: spec_flag.FlagRollout, now: float, *, attempt: int) -> JSON:
    return {
        "variant": rollout.variant,
        "stepIndex": 0,
        "totalSteps": len(rollout.steps),
        "weight": 0,
        "stepStartedAt": now,
        "run": None,
        "attempt": attempt,
        "userPaused": False,
        "promote": False,
        "done": False,
    }


def _next(r: JSON, now: float) -> None:
    r.update(stepIndex=int(r["stepIndex"]) + 1, stepStartedAt=now, promote=False)


def _destination(spec: spec_flag.FlagSpec) -> int:
    assert spec.rollout is not None
    return next(e.weight for e in spec.split if e.variant == spec.rollout.variant)


# --- commands (what promote / pause / resume / retry change) -----------------------------


def promote(status: JSON, *, full: bool) -> JSON:
    r = dict(status.get("rollout") or {})
    if full:
        r.update(stepIndex=10**6, userPaused=False)
    else:
        r.update(promote=True, userPaused=False)
    return {**status, "rollout": r}


def pause(status: JSON) -> JSON:
    return {**status, "rollout": {**(status.get("rollout") or {}), "userPaused": True}}


def resume(status: JSON) -> JSON:
    return {**status, "rollout": {**(status.get("rollout") or {}), "userPaused": False}}


def retry(status: JSON, spec: spec_flag.FlagSpec, now: float) -> JSON:
    """Back on, the rollout (if any) from its first step, with fresh analysis runs."""
    if spec.rollout is None:
        return {}
    attempt = int((status.get("rollout") or {}).get("attempt", 0)) + 1
    return {"rollout": _fresh(spec.rollout, now, attempt=attempt)}


# --- what is served, and how status shows it ----------------------------------------------


def served(spec: JSON, status: JSON) -> JSON:
    """The flag's spec (``spec:`` as JSON) with its status laid over it: the off switch
    (abort, a failed analysis) and the weight a rollout has walked to (0 before its first
    step). Both platforms serve this; the input is not changed."""
    out = copy.deepcopy(spec)
    if status.get("off"):
        out["enabled"] = False
    walk = out.get("rollout")
    if isinstance(walk, dict):
        weight = (status.get("rollout") or {}).get("weight", 0)
        for entry in out.get("split", []):
            if isinstance(entry, dict) and entry.get("variant") == walk.get("variant"):
                entry["weight"] = weight
    return out


def conditions(status: JSON, previous: list[Any], now: float) -> list[JSON]:
    """Kubernetes conditions for a walked flag, as a Rollout's are read: ``Progressing``
    (False once aborted), ``Paused``, ``Completed``. A condition keeps its
    ``lastTransitionTime`` while its status stays."""
    phase = str(status.get("phase") or "")
    r = status.get("rollout") or {}
    wanted = [
        ("Progressing", phase != "Aborted", "RolloutAborted" if phase == "Aborted" else phase),
        ("Paused", phase == "Paused", "Paused" if phase == "Paused" else "NotPaused"),
        ("Completed", bool(r.get("done")), "Completed" if r.get("done") else "InProgress"),
    ]
    before = {c.get("type"): c for c in previous if isinstance(c, dict)}
    stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    for kind, on, reason in wanted:
        value = "True" if on else "False"
        old = before.get(kind) or {}
        since = old.get("lastTransitionTime") if old.get("status") == value else None
        out.append(
            {
                "type": kind,
                "status": value,
                "reason": reason or "Progressing",
                "message": str(status.get("message") or "")[:500],
                "lastTransitionTime": since or stamp,
            }
        )
    return out
