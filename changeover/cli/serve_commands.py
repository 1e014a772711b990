"""``serve`` (the local server process) and ``down`` (stop what a state dir runs).

``serve`` prepares the token, records the server in ``servers.json``
(``changeover.server_registry``) and hands over to ``changeover.local_server``, imported
when the command runs so the CLI starts fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from changeover import server_registry
from changeover.cli import app as app_mod

app = app_mod.app


@app.command()
def serve(
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            envvar="CHANGEOVER_STATE_DIR",
            help="Where state, logs and the API token live (default: ~/.local/share/changeover).",
            show_default=False,
        ),
    ] = None,
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT for the HTTP API.")
    ] = server_registry.DEFAULT_LISTEN,
    router_workers: Annotated[
        int,
        typer.Option(
            "--router-workers",
            min=1,
            help="Processes per builtin router, sharing its port (SO_REUSEPORT); "
            "for hosts with cores to spare.",
        ),
    ] = 1,
    down_on_exit: Annotated[
        bool,
        typer.Option(
            "--down-on-exit",
            help="For throw-away dev sessions: when serve stops, stop every router and "
            "replica too (as `changeover down` does). Without it they keep serving.",
        ),
    ] = False,
    platform: app_mod.PlatformOpt = app_mod.PlatformName.LOCAL,
    kubeconfig: app_mod.KubeconfigOpt = None,
    namespace: app_mod.NamespaceOpt = None,
    all_namespaces: Annotated[
        bool,
        typer.Option(
            "--all-namespaces",
            "-A",
            help="Kubernetes: watch Rollouts in every namespace "
            "(the default unless --namespace is given).",
        ),
    ] = False,
    lease_namespace: Annotated[
        str | None,
        typer.Option(
            "--lease-namespace",
            help="Kubernetes: namespace of the leader-election Lease.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Kubernetes: concurrent reconciles.")
    ] = 64,
    metrics_bind: Annotated[
        str,
        typer.Option(
            "--metrics-bind",
            help="Kubernetes: HOST:PORT of the operator's /healthz, /readyz and /metrics "
            "('off': none).",
        ),
    ] = "127.0.0.1:8090",
    argo_rollouts: Annotated[
        bool,
        typer.Option(
            "--argo-rollouts",
            help="Kubernetes: also run Argo Rollouts' own Rollout resources "
            "(argoproj.io/v1alpha1), converted as `changeover import` does.",
        ),
    ] = False,
) -> None:
    """Run the controller and the HTTP API until Ctrl-C. Routers and replicas run in
    processes of their own: they keep serving while serve is stopped or restarted, and
    the next serve on the same state dir adopts them (`changeover down` stops them)."""
    if platform is app_mod.PlatformName.KUBERNETES:
        from changeover.cli import kube_commands

        kube_commands.serve_operator(
            kubeconfig,
            None if all_namespaces or not namespace else namespace,
            lease_namespace,
            workers,
            argo=argo_rollouts,
            metrics_bind=kube_commands.parse_bind(metrics_bind),
        )
        return
    host, port = server_registry.parse_listen(listen)
    directory = (state_dir or server_registry.default_state_dir()).expanduser().resolve()
    token, token_file = server_registry.ensure_token(directory)
    runtime = importlib.import_module("changeover.local_server")

    def ready(url: str) -> None:
        # The real URL (a --listen port of 0 becomes the bound port) is what clients need;
        # a server on every address is recorded under its loopback URL.
        parts = urlsplit(server_registry.normalize_url(url))
        url = server_registry.url_for(parts.hostname or host, parts.port or port)
        server_registry.record_server(
            server_registry.ServerRecord(
                url=url, token_file=str(token_file), state_dir=str(directory), pid=os.getpid()
            )
        )
        app_mod.say(f"changeover API listening on {url}", style="green")
        app_mod.say(f"  token: {token_file} (mode 0600)  state: {directory}")
        app_mod.say(f"  OFREP (feature flags): {url}/ofrep/v1/, token {directory}/flags/token")
        then = "routers and replicas too" if down_on_exit else "routers and replicas keep serving"
        app_mod.say(
            f"  servers recorded in {server_registry.config_path()}; Ctrl-C stops serve ({then})"
        )
        sys.stdout.flush()

    def stopped(message: str) -> None:
        app_mod.say(message)
        sys.stdout.flush()

    runtime.serve(
        state_dir=directory,
        host=host,
        port=port,
        token=token,
        on_ready=ready,
        on_stopped=stopped,
        down_on_exit=down_on_exit,
        router_workers=router_workers,
    )


@app.command()
def down(
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            envvar="CHANGEOVER_STATE_DIR",
            help="The state dir whose services to stop (default: ~/.local/share/changeover).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Stop everything a state dir runs: its serve, routers, replicas and hooks. The
    rollouts stay stored: the next `changeover serve` starts them again."""
    directory = (state_dir or server_registry.default_state_dir()).expanduser().resolve()
    module = importlib.import_module("changeover.dataplane.down")
    report = module.run(directory)
    for line in report.lines():
        app_mod.say(line)
