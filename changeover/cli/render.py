"""Rich renderings of status documents, events and history, for ``get``/``status``/``history``.

Pure functions of the API's JSON (``service.py`` documents the shapes), so they are tested
without a terminal and reused by the live ``--watch`` view. Traffic is drawn as bars::

    REVISION  ROLE    TRAFFIC                      READY
    1         stable  ████████████████░░░░  80%    3
    2         canary  ████░░░░░░░░░░░░░░░░  20%    1
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from changeover.cli import render_analysis

JSON = dict[str, Any]

PHASE_STYLE = {
    "Healthy": ("✔", "green"),
    "Progressing": ("◐", "cyan"),
    "Paused": ("॥", "yellow"),
    "Degraded": ("✖", "red"),
    "Aborted": ("✖", "red"),
}
BAR_WIDTH = 20


def phase_text(phase: str | None) -> Text:
    symbol, style = PHASE_STYLE.get(phase or "", ("?", "white"))
    return Text(f"{symbol} {phase or 'Unknown'}", style=f"bold {style}")


def step_text(status: JSON) -> str:
    """``2/4`` for the second of four steps; ``-`` when the strategy has no steps."""
    index, total = status.get("currentStepIndex"), status.get("totalSteps")
    if index is None or not total:
        return "-"
    return f"{min(int(index) + 1, int(total))}/{total}"


def bar(percent: float, width: int = BAR_WIDTH) -> Text:
    """``bar(25, 8)`` → ``██░░░░░░``: rounded to the nearest cell, at least one for >0%."""
    filled = round(max(0.0, min(100.0, percent)) * width / 100)
    if percent > 0 and filled == 0:
        filled = 1
    text = Text("█" * filled, style="green")
    text.append("░" * (width - filled), style="dim")
    return text


def _revisions(status: JSON) -> list[int]:
    seen: set[int] = set()
    for key in ("stableRevision", "canaryRevision", "revision"):
        if isinstance(status.get(key), int):
            seen.add(status[key])
    for mapping in ("weights", "replicas"):
        seen |= {int(k) for k in (status.get(mapping) or {}) if str(k).isdigit()}
    return sorted(seen)


# What each strategy calls its two revisions (Argo Rollouts' words where it has them).
_ROLE_NAMES = {
    "blueGreen": ("active", "preview"),
    "abTest": ("A", "B"),
    "shadow": ("primary", "shadow"),
}


def _role(status: JSON, revision: int) -> str:
    stable_name, canary_name = _ROLE_NAMES.get(str(status.get("strategy")), ("stable", "canary"))
    roles = []
    if status.get("stableRevision") == revision:
        roles.append(stable_name)
    if status.get("canaryRevision") == revision:
        roles.append(canary_name)
    if status.get("revision") == revision and not roles:
        roles.append("target")
    return ",".join(roles) or "old"


def effective_weights(status: JSON) -> dict[str, float]:
    """Percent of requests (or users) each revision serves: ``weights``, with an A/B test's
    sticky share of users taken from the others (``weights`` {1: 100} with 30% of users on
    2 → {1: 70, 2: 30})."""
    weights = {str(k): float(v) for k, v in (status.get("weights") or {}).items()}
    sticky = status.get("sticky")
    if isinstance(sticky, dict) and isinstance(sticky.get("weight"), int | float):
        share = float(sticky["weight"])
        weights = {k: v * (100 - share) / 100 for k, v in weights.items()}
        key = str(sticky.get("revision"))
        weights[key] = weights.get(key, 0.0) + share
    return weights


def _percent(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def _traffic_cell(status: JSON, revision: int, weights: dict[str, float]) -> RenderableType:
    weight = weights.get(str(revision))
    notes = []
    sticky = status.get("sticky")
    if isinstance(sticky, dict) and sticky.get("revision") == revision:
        notes.append("of users")
    for name, rev in (status.get("headerRoutes") or {}).items():
        if rev == revision:
            notes.append(f"+ route {name}")
    mirrored = (status.get("mirrors") or {}).get(str(revision))
    if mirrored is not None:
        notes.append(f"mirror {mirrored}%")
    if weight is None and not notes:
        return "-"
    cell = Text()
    if weight is not None:
        cell = Text.assemble(bar(weight), f" {_percent(weight):>3}%")
    if notes:
        cell.append((" " if weight is not None else "") + " ".join(notes), style="dim")
    return cell


def revisions_table(status: JSON) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("REVISION", "ROLE", "TRAFFIC", "READY", "RESTARTS"):
        table.add_column(column)
    weights = effective_weights(status)
    replicas = status.get("replicas") or {}
    states = status.get("revisionStates") or {}
    for revision in _revisions(status):
        seen = states.get(str(revision)) or {}
        ready = str(replicas.get(str(revision), 0))
        if isinstance(seen.get("desired"), int):
            ready += f"/{seen['desired']}"
        table.add_row(
            str(revision),
            _role(status, revision),
            _traffic_cell(status, revision, weights),
            ready,
            str(seen.get("restarts", "-")),
        )
    return table


def failures(status: JSON) -> list[Text]:
    """Per revision, why its replicas are not ready and the last crash: the reason a
    rollout is stuck, where the user looks."""
    lines = []
    for rev, seen in sorted((status.get("revisionStates") or {}).items()):
        if not isinstance(seen, dict):
            continue
        if seen.get("notReady") and seen.get("notReady") != seen.get("lastFailure"):
            lines.append(Text(f"  revision {rev} not ready: {seen['notReady']}", style="yellow"))
        if seen.get("lastFailure"):
            when = f" at {_clock(seen.get('lastFailureAt'))}" if seen.get("lastFailureAt") else ""
            text = f"  revision {rev} last failure{when}: {seen['lastFailure']}"
            lines.append(Text(text, style="red"))
    return lines


def _clock(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "--:--:--"
    return time.strftime("%H:%M:%S", time.localtime(ts))


def events_table(events: list[JSON]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("TIME", "REASON", "MESSAGE"):
        table.add_column(column)
    for event in events:
        table.add_row(
            _clock(event.get("time")), str(event.get("reason", "")), str(event.get("message", ""))
        )
    return table


def analysis_table(analysis: JSON) -> Table:
    return render_analysis.analysis_table(analysis)


def rollout_view(status: JSON, events: list[JSON] | None = None) -> RenderableType:
    """The full picture of one rollout: ``get NAME`` and its ``--watch``."""
    header = Text.assemble(
        (str(status.get("name", "?")), "bold"),
        "  ",
        phase_text(status.get("phase")),
        f"  {status.get('strategy') or '-'}",
        f"  step {step_text(status)}" if step_text(status) != "-" else "",
        f"  revision {status.get('revision', '-')}",
    )
    parts: list[RenderableType] = [header]
    if status.get("message"):
        parts.append(Text(f"  {status['message']}"))
    if status.get("error"):
        parts.append(Text(f"  error: {status['error']}", style="red"))
    endpoints = f"  endpoint {status.get('endpoint') or '-'}"
    if status.get("previewEndpoint"):
        endpoints += f"   preview {status['previewEndpoint']}"
    parts += [Text(endpoints, style="dim"), Text(""), revisions_table(status)]
    parts += failures(status)
    if status.get("analysis"):
        verdict = render_analysis.verdict_text(status.get("analysisRuns") or [])
        parts += [Text(""), verdict or Text("Analysis", style="bold")]
        parts.append(analysis_table(status["analysis"]))
    if events:
        parts += [Text(""), Text("Events", style="bold"), events_table(events)]
    return Group(*parts)


def _traffic_summary(status: JSON) -> str:
    weights = effective_weights(status)
    return " ".join(
        f"{rev}:{_percent(pct)}%" for rev, pct in sorted(weights.items(), key=lambda kv: kv[0])
    )


def rollouts_table(statuses: list[JSON]) -> Table:
    """``get`` with no name: one line per rollout."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "STRATEGY", "PHASE", "STEP", "STABLE", "CANARY", "TRAFFIC", "ENDPOINT"):
        table.add_column(column)
    for s in statuses:
        table.add_row(
            str(s.get("name", "?")),
            str(s.get("strategy") or "-"),
            phase_text(s.get("phase")),
            step_text(s),
            str(s.get("stableRevision") or "-"),
            str(s.get("canaryRevision") or "-"),
            _traffic_summary(s) or "-",
            str(s.get("endpoint") or "-"),
        )
    return table


def history_table(revisions: list[JSON]) -> Table:
    """One row per kept revision: when, and what changed from the revision before it
    (the whole command for the first one); secret-looking values come masked."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("REVISION", "CREATED", "CHANGES", ""):
        table.add_column(column)
    for i, rev in enumerate(revisions):
        created = rev.get("createdAt")
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
            if isinstance(created, int | float)
            else "-"
        )
        marks = [m for m in ("current", "stable") if rev.get(m)]
        command = rev.get("command") or []
        shown = " ".join(str(c) for c in command) if isinstance(command, list) else str(command)
        changes = [str(c.get("text")) for c in rev.get("changes") or [] if isinstance(c, dict)]
        if i == 0 or "changes" not in rev:
            text = f"command: {shown}"
        else:
            text = "\n".join(changes) or "no template change"
        table.add_row(str(rev.get("revision")), when, text, ",".join(marks))
    return table
