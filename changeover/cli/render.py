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


def _role(status: JSON, revision: int) -> str:
    roles = []
    if status.get("stableRevision") == revision:
        roles.append("stable")
    if status.get("canaryRevision") == revision:
        roles.append("canary")
    if status.get("revision") == revision and not roles:
        roles.append("target")
    return ",".join(roles) or "old"


def revisions_table(status: JSON) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("REVISION", "ROLE", "TRAFFIC", "READY"):
        table.add_column(column)
    weights = status.get("weights") or {}
    replicas = status.get("replicas") or {}
    for revision in _revisions(status):
        weight = weights.get(str(revision))
        traffic: RenderableType = "-"
        if weight is not None:
            traffic = Text.assemble(bar(float(weight)), f" {weight:>3}%")
        table.add_row(
            str(revision), _role(status, revision), traffic, str(replicas.get(str(revision), 0))
        )
    return table


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
    if status.get("analysis"):
        verdict = render_analysis.verdict_text(status.get("analysisRuns") or [])
        parts += [Text(""), verdict or Text("Analysis", style="bold")]
        parts.append(analysis_table(status["analysis"]))
    if events:
        parts += [Text(""), Text("Events", style="bold"), events_table(events)]
    return Group(*parts)


def _traffic_summary(status: JSON) -> str:
    weights = status.get("weights") or {}
    return " ".join(f"{rev}:{pct}%" for rev, pct in sorted(weights.items(), key=lambda kv: kv[0]))


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
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("REVISION", "CREATED", "COMMAND", ""):
        table.add_column(column)
    for rev in revisions:
        created = rev.get("createdAt")
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
            if isinstance(created, int | float)
            else "-"
        )
        marks = [m for m in ("current", "stable") if rev.get(m)]
        command = rev.get("command") or []
        shown = " ".join(str(c) for c in command) if isinstance(command, list) else str(command)
        table.add_row(str(rev.get("revision")), when, shown, ",".join(marks))
    return table
