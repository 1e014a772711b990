"""``changeover lint PATH [-o json]``: check specs on this machine, without a server."""

from __future__ import annotations

from typing import Annotated

import typer

from changeover.cli import app as app_mod

app = app_mod.app


@app.command()
def lint(
    path: Annotated[str, typer.Argument(help="A spec file, a directory of them, or -.")],
    output: app_mod.OutputOpt = app_mod.Output.TABLE,
) -> None:
    """Check a spec without a server: every problem at once; exit 2 if any is an error."""
    from changeover import validation

    problems = validation.lint(path)
    failed = any(p.severity != "warning" for p in problems)
    if output is app_mod.Output.JSON:
        app_mod.print_json(
            {
                "ok": not failed,
                "problems": [
                    {"file": p.file, "path": p.path, "message": p.message, "severity": p.severity}
                    for p in problems
                ],
            }
        )
    else:
        for problem in problems:
            style = "yellow" if problem.severity == "warning" else "red"
            app_mod.err_line(str(problem), style=style)
        if not failed:
            app_mod.say(f"{path}: ok", style="green")
    if failed:
        raise typer.Exit(2)
