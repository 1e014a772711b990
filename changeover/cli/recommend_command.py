"""``changeover recommend``: which strategy fits a change (``changeover.recommend``).

The decision tree is imported when the command runs, so the CLI starts fast and works in
a build without it.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from changeover.cli import app as app_mod

app = app_mod.app


@app.command()
def recommend(
    no_side_by_side: Annotated[
        bool, typer.Option("--no-side-by-side", help="Old and new versions cannot run together.")
    ] = False,
    zero_exposure: Annotated[
        bool, typer.Option("--zero-exposure", help="Validate on real traffic; no user sees it.")
    ] = False,
    downtime_ok: Annotated[
        bool, typer.Option("--downtime-ok", help="Some downtime or reduced capacity is fine.")
    ] = False,
    high_risk: Annotated[
        bool, typer.Option("--high-risk", help="The change is high-risk.")
    ] = False,
    critical: Annotated[
        bool, typer.Option("--critical", help="The application is critical.")
    ] = False,
    compare_variants: Annotated[
        bool, typer.Option("--compare-variants", help="Compare variants on users.")
    ] = False,
    output: app_mod.OutputOpt = app_mod.Output.TABLE,
) -> None:
    """Which strategy fits your change: asks a few questions (or takes them as flags)."""
    module = app_mod.optional_module("changeover.recommend", "recommend")
    flags = {
        "no_side_by_side": no_side_by_side,
        "zero_exposure": zero_exposure,
        "downtime_ok": downtime_ok,
        "high_risk": high_risk,
        "critical": critical,
        "compare_variants": compare_variants,
    }
    # Flags, JSON output or no terminal to ask on: answer from the flags alone.
    asking = sys.stdin.isatty() and app_mod.is_terminal()
    if any(flags.values()) or output is app_mod.Output.JSON or not asking:
        if not asking:
            given = " ".join(f"--{k.replace('_', '-')}" for k, v in flags.items() if v)
            app_mod.err_line(
                "recommend: no terminal to ask on, so every question not given as a flag "
                f"took its default (flags given: {given or 'none'}; see --help)",
                style="yellow",
            )
        rec = module.from_flags(**flags)
        if output is app_mod.Output.JSON:
            app_mod.print_json(rec.to_json_dict())
        elif app_mod.is_terminal():
            module.render(app_mod.out(), rec)
        else:
            # Redirected to a file: the spec itself, reasons as comments, nothing cut.
            sys.stdout.write(module.commented_yaml(rec))
        return
    module.interactive(app_mod.out())
