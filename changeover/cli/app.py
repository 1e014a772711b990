"""The Typer application, its shared options, and the one place errors become exit codes.

Command modules (``cli.reads``, ``cli.commands``, ``cli.serving``) register on ``app``;
``cli.main`` imports them and runs it. ``ErrorMappingGroup`` wraps every command so that
no traceback ever reaches a user:

    SpecError              every problem as ``file: path: message``     exit 2
    other ChangeoverError  ``error: <message>``                          exit 1
    anything else          ``internal error: ...`` + a hint about --debug exit 1
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from changeover import config, errors
from changeover.cli import client as client_mod
from changeover.cli import platform


class ErrorMappingGroup(typer.core.TyperGroup):
    # ctx: Any because the base class types it with Typer's private vendored Context.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except errors.SpecError as exc:
            for problem in exc.problems:
                err_line(str(problem), style="red" if problem.severity != "warning" else "yellow")
            raise typer.Exit(exc.exit_code) from None
        except errors.ChangeoverError as exc:
            err_line(f"error: {exc}", style="red")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_line("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            if _debug(ctx):
                traceback.print_exc()
            err_line(f"internal error: {type(exc).__name__}: {exc}", style="red")
            if not _debug(ctx):
                err_line("run again with `changeover --debug ...` to see the traceback")
            raise typer.Exit(1) from None


def _debug(ctx: Any) -> bool:
    return bool(ctx.params.get("debug")) or bool(os.environ.get("CHANGEOVER_DEBUG"))


app = typer.Typer(
    name="changeover",
    cls=ErrorMappingGroup,
    help="Progressive delivery for model and web services: canary, blue-green, A/B, shadow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of internal errors.")
    ] = False,
) -> None:
    """Progressive delivery for model and web services: canary, blue-green, A/B, shadow."""


# --- shared options --------------------------------------------------------------------------


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="CHANGEOVER_SERVER",
        help="API URL (default: the server `changeover serve` last recorded).",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="CHANGEOVER_TOKEN",
        help="API token (default: the token file recorded for the server).",
        show_default=False,
    ),
]
OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="table for people, json for scripts.")
]
NameArg = Annotated[str, typer.Argument(help="Rollout name.", show_default=False)]


def client(server: str | None, token: str | None) -> client_mod.Client:
    # --platform kubernetes (see cli.kube): Rollout resources instead of the local server.
    kube = platform.kube_client()
    if kube is not None:
        return kube
    return client_mod.Client(config.resolve(server=server, token=token))


# --- output ---------------------------------------------------------------------------------


def out() -> Console:
    # Built per call: CliRunner swaps sys.stdout between invocations.
    return Console(file=sys.stdout, highlight=False)


def err() -> Console:
    return Console(file=sys.stderr, highlight=False)


def err_line(message: str, *, style: str = "") -> None:
    # Text, not markup: messages carry "[0].kind" and such, which Rich would eat.
    err().print(Text(message, style=style), soft_wrap=True)


def say(message: str, *, style: str = "") -> None:
    out().print(Text(message, style=style), soft_wrap=True)


def print_json(doc: Any) -> None:
    """Machine output: stdout only, plain JSON, nothing else on the stream."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()
