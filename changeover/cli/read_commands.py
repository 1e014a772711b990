"""Read commands: ``get``, ``status``, ``history``. Each takes ``-o json``.

``get NAME --watch`` is a Rich live view refreshed about four times a second until Ctrl-C
(exit 130, as any interrupted command) or, with ``--until-done``, until the rollout reaches
a terminal phase (exit 0 Healthy, 1 Aborted/Degraded). A server that goes away mid-watch is
shown, not fatal.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from changeover import errors
from changeover.cli import app as app_mod
from changeover.cli import render, render_flag, wait
from changeover.cli.backend import Backend

app = app_mod.app
JSON = dict[str, Any]
REFRESH_SECONDS = 0.25
EVENTS_SHOWN = 8


def _snapshot(client: Backend, name: str | None) -> tuple[RenderableType, JSON | None]:
    """The view, and the status behind it when it is about one rollout."""
    if name is None:
        return render.rollouts_table(client.list_rollouts()), None
    if name == "flags":
        return render_flag.flags_table(client.list_flags()), None
    status = client.status(name)
    events = client.events(name, limit=EVENTS_SHOWN)
    if render_flag.is_flag(name):
        return render_flag.flag_view(status, events), status
    return render.rollout_view(status, events), status


@app.command()
def get(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Rollout name (all when omitted), flag/NAME for a flag, `flags` for all flags."
        ),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh live until Ctrl-C.")
    ] = False,
    until_done: Annotated[
        bool,
        typer.Option("--until-done", help="With --watch and NAME: stop at a terminal phase."),
    ] = False,
    output: app_mod.OutputOpt = app_mod.Output.TABLE,
    server: app_mod.ServerOpt = None,
    token: app_mod.TokenOpt = None,
    platform: app_mod.PlatformOpt = app_mod.PlatformName.LOCAL,
    kubeconfig: app_mod.KubeconfigOpt = None,
    namespace: app_mod.NamespaceOpt = None,
    context: app_mod.ContextOpt = None,
) -> None:
    """Show rollouts: phase, step, traffic per revision, replicas, recent events."""
    if until_done and (name is None or not watch):
        raise errors.SpecError.single(
            file="", path="--until-done", message="needs --watch and a rollout NAME"
        )
    with app_mod.Where(server, token, platform, kubeconfig, namespace, context).backend() as client:
        if output is app_mod.Output.JSON:
            if name is None:
                app_mod.print_json(client.list_rollouts())
            elif name == "flags":
                app_mod.print_json(client.list_flags())
            else:
                doc = {**client.status(name), "events": client.events(name, limit=EVENTS_SHOWN)}
                app_mod.print_json(doc)
            return
        if not watch:
            app_mod.show(_snapshot(client, name)[0])
            return
        code = _watch(client, name, until_done=until_done)
    raise typer.Exit(code)


def _watch(client: Backend, name: str | None, *, until_done: bool) -> int:
    console = app_mod.out()
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while True:
                try:
                    view, last = _snapshot(client, name)
                except errors.TemporaryBackendError as exc:
                    live.update(Group(Text(str(exc), style="red"), Text("retrying…")))
                    time.sleep(1.0)
                    continue
                live.update(view)
                if until_done and last is not None and wait.is_terminal(last):
                    return 0 if last.get("phase") == "Healthy" else 1
                time.sleep(REFRESH_SECONDS)
    except KeyboardInterrupt:
        return 130  # the exit-code table: interrupted


@app.command()
def status(
    name: app_mod.NameArg,
    output: app_mod.OutputOpt = app_mod.Output.TABLE,
    server: app_mod.ServerOpt = None,
    token: app_mod.TokenOpt = None,
    platform: app_mod.PlatformOpt = app_mod.PlatformName.LOCAL,
    kubeconfig: app_mod.KubeconfigOpt = None,
    namespace: app_mod.NamespaceOpt = None,
    context: app_mod.ContextOpt = None,
) -> None:
    """One rollout's status (the JSON contract with -o json)."""
    with app_mod.Where(server, token, platform, kubeconfig, namespace, context).backend() as client:
        doc = client.status(name)
    if output is app_mod.Output.JSON:
        app_mod.print_json(doc)
        return
    app_mod.show(
        render_flag.flag_view(doc) if render_flag.is_flag(name) else render.rollout_view(doc)
    )


@app.command()
def history(
    name: app_mod.NameArg,
    output: app_mod.OutputOpt = app_mod.Output.TABLE,
    server: app_mod.ServerOpt = None,
    token: app_mod.TokenOpt = None,
    platform: app_mod.PlatformOpt = app_mod.PlatformName.LOCAL,
    kubeconfig: app_mod.KubeconfigOpt = None,
    namespace: app_mod.NamespaceOpt = None,
    context: app_mod.ContextOpt = None,
) -> None:
    """Kept revisions of a rollout, oldest first (what `undo --to-revision` can go to)."""
    with app_mod.Where(server, token, platform, kubeconfig, namespace, context).backend() as client:
        revisions = client.history(name)
    if output is app_mod.Output.JSON:
        app_mod.print_json(revisions)
        return
    if render_flag.is_flag(name):
        app_mod.show(render_flag.history_table(revisions))
        return
    app_mod.show(render.history_table(revisions))
