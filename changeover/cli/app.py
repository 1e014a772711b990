"""The Typer application, its shared options, and the one place errors become exit codes.

Command modules (``cli.*_command`` and ``cli.*_commands``) register on ``app``; ``cli.main``
imports them and runs it. ``ErrorMappingGroup`` wraps every command so that
no traceback ever reaches a user:

    SpecError              every problem as ``file: path: message``     exit 2
    other ChangeoverError  ``error: <message>``                          exit 1
    anything else          ``internal error: ...`` + a hint about --debug exit 1
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from dataclasses import dataclass
from enum import StrEnum
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

import changeover
from changeover import errors, server_registry
from changeover.cli import api_client
from changeover.cli.backend import Backend


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

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _flags_take_no_value(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _flags_take_no_value(self, ctx)
        super().format_help(ctx, formatter)


def _flags_take_no_value(command: Any, ctx: Any) -> None:
    """Help shows ``--wait``, not ``--wait <bool>``: an on/off flag takes no value (Typer
    gives every option a type label, flags included)."""
    for param in command.get_params(ctx):
        # Duck-typed: Typer ships its own copy of click's classes.
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


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


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"changeover {changeover.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of internal errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
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
NameArg = Annotated[
    str, typer.Argument(help="Rollout name, or flag/NAME for a flag.", show_default=False)
]


class PlatformName(StrEnum):
    LOCAL = "local"
    KUBERNETES = "kubernetes"


PlatformOpt = Annotated[
    PlatformName,
    typer.Option(
        "--platform",
        envvar="CHANGEOVER_PLATFORM",
        help="local (the changeover server) or kubernetes (Rollout resources).",
    ),
]
KubeconfigOpt = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).",
        show_default=False,
    ),
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        envvar="CHANGEOVER_NAMESPACE",
        help="Kubernetes namespace (default: the kubeconfig context's).",
        show_default=False,
    ),
]

ContextOpt = Annotated[
    str | None,
    typer.Option(
        "--context",
        envvar="CHANGEOVER_KUBE_CONTEXT",
        help="Kubeconfig context (default: the kubeconfig's current context).",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class Where:
    """Where a rollout command acts: its ``--server``/``--token`` (the local server) and
    ``--platform``/``--kubeconfig``/``--namespace``/``--context`` (a cluster) options, as
    given."""

    server: str | None
    token: str | None
    platform: PlatformName
    kubeconfig: str | None
    namespace: str | None
    context: str | None = None

    def backend(self) -> Backend:
        """The one place the platform is chosen: the local server's API, or Rollout
        resources in the cluster (imported only then: it pulls in the Kubernetes client)."""
        if self.platform is PlatformName.KUBERNETES:
            from changeover.cli import kube_backend

            return kube_backend.KubeBackend(self.kubeconfig, self.namespace, context=self.context)
        return client(self.server, self.token)


def client(server: str | None, token: str | None) -> api_client.Client:
    """The local server's API client (the commands that exist only locally use it)."""
    target = server_registry.resolve(server=server, token=token)
    if target.note:
        err_line(target.note, style="yellow")
    return api_client.Client(target)


def optional_module(module: str, what: str) -> ModuleType:
    """Import ``module`` when its command runs; a clear error if this build lacks it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise errors.PermanentBackendError(f"{what} is not available in this build") from exc


# --- output ---------------------------------------------------------------------------------


# Where output is not a terminal (a pipe, a file, a CI log) no line is cut or wrapped: a
# table row, an endpoint or a YAML line stays whole whatever its length.
UNBOUNDED_WIDTH = 100_000


def console_for(file: Any) -> Console:
    """A Console on ``file``: the terminal's width on a terminal, unbounded elsewhere."""
    console = Console(file=file, highlight=False)
    if console.is_terminal:
        return console
    return Console(file=file, highlight=False, width=UNBOUNDED_WIDTH)


def is_terminal() -> bool:
    return Console(file=sys.stdout).is_terminal


def out() -> Console:
    # Built per call: CliRunner swaps sys.stdout between invocations.
    return console_for(sys.stdout)


def err() -> Console:
    return console_for(sys.stderr)


def show(renderable: Any) -> None:
    """Print a table or view on stdout; off a terminal without the padding Rich puts at
    the end of every row, so a file or a pipe gets lines as long as their content."""
    console = out()
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    lines = captured.get().splitlines()
    sys.stdout.write("".join(line.rstrip() + "\n" for line in lines))
    sys.stdout.flush()


def err_line(message: str, *, style: str = "") -> None:
    # Text, not markup: messages carry "[0].kind" and such, which Rich would eat.
    err().print(Text(message, style=style), soft_wrap=True)


def say(message: str, *, style: str = "") -> None:
    out().print(Text(message, style=style), soft_wrap=True)


def print_json(doc: Any) -> None:
    """Machine output: stdout only, plain JSON, nothing else on the stream."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()
