"""Rich renderings of flag status documents (``changeover.flags.flag_service``) for the CLI.

checkout  ✔ Healthy  boolean  revision 3
  default off   split on 25%   2 rules
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from changeover.cli import render

JSON = dict[str, Any]
KIND_PREFIX = "flag/"  # the CLI names a flag ``flag/NAME``; a bare name is a rollout


def is_flag(name: str | None) -> bool:
    return name is not None and name.startswith(KIND_PREFIX)


def _split(status: JSON) -> str:
    split = status.get("split") or {}
    return " ".join(f"{k} {v}%" for k, v in split.items()) or "-"


def flag_view(status: JSON, events: list[JSON] | None = None) -> RenderableType:
    header = Text.assemble(
        (str(status.get("name", "?")), "bold"),
        "  ",
        render.phase_text(status.get("phase")),
        f"  {status.get('type', '-')}",
        f"  revision {status.get('revision', '-')}",
    )
    parts: list[RenderableType] = [header]
    if status.get("message"):
        parts.append(Text(f"  {status['message']}"))
    on = "on" if status.get("enabled") else "OFF (everyone gets the default)"
    parts.append(
        Text(
            f"  {on}   default {status.get('defaultVariant', '-')}   split {_split(status)}"
            f"   {status.get('rules', 0)} rules",
        )
    )
    rollout = status.get("rollout")
    if isinstance(rollout, dict):
        step = f"step {int(rollout.get('stepIndex', 0)) + 1}/{rollout.get('totalSteps', '?')}"
        parts.append(Text(f"  rollout of {rollout.get('variant')}: {step}", style="cyan"))
    if events:
        parts += [Text(""), Text("Events", style="bold"), render.events_table(events)]
    return Group(*parts)


def flags_table(statuses: list[JSON]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("FLAG", "TYPE", "PHASE", "REVISION", "DEFAULT", "SPLIT", "RULES"):
        table.add_column(column)
    for s in statuses:
        table.add_row(
            str(s.get("name", "?")),
            str(s.get("type", "-")),
            render.phase_text(s.get("phase")),
            str(s.get("revision", "-")),
            str(s.get("defaultVariant", "-")),
            _split(s),
            str(s.get("rules", 0)),
        )
    return table


def history_table(revisions: list[JSON]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("REVISION", "CREATED", "ENABLED", "SPLIT", "CHANGES", ""):
        table.add_column(column)
    for rev in revisions:
        created = rev.get("createdAt")
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
            if isinstance(created, int | float)
            else "-"
        )
        split = rev.get("split") or {}
        table.add_row(
            str(rev.get("revision")),
            when,
            "yes" if rev.get("enabled") else "no",
            " ".join(f"{k} {v}%" for k, v in split.items()) or "-",
            ", ".join(str(c) for c in rev.get("changes") or []) or "-",
            "current" if rev.get("current") else "",
        )
    return table
