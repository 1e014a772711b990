"""What the demo draws: the live view under load, and the closing summary tables.

Pure functions of plain data (status documents, ``loadgen.LoadReport`` s, ``Segment`` s), so
they are tested without a terminal. The rollout itself is drawn by ``cli.render`` (the same
view as ``changeover get --watch``); below it the demo adds what users of the service saw::

    Traffic  loadgen → http://127.0.0.1:41234 at 150 req/s
    VERSION  REV  LAST SECOND               LAST 30 s                        SERVED  FAILED
    v1       1    ████████████████░░░░  80% ██████████████▆▆▆▆▆▆▆▆▆▆          3,120       0
    v2       2    ████░░░░░░░░░░░░░░░░  20% ▁▁▁▁▁▁▁▁▁▁▁▁▁▁▂▂▂▂▂▂▂▂▂▂            410       0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from changeover import loadgen
from changeover.cli import render

JSON = dict[str, Any]
SPARK = " ▁▂▃▄▅▆▇█"
SPARK_SECONDS = 30


@dataclass
class Segment:
    """One stretch of the demo (a canary step, the preview, after the switch) and the
    requests answered during it: counts are differences of load reports at its ends."""

    act: str
    label: str
    started: float
    versions: Mapping[str, str]
    start_counts: dict[str, int] = field(default_factory=dict)
    start_failures: int = 0
    ended: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    failures: int = 0

    def close(self, now: float, report: loadgen.LoadReport | None) -> None:
        self.ended = now
        if report is not None:
            self.counts = {
                rev: n - self.start_counts.get(rev, 0)
                for rev, n in report.by_revision.items()
                if n - self.start_counts.get(rev, 0) > 0
            }
            self.failures = report.failures - self.start_failures

    @property
    def seconds(self) -> float:
        return (self.ended or self.started) - self.started


class StepLog:
    """The demo's segments, in order; at most one is open."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []

    @property
    def current(self) -> Segment | None:
        last = self.segments[-1] if self.segments else None
        return last if last is not None and last.ended is None else None

    def enter(
        self,
        *,
        act: str,
        label: str,
        now: float,
        report: loadgen.LoadReport | None,
        versions: Mapping[str, str],
    ) -> bool:
        """Open ``label`` (closing the open segment at ``now``); False if it is open already."""
        current = self.current
        if current is not None and (current.act, current.label) == (act, label):
            return False
        if current is not None:
            current.close(now, report)
        self.segments.append(
            Segment(
                act=act,
                label=label,
                started=now,
                versions=dict(versions),
                start_counts=dict(report.by_revision) if report is not None else {},
                start_failures=report.failures if report is not None else 0,
            )
        )
        return True

    def close(self, now: float, report: loadgen.LoadReport | None) -> None:
        if self.current is not None:
            self.current.close(now, report)


# --- live ------------------------------------------------------------------------------


def sparkline(values: Sequence[float]) -> str:
    """Shares (0.0-1.0) as block characters: ``sparkline([0, 0.5, 1])`` → ``' ▄█'``."""
    top = len(SPARK) - 1
    return "".join(SPARK[round(max(0.0, min(1.0, v)) * top)] for v in values)


def _complete_seconds(report: loadgen.LoadReport) -> list[dict[str, int]]:
    # The last second of the timeline is still filling up: it would always look short.
    timeline = report.timeline
    return timeline[:-1] if len(timeline) > 1 else list(timeline)


def _share(second: Mapping[str, int], revision: str) -> float:
    total = sum(second.values())
    return second.get(revision, 0) / total if total else 0.0


def traffic_table(report: loadgen.LoadReport, versions: Mapping[str, str]) -> Table:
    """Per revision: share of the last complete second, a 30 s sparkline, totals."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("VERSION", "REV", "LAST SECOND", f"LAST {SPARK_SECONDS} s"):
        table.add_column(column)
    table.add_column("SERVED", justify="right")
    table.add_column("FAILED", justify="right")
    seconds = _complete_seconds(report)
    last = seconds[-1] if seconds else {}
    recent = seconds[-SPARK_SECONDS:]
    for revision in sorted(set(report.by_revision) | set(versions), key=_revision_order):
        share = _share(last, revision) * 100
        failed = report.failures_by_revision.get(revision, 0)
        table.add_row(
            versions.get(revision, "?"),
            revision,
            Text.assemble(render.bar(share), f" {share:>3.0f}%"),
            Text(sparkline([_share(s, revision) for s in recent]), style="cyan"),
            f"{report.by_revision.get(revision, 0):,}",
            Text(f"{failed:,}", style="red" if failed else ""),
        )
    return table


def _revision_order(revision: str) -> tuple[int, str]:
    return (int(revision), "") if revision.isdigit() else (1 << 30, revision)


def traffic_view(report: loadgen.LoadReport, versions: Mapping[str, str], url: str) -> Group:
    failed = Text(f"failed {report.failures:,}", style="bold red" if report.failures else "green")
    totals = Text.assemble(
        f"  total {report.total:,}  ·  {report.rate_per_s:,.0f} req/s  ·  ",
        failed,
        f"  ·  p50 {report.latency_p50_ms:.0f} ms  p99 {report.latency_p99_ms:.0f} ms",
    )
    return Group(
        Text.assemble(("Traffic", "bold"), f"  loadgen → {url}", style=""),
        traffic_table(report, versions),
        totals,
    )


def live_view(
    *,
    title: str,
    elapsed: float,
    status: JSON | None,
    events: list[JSON],
    report: loadgen.LoadReport | None,
    versions: Mapping[str, str],
    url: str,
) -> Group:
    parts: list[RenderableType] = [
        Text.assemble(("changeover demo", "bold magenta"), f"  ·  {title}  ·  {clock(elapsed)}"),
        Text(""),
    ]
    if status is not None:
        parts.append(render.rollout_view(status, events))
    if report is not None:
        parts += [Text(""), traffic_view(report, versions, url)]
    return Group(*parts)


def clock(seconds: float) -> str:
    """``75.3`` → ``01:15``."""
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes:02d}:{rest:02d}"


def traffic_line(status: JSON, versions: Mapping[str, str]) -> str:
    """``traffic v1 80% · v2 20%   ready v1 4 · v2 1`` from a status document."""

    def listing(mapping: Mapping[str, Any], unit: str) -> str:
        items = sorted(mapping.items(), key=lambda kv: _revision_order(kv[0]))
        return " · ".join(f"{versions.get(rev, rev)} {n}{unit}" for rev, n in items) or "-"

    weights = listing(status.get("weights") or {}, "%")
    return f"traffic {weights}   ready {listing(status.get('replicas') or {}, '')}"


# --- summary ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ActResult:
    """One act's final load report, and which version each revision ran."""

    act: str
    rollout: str
    report: loadgen.LoadReport
    versions: Mapping[str, str]


def _failed(count: int) -> Text:
    return Text(f"{count:,}", style="bold red" if count else "green")


def revisions_summary(acts: Sequence[ActResult]) -> Table:
    table = Table(
        title="Requests per revision", title_justify="left", header_style="bold", box=box.SIMPLE
    )
    for column in ("ACT", "ROLLOUT", "REV", "VERSION"):
        table.add_column(column, no_wrap=True)
    for column in ("REQUESTS", "SHARE", "FAILED"):
        table.add_column(column, justify="right", no_wrap=True)
    total = failed = 0
    for act in acts:
        report = act.report
        total += report.total
        failed += report.failures
        for revision, count in sorted(report.by_revision.items(), key=lambda kv: kv[0]):
            table.add_row(
                act.act,
                act.rollout,
                revision,
                act.versions.get(revision, "?"),
                f"{count:,}",
                f"{report.share(revision):.0%}",
                _failed(report.failures_by_revision.get(revision, 0)),
            )
    table.add_section()
    table.add_row("all", "", "", "", f"{total:,}", "", _failed(failed))
    return table


def steps_summary(segments: Sequence[Segment]) -> Table:
    table = Table(title="Time per step", title_justify="left", header_style="bold", box=box.SIMPLE)
    table.add_column("STEP", no_wrap=True)
    table.add_column("SECONDS", justify="right", no_wrap=True)
    table.add_column("REQUESTS BY VERSION", no_wrap=True)
    table.add_column("FAILED", justify="right", no_wrap=True)
    act = None
    for seg in segments:
        if seg.act != act:
            act = seg.act
            table.add_row(Text(act, style="bold magenta"), "", "", "")
        served = "  ".join(
            f"{seg.versions.get(rev, rev)} {n:,}"
            for rev, n in sorted(seg.counts.items(), key=lambda kv: _revision_order(kv[0]))
        )
        table.add_row(f"  {seg.label}", f"{seg.seconds:.1f}", served or "-", _failed(seg.failures))
    return table


def flip_lines(report: loadgen.LoadReport, versions: Mapping[str, str], around: int) -> str:
    """Responses per second in the seconds before, of and after second ``around``:

    ``t=13s v1 150 | t=14s v1 42 v2 108 | t=15s v2 150``
    """
    seconds = report.timeline
    cells = []
    for i in range(max(0, around - 1), min(len(seconds), around + 2)):
        items = sorted(seconds[i].items(), key=lambda kv: _revision_order(kv[0]))
        served = " ".join(f"{versions.get(rev, rev)} {n}" for rev, n in items if n)
        cells.append(f"t={i}s {served or '-'}")
    return " | ".join(cells)
