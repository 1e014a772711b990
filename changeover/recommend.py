"""Which rollout strategy fits a change: the decision tree behind ``changeover recommend``.

The tree is one pure function over yes/no answers, so the CLI's flags, the interactive
questionnaire and the tests all walk the very same branches::

    can old and new run side by side?   no  → recreate
    must it be proven on real traffic,
      with no user seeing its answers?   yes → shadow
    is some downtime acceptable?
      yes → is this a high-risk change?      yes → canary        no → rollingUpdate
      no  → is this a critical application?  yes → blueGreen
            no  → do you need to compare variants?   yes → abTest   no → blueGreen

The first two questions come first because they rule the others out: a single-writer
database or a schema migration forbids any overlap of versions, and a change that must
stay invisible cannot be canaried to real users. The rest is the tree teams already use
(see the design seeds).

Who calls it: ``cli`` (``recommend`` with ``--downtime-ok --high-risk ...`` calls
``from_flags``; without flags it calls ``interactive``). ``FLAGS`` lists the flags, their
``Answers`` field and help so the CLI can declare them without repeating the questions.

    >>> recommend(Answers(downtime_ok=True, high_risk=True)).strategy
    <Strategy.CANARY: 'canary'>
    >>> from_flags(no_side_by_side=True).strategy
    <Strategy.RECREATE: 'recreate'>
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.prompt import Confirm
from rich.syntax import Syntax
from rich.table import Table


class Strategy(StrEnum):
    """The spec's names for the strategies (``spec.strategy.<name>``)."""

    RECREATE = "recreate"
    ROLLING_UPDATE = "rollingUpdate"
    BLUE_GREEN = "blueGreen"
    CANARY = "canary"
    AB_TEST = "abTest"
    SHADOW = "shadow"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Strategy.RECREATE: "Recreate",
    Strategy.ROLLING_UPDATE: "Rolling update",
    Strategy.BLUE_GREEN: "Blue-green",
    Strategy.CANARY: "Canary",
    Strategy.AB_TEST: "A/B test",
    Strategy.SHADOW: "Shadow",
}


@dataclass(frozen=True)
class Answers:
    """What is known about the change. The defaults are the cautious reading of silence:
    versions can overlap, downtime is not acceptable, nothing special is asked for."""

    side_by_side: bool = True
    zero_exposure: bool = False
    downtime_ok: bool = False
    high_risk: bool = False
    critical: bool = False
    compare_variants: bool = False


@dataclass(frozen=True)
class Question:
    key: str  # the Answers field it fills
    text: str
    hint: str
    default: bool


QUESTIONS: dict[str, Question] = {
    q.key: q
    for q in (
        Question(
            "side_by_side",
            "Can the old and new versions run side by side?",
            "No if they share a single-writer volume, or the new one needs a schema "
            "migration the old one cannot live with.",
            True,
        ),
        Question(
            "zero_exposure",
            "Must the new version be tried on real traffic without any user seeing its answers?",
            "For example a new model whose outputs must be compared before anyone relies "
            "on them. Its requests must be safe to repeat (no writes, no charges).",
            False,
        ),
        Question(
            "downtime_ok",
            "Is some downtime or reduced capacity acceptable during the rollout?",
            "An internal tool at night may tolerate it; a public chat API usually does not.",
            False,
        ),
        Question(
            "high_risk",
            "Is this a high-risk change (new model, new dependency, large refactor)?",
            "High risk means you want a small share of users first and a quick way back.",
            False,
        ),
        Question(
            "critical",
            "Is this a critical application (an outage is an incident)?",
            "Critical services want an instant, all-or-nothing switch with the old "
            "version kept warm.",
            False,
        ),
        Question(
            "compare_variants",
            "Do you need to compare variants on users (a prompt, a model, a feature)?",
            "An A/B test keeps each user on one side so the two can be measured fairly.",
            False,
        ),
    )
}


# --- the tree -----------------------------------------------------------------------------

Ask = Callable[[Question], bool]


def walk(answer: Ask) -> tuple[Strategy, list[str]]:
    """Walk the tree, asking ``answer`` only the questions on the path taken.

    Returns the strategy and one reason per answer that led there, in order.
    """
    if not answer(QUESTIONS["side_by_side"]):
        return Strategy.RECREATE, [
            "The old and new versions cannot run side by side, so the old one must stop "
            "before the new one starts; pre/mid/post hooks carry the migration."
        ]
    reasons = ["The old and new versions can run side by side."]
    if answer(QUESTIONS["zero_exposure"]):
        return Strategy.SHADOW, [
            *reasons,
            "The change must be validated on real traffic with zero user exposure: a shadow "
            "gets a copy of live requests and its answers are thrown away.",
        ]
    if answer(QUESTIONS["downtime_ok"]):
        reasons.append("Some downtime or reduced capacity is acceptable.")
        if answer(QUESTIONS["high_risk"]):
            reasons.append(
                "The change is high-risk: a canary shows it to a small share of users first "
                "and steps back to 0% the moment its metrics go bad."
            )
            return Strategy.CANARY, reasons
        reasons.append(
            "The change is low-risk: a rolling update is the simplest way, needing only a "
            "few extra replicas and no traffic routing."
        )
        return Strategy.ROLLING_UPDATE, reasons
    reasons.append("Downtime is not acceptable.")
    if answer(QUESTIONS["critical"]):
        reasons.append(
            "The application is critical: blue-green checks the new version on a preview "
            "port, switches everyone at once and can switch back instantly."
        )
        return Strategy.BLUE_GREEN, reasons
    reasons.append("The application is not critical.")
    if answer(QUESTIONS["compare_variants"]):
        reasons.append(
            "You want to compare variants: an A/B test pins each user to one side by a "
            "stable hash, so the two can be measured against each other."
        )
        return Strategy.AB_TEST, reasons
    reasons.append(
        "No comparison is needed: blue-green gives a zero-downtime switch with the "
        "simplest rollback."
    )
    return Strategy.BLUE_GREEN, reasons


# --- what each strategy costs -------------------------------------------------------------

TRADEOFF_KEYS = ("downtime", "rollback speed", "risk", "cost")

TRADEOFFS: dict[Strategy, dict[str, str]] = {
    Strategy.RECREATE: {
        "downtime": "Yes: from the old version stopping until the new one is ready",
        "rollback speed": "Slow: another recreate, with the same downtime",
        "risk": "Every user meets the new version at once",
        "cost": "Lowest: one version's replicas at any time",
    },
    Strategy.ROLLING_UPDATE: {
        "downtime": "None with maxUnavailable 0; otherwise reduced capacity",
        "rollback speed": "Medium: a rolling update back, replica by replica",
        "risk": "Both versions serve during the update; a bug spreads as replicas turn over",
        "cost": "Low: maxSurge extra replicas for the duration",
    },
    Strategy.BLUE_GREEN: {
        "downtime": "None: one atomic switch",
        "rollback speed": "Instant: switch back while the old version is still up",
        "risk": "Everyone switches at once, after a check on the preview port",
        "cost": "High: two full sets of replicas until the old one scales down",
    },
    Strategy.CANARY: {
        "downtime": "None",
        "rollback speed": "Fast: the weight goes back to 0%",
        "risk": "Smallest blast radius: a few percent of users, gated step by step",
        "cost": "Moderate: canary replicas, metric analysis, a slower rollout",
    },
    Strategy.AB_TEST: {
        "downtime": "None",
        "rollback speed": "Fast: every user back to A",
        "risk": "The chosen share of users sees B for the whole test",
        "cost": "Moderate: both variants run for the test's duration, plus the analysis",
    },
    Strategy.SHADOW: {
        "downtime": "None",
        "rollback speed": "Nothing to roll back: no user saw the new version",
        "risk": "None for users, if mirrored requests are safe to repeat",
        "cost": "High: the shadow serves a copy of the mirrored traffic",
    },
}


# --- a spec to start from -----------------------------------------------------------------

_SPEC_HEAD = """\
apiVersion: changeover.dev/v1alpha1
kind: Rollout
metadata:
  name: my-service
spec:
  replicas: {replicas}
  template:
    command: ["python3", "examples/app.py", "--port", "$(PORT)", "--version", "v2"]
    readinessProbe:
      httpGet:
        path: /healthz
  service:
    port: 8080
  strategy:
"""

_STRATEGY_BLOCKS: dict[Strategy, str] = {
    Strategy.RECREATE: """\
    recreate:
      mid:
        command: ["python3", "migrate.py", "--to", "v2"]
        failurePolicy: Abort
""",
    Strategy.ROLLING_UPDATE: """\
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
""",
    Strategy.BLUE_GREEN: """\
    blueGreen:
      previewPort: 8090
      autoPromotionEnabled: false
      scaleDownDelaySeconds: 30s
""",
    Strategy.CANARY: """\
    canary:
      steps:
        - setWeight: 10
        - pause: {duration: 1m}
        - setWeight: 50
        - pause: {}
        - setWeight: 100
""",
    Strategy.AB_TEST: """\
    abTest:
      match:
        - headerName: x-variant
          headerValue:
            exact: b
      userKey:
        header: x-user-id
      weight: 50
      duration: 1h
""",
    Strategy.SHADOW: """\
    shadow:
      percentage: 50
      duration: 30m
""",
}


def example_yaml(strategy: Strategy) -> str:
    """A complete, valid Rollout using ``strategy``, ready to edit and apply."""
    replicas = 2 if strategy in (Strategy.RECREATE, Strategy.SHADOW) else 4
    return _SPEC_HEAD.format(replicas=replicas) + _STRATEGY_BLOCKS[strategy]


# --- the pure entry points ----------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    strategy: Strategy
    reasons: list[str]
    tradeoffs: dict[str, str]
    example_yaml: str
    answers: Answers = Answers()

    def to_json_dict(self) -> dict[str, Any]:
        """For ``changeover recommend -o json``."""
        return {
            "strategy": str(self.strategy),
            "label": self.strategy.label,
            "reasons": list(self.reasons),
            "tradeoffs": dict(self.tradeoffs),
            "exampleYaml": self.example_yaml,
            "answers": dataclasses.asdict(self.answers),
        }


def recommend(answers: Answers) -> Recommendation:
    """The strategy for ``answers``, with the reasons, the trade-offs and a spec to start."""
    strategy, reasons = walk(lambda q: bool(getattr(answers, q.key)))
    return Recommendation(
        strategy=strategy,
        reasons=reasons,
        tradeoffs=dict(TRADEOFFS[strategy]),
        example_yaml=example_yaml(strategy),
        answers=answers,
    )


@dataclass(frozen=True)
class Flag:
    """One CLI flag: ``--{name}``, which ``from_flags`` receives as ``param``."""

    name: str
    param: str
    help: str


FLAGS: tuple[Flag, ...] = (
    Flag("no-side-by-side", "no_side_by_side", "old and new versions cannot run together"),
    Flag("zero-exposure", "zero_exposure", "validate on real traffic; no user sees it"),
    Flag("downtime-ok", "downtime_ok", "some downtime or reduced capacity is acceptable"),
    Flag("high-risk", "high_risk", "the change is high-risk"),
    Flag("critical", "critical", "the application is critical"),
    Flag("compare-variants", "compare_variants", "you want to compare variants on users"),
)


def from_flags(
    *,
    no_side_by_side: bool = False,
    zero_exposure: bool = False,
    downtime_ok: bool = False,
    high_risk: bool = False,
    critical: bool = False,
    compare_variants: bool = False,
) -> Recommendation:
    """``changeover recommend --downtime-ok --high-risk``: flags default to the cautious
    answer, so no flags at all means blue-green (no downtime, nothing else known)."""
    return recommend(
        Answers(
            side_by_side=not no_side_by_side,
            zero_exposure=zero_exposure,
            downtime_ok=downtime_ok,
            high_risk=high_risk,
            critical=critical,
            compare_variants=compare_variants,
        )
    )


# --- the interactive wrapper --------------------------------------------------------------

AskFn = Callable[[str, bool], bool]


def interactive(console: Console, *, ask: AskFn | None = None) -> Recommendation:
    """Ask only the questions on the path the answers take, then show the recommendation.

    ``ask(prompt, default) -> bool`` defaults to a Rich yes/no prompt; tests pass a script.
    """

    def confirm(prompt: str, default: bool) -> bool:
        return Confirm.ask(prompt, default=default, console=console)

    asker = ask or confirm
    given: dict[str, bool] = {}

    def answer(question: Question) -> bool:
        console.print(f"[dim]{question.hint}[/dim]")
        given[question.key] = bool(asker(question.text, question.default))
        return given[question.key]

    walk(answer)
    # Unasked questions keep their defaults: they did not matter on this path.
    rec = recommend(Answers(**given))
    console.print()
    render(console, rec)
    return rec


def commented_yaml(rec: Recommendation) -> str:
    """The recommendation as a YAML file: the spec, with the strategy, the reasons and the
    trade-offs as comments above it, so ``recommend > rollout.yaml`` is ready to apply."""
    lines = [f"# Recommended: {rec.strategy.label} ({rec.strategy})"]
    lines += [f"# - {reason}" for reason in rec.reasons]
    lines += [f"# {key}: {rec.tradeoffs[key]}" for key in TRADEOFF_KEYS]
    return "\n".join(lines) + "\n" + rec.example_yaml


def render(console: Console, rec: Recommendation) -> None:
    """Strategy, reasons, a trade-offs table and a spec snippet."""
    reasons = "\n".join(f"• {reason}" for reason in rec.reasons)
    console.print(
        Panel(
            reasons,
            title=f"[bold]Recommended: {rec.strategy.label}[/bold] ({rec.strategy})",
            title_align="left",
            border_style="green",
        )
    )
    table = Table(box=box.SIMPLE_HEAD, show_header=True, title="Trade-offs", title_justify="left")
    table.add_column("", style="bold")
    table.add_column(rec.strategy.label)
    for key in TRADEOFF_KEYS:
        table.add_row(key.capitalize(), rec.tradeoffs[key])
    console.print(table)
    console.print("[bold]Start from this spec[/bold] (changeover apply -f rollout.yaml):")
    console.print(Syntax(rec.example_yaml, "yaml", theme="ansi_dark", background_color="default"))
