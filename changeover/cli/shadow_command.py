"""``changeover shadow NAME``: how a shadow answers compared with production.

Per shadow revision whose answers are compared (a mirror route or shadow strategy with a
``compare`` block): the counts, the match rate, the latency delta, and the most recent
differences as readable diffs (``-`` the primary's answer, ``+`` the shadow's). JSON
bodies are pretty-printed with sorted keys first, so a diff shows the fields that differ
rather than the order they came in; a one-line answer (a streamed LLM reply reassembled)
is diffed word by word.
"""

from __future__ import annotations

import difflib
import json
import time
from typing import Annotated, Any

import typer
from rich.text import Text

from changeover.cli import app as app_mod

app = app_mod.app
JSON = dict[str, Any]


@app.command()
def shadow(
    name: app_mod.NameArg,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="Differences shown per shadow.")
    ] = 5,
    output: app_mod.OutputOpt = app_mod.Output.TABLE,
    server: app_mod.ServerOpt = None,
    token: app_mod.TokenOpt = None,
) -> None:
    """A shadow's answers compared with production's: counts and recent differences."""
    with app_mod.client(server, token) as client:
        doc = client.shadow(name)
    if output is app_mod.Output.JSON:
        app_mod.print_json(doc)
        return
    if not doc:
        app_mod.say(f"{name}: no shadow answers are being compared")
        return
    for revision, found in doc.items():
        app_mod.show(render(revision, found, limit=limit))


def render(revision: str, found: JSON, *, limit: int) -> Text:
    """One shadow's summary and its ``limit`` newest differences."""
    out = Text()
    compared = int(found.get("compared") or 0)
    matched = int(found.get("matched") or 0)
    rate = found.get("matchRate")
    out.append(
        f"shadow revision {revision} vs revision {found.get('primaryRevision')}: ", style="bold"
    )
    out.append(f"{compared} compared, {matched} matched")
    out.append(f" ({rate * 100:.1f}%)\n" if isinstance(rate, int | float) else "\n")
    kinds = found.get("mismatched") or {}
    out.append("  differences: " + ", ".join(f"{k} {v}" for k, v in kinds.items()) + "\n")
    skipped = {k: v for k, v in (found.get("notCompared") or {}).items() if v}
    if skipped:
        out.append("  not compared: " + ", ".join(f"{k} {v}" for k, v in skipped.items()) + "\n")
    delta = found.get("latencyDelta") or {}
    out.append(f"  latency delta (shadow - primary): p50 {_ms(delta.get('p50'))}")
    out.append(f", p99 {_ms(delta.get('p99'))}\n")
    for diff in list(found.get("differences") or [])[:limit]:
        out.append_text(_difference(diff))
    return out


def _difference(diff: JSON) -> Text:
    out = Text()
    at = diff.get("at")
    when = time.strftime("%H:%M:%S", time.localtime(at)) if isinstance(at, int | float) else "?"
    primary, shadow_side = diff.get("primary") or {}, diff.get("shadow") or {}
    out.append(f"\n{when} ", style="dim")
    out.append(", ".join(diff.get("kinds") or []), style="yellow")
    out.append(f": {diff.get('reason', '')}\n")
    out.append(
        f"  status {primary.get('status')} -> {shadow_side.get('status') or 'no answer'}, "
        f"latency {_ms(primary.get('latency'))} -> {_ms(shadow_side.get('latency'))}\n",
        style="dim",
    )
    for line in diff_lines(str(primary.get("body", "")), str(shadow_side.get("body", ""))):
        style = "red" if line.startswith("-") else "green" if line.startswith("+") else ""
        out.append(line + "\n", style=style)
    return out


def diff_lines(primary: str, shadow_body: str) -> list[str]:
    """The answers' differences, primary as ``-`` and shadow as ``+``.

    >>> diff_lines('{"b": 1, "a": "cat"}', '{"a": "dog", "b": 1}')
    ['  {', '-   "a": "cat",', '+   "a": "dog",', '    "b": 1']
    >>> diff_lines("The answer is 42 .", "The answer is 41 .")
    ['  The answer is [-42-] {+41+} .']
    """
    a, b = _pretty(primary), _pretty(shadow_body)
    if "\n" not in a and "\n" not in b:
        return ["  " + _word_diff(a, b)]
    out = []
    for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=1):
        if line.startswith(("---", "+++", "@@")):
            continue
        out.append((line[:1] or " ") + " " + line[1:])
    return out


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        return body


def _word_diff(a: str, b: str) -> str:
    wa, wb = a.split(" "), b.split(" ")
    parts: list[str] = []
    matcher = difflib.SequenceMatcher(a=wa, b=wb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            parts.append(" ".join(wa[i1:i2]))
            continue
        if i2 > i1:
            parts.append("[-" + " ".join(wa[i1:i2]) + "-]")
        if j2 > j1:
            parts.append("{+" + " ".join(wb[j1:j2]) + "+}")
    return " ".join(parts)


def _ms(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    return f"{seconds * 1000:+.1f} ms" if seconds < 0 else f"{seconds * 1000:.1f} ms"
