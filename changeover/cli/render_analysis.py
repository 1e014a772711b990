"""The analysis part of ``get``: the verdict of the latest run and a line per metric.

Pure functions of the status document's ``analysis`` (metric → latest result) and
``analysisRuns`` (the runs of the newest revision that has any), as
``local_controller.local_service`` renders them::

    Analysis  step analysis Failed: metric error-rate Failed = 0.2824 (...); 2 failed > ...
    METRIC       PHASE                VALUE                          ✓  ✗  ?  !
    error-rate   Failed               0.2824                         0  2  0  1
    latency-p99  Successful (dry run) p99=0.0246 errorRate=0.2955 …  4  0  0  1

The counts: ✓ successful, ✗ failed, ? inconclusive, ! error, and ``…`` undecided (an A/B
test still short of a decision; the column appears only when some metric has one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

JSON = dict[str, Any]

PHASE_STYLES = {
    "Successful": "green",
    "Failed": "red",
    "Error": "red",
    "Inconclusive": "yellow",
    "Running": "cyan",
    "Pending": "dim",
}
# Which keys of a mapping result are worth a glance first (the builtin provider's summary).
_FIRST_KEYS = ("errorRate", "successRate", "p99", "p95", "latencyMean", "requests")
VALUE_WIDTH = 44


def value_text(value: Any, width: int = VALUE_WIDTH) -> str:
    """A measured value in a table cell: numbers to four significant digits, mappings as
    ``key=value`` (the interesting keys first), long text cut with an ellipsis.

    >>> value_text(0.2823529411764706)
    '0.2824'
    >>> value_text({"requests": 44.0, "p99": 0.02463, "errorRate": 0.2955})
    'errorRate=0.2955 p99=0.02463 requests=44'
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = format(value, ".4g")
    elif isinstance(value, Mapping):
        keys = [k for k in _FIRST_KEYS if k in value]
        keys += [k for k in value if k not in keys]
        text = " ".join(f"{k}={value_text(value[k], 16)}" for k in keys)
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(value_text(v, 16) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def phase_cell(result: Mapping[str, Any]) -> Text:
    phase = str(result.get("phase", ""))
    text = Text(phase, style=PHASE_STYLES.get(phase, ""))
    if result.get("dryRun"):
        text.append(" (dry run)", style="dim")
    return text


_COUNTS = {"✓": "successful", "✗": "failed", "?": "inconclusive", "!": "error"}


def analysis_table(analysis: Mapping[str, Any]) -> Table:
    results = {
        metric: result if isinstance(result, Mapping) else {"phase": str(result)}
        for metric, result in sorted(analysis.items())
    }
    counts = dict(_COUNTS)
    if any(r.get("undecided") for r in results.values()):
        counts["…"] = "undecided"
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("METRIC", "PHASE", "VALUE", *counts):
        table.add_column(column, justify="right" if len(column) == 1 else "left")
    for metric, result in results.items():
        cells = [str(result.get(key, "")) for key in counts.values()]
        value = value_text(result.get("value"))
        if result.get("measured") is False and result.get("phase") not in ("Pending", "Running"):
            value = "not measured"
        table.add_row(metric, phase_cell(result), value, *cells)
    return table


def verdict_text(runs: Sequence[Mapping[str, Any]]) -> Text | None:
    """The newest run's verdict: ``step analysis Failed: metric error-rate Failed = ...``."""
    if not runs:
        return None
    run = max(runs, key=lambda r: r.get("startedAt") or 0)
    phase = str(run.get("phase", ""))
    text = Text.assemble(
        ("Analysis  ", "bold"),
        f"{run.get('kind', '')} analysis ",
        (phase, f"bold {PHASE_STYLES.get(phase, '')}"),
    )
    if run.get("message"):
        text.append(f": {run['message']}")
    return text
