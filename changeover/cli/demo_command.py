"""``changeover demo``: a live canary and a blue-green switch (``changeover.demo``).

The demo is imported when the command runs, so the CLI starts fast and works in a build
without it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from changeover.cli import app as app_mod

app = app_mod.app


@app.command()
def demo(
    fast: Annotated[
        bool,
        typer.Option(
            "--fast",
            envvar="CHANGEOVER_DEMO_FAST",
            help="Short pauses: the whole demo in under a minute (for tests).",
        ),
    ] = False,
) -> None:
    """A live canary, then a blue-green switch and back, on this machine under steady load."""
    module = app_mod.optional_module("changeover.demo", "the demo")
    result = module.run(fast=fast)
    if isinstance(result, int) and result:
        raise typer.Exit(result)
