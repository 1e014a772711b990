"""``dashboard``: where to see rollouts in a browser.

    changeover dashboard                         the local server's dashboard URL
    changeover dashboard --platform kubernetes [--kubeconfig F] [--context C] [-n NS | -A]
                         [--port 3101] [--token T]

On Kubernetes it runs the dashboard on this machine (``changeover.cluster_dashboard``),
reading and acting on the cluster with the user's kubeconfig, on 127.0.0.1 only, until
Ctrl-C. The token the page's actions need is generated per start (or given) and printed
on the terminal, never put into a URL (browser history and shared screens keep URLs).
"""

from __future__ import annotations

import secrets
import sys
from typing import Annotated

import typer

from changeover import server_registry
from changeover.cli import app as app_mod

app = app_mod.app
DEFAULT_PORT = 3101  # next to Argo Rollouts' dashboard (3100): both can run at once


@app.command()
def dashboard(
    server: app_mod.ServerOpt = None,
    platform: app_mod.PlatformOpt = app_mod.PlatformName.LOCAL,
    kubeconfig: app_mod.KubeconfigOpt = None,
    namespace: app_mod.NamespaceOpt = None,
    context: app_mod.ContextOpt = None,
    port: Annotated[
        int,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            help="Kubernetes: the port on 127.0.0.1 (0: any free one).",
        ),
    ] = DEFAULT_PORT,
    all_namespaces: Annotated[
        bool,
        typer.Option(
            "--all-namespaces",
            "-A",
            help="Kubernetes: start on the list of every namespace's rollouts (you must be "
            "allowed to list and watch Rollouts cluster-wide).",
        ),
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CHANGEOVER_DASHBOARD_TOKEN",
            help="Kubernetes: the token the page's actions need (default: a new one, printed).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Open rollouts in a browser: the local server's dashboard URL, or (--platform
    kubernetes) a dashboard of the cluster's rollouts served on 127.0.0.1 until Ctrl-C,
    acting with your kubeconfig's credentials."""
    if platform is not app_mod.PlatformName.KUBERNETES:
        target = server_registry.resolve(server=server, token=None)
        app_mod.say(f"{target.url}/dashboard/")
        where = target.token_source or "the token file `changeover serve` printed"
        app_mod.say(f"  (actions ask for the API token: {where})")
        return
    if token is not None and len(token) < 16:
        raise typer.BadParameter("at least 16 characters", param_hint="--token")
    from changeover import aio, cluster_dashboard
    from changeover.api import namespace_scope

    if namespace is not None and not namespace_scope.is_label(namespace):
        shown = namespace[:70]
        raise typer.BadParameter(
            f"expected {namespace_scope.LABEL_RULE}, got {shown!r}", param_hint="-n/--namespace"
        )

    chosen = token or secrets.token_urlsafe(24)

    def ready(started: cluster_dashboard.Started) -> None:
        app_mod.say(f"changeover dashboard on {started.url}/dashboard/", style="green")
        app_mod.say(f"  rollouts in {started.namespace} of {started.cluster}")
        if token is None:
            app_mod.say(f"  token for actions (sign in on the page): {chosen}")
        app_mod.say("  reads and actions use your kubeconfig's credentials; Ctrl-C stops")
        sys.stdout.flush()

    aio.run_fast(
        cluster_dashboard.serve(
            kubeconfig=kubeconfig,
            context=context,
            namespace=namespace,
            port=port,
            token=chosen,
            on_ready=ready,
            all_namespaces=all_namespaces,
        )
    )
