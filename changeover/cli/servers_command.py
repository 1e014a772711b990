"""``changeover servers``: the servers this CLI knows (servers.json, see ``server_registry``).

    changeover servers                  list them: current, URL, live or gone, PID, state dir
    changeover servers use URL          make URL the current server
    changeover servers forget URL       remove URL (``--gone``: every server that is gone)

As ``kubectl config get-contexts / use-context / delete-context``. ``serve`` records itself
and becomes current when it starts.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from changeover import errors, server_registry
from changeover.cli import app as app_mod

servers_app = typer.Typer(
    cls=app_mod.ErrorMappingGroup,
    help="List, switch and forget the servers this CLI talks to.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app_mod.app.add_typer(servers_app, name="servers")


@servers_app.callback()
def _list(ctx: typer.Context, output: app_mod.OutputOpt = app_mod.Output.TABLE) -> None:
    """List the recorded servers (* marks the current one)."""
    if ctx.invoked_subcommand is not None:
        return
    current = server_registry.current_url()
    rows = [(r, server_registry.is_live(r)) for r in server_registry.servers()]
    if output is app_mod.Output.JSON:
        app_mod.print_json(
            {
                "current": current,
                "servers": [
                    {
                        **r.as_json(),
                        "current": server_registry.normalize_url(r.url) == current,
                        "live": up,
                    }
                    for r, up in rows
                ],
            }
        )
        return
    if not rows:
        app_mod.err_line(
            f"no servers recorded in {server_registry.config_path()}: run `changeover serve`"
        )
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("CURRENT", "URL", "STATE", "PID", "STATE DIR"):
        table.add_column(column)
    for record, up in rows:
        mark = "*" if server_registry.normalize_url(record.url) == current else ""
        state = Text("live", style="green") if up else Text("gone", style="red")
        table.add_row(mark, record.url, state, str(record.pid or "-"), record.state_dir or "-")
    app_mod.show(table)


@servers_app.command("use")
def use(url: Annotated[str, typer.Argument(help="A recorded server URL.")]) -> None:
    """Make URL the current server."""
    chosen = server_registry.use_server(url)
    record = server_registry.find_server(chosen)
    gone = record is not None and not server_registry.is_live(record)
    app_mod.say(f"current server: {chosen}" + (" (it is not running now)" if gone else ""))


@servers_app.command("forget")
def forget(
    url: Annotated[str | None, typer.Argument(help="A recorded server URL.")] = None,
    gone: Annotated[
        bool, typer.Option("--gone", help="Forget every recorded server that is not running.")
    ] = False,
) -> None:
    """Remove a server from the list (it keeps running, if it does)."""
    if (url is None) == (not gone):
        raise errors.SpecError.single(
            file="", path="URL", message="give a server URL or --gone (not both)"
        )
    urls = (
        [url]
        if url is not None
        else [r.url for r in server_registry.servers() if not server_registry.is_live(r)]
    )
    for one in urls:
        app_mod.say(f"forgot {server_registry.forget_server(one)}")
    if not urls:
        app_mod.say("every recorded server is running: nothing to forget")
