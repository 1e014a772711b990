"""Kubernetes on the command line: ``install-crds``, ``manifests``, ``import``, and the
operator that ``serve --platform kubernetes`` runs (``serve_operator``).

The rollout commands (apply, get, status, history, promote, abort, retry, pause, resume,
undo, delete) take ``--platform kubernetes`` / ``--kubeconfig`` / ``--namespace`` like any
other option; ``cli.app.Where.backend`` then hands them a ``kube_backend.KubeBackend``
instead of the local server's client. Output and exit codes are the local ones.

    changeover install-crds [--operator] [--kubeconfig F]
    changeover manifests [--crds-only] [--image IMG] [--namespace NS] > changeover.yaml
    changeover import argo-rollout.yaml [-o yaml|json] [--strict]
    changeover serve --platform kubernetes [-n NS | --all-namespaces]
    changeover status web --platform kubernetes -n prod
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer

import changeover
from changeover import errors
from changeover.cli import app as app_mod

app = app_mod.app


def parse_bind(value: str) -> tuple[str, int] | None:
    """``--metrics-bind``: ``HOST:PORT`` (``[::1]:PORT`` for IPv6) or ``off``.

    >>> parse_bind("0.0.0.0:8090"), parse_bind("off")
    (('0.0.0.0', 8090), None)
    """
    if value == "off":
        return None
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise errors.SpecError.single(
            file="", path="--metrics-bind", message=f"expected HOST:PORT or off, got {value!r}"
        )
    return host, int(port)


def serve_operator(
    kubeconfig: str | None,
    namespace: str | None,
    lease_namespace: str | None,
    workers: int,
    *,
    argo: bool = False,
    metrics_bind: tuple[str, int] | None = ("127.0.0.1", 8090),
) -> None:
    from changeover.operator import runtime

    def ready(op: runtime.Operator) -> None:
        where = f"namespace {namespace}" if namespace else "all namespaces"
        app_mod.say(
            f"changeover operator leading as {op.identity}: watching Rollouts in {where}",
            style="green",
        )
        app_mod.say(f"  API server {op.client.conn.server}; Ctrl-C stops")
        sys.stdout.flush()

    app_mod.say("changeover operator starting (waiting for the leader lease)")
    code = runtime.run_serve(
        kubeconfig=kubeconfig,
        namespace=namespace,
        lease_namespace=lease_namespace,
        workers=workers,
        on_ready=ready,
        argo_rollouts=argo,
        metrics_bind=metrics_bind,
    )
    if code:
        app_mod.err_line("lost the leader lease: exiting so the replica restarts", style="red")
        raise typer.Exit(code)


# --- commands ---------------------------------------------------------------------------


@app.command("manifests")
def manifests(
    crds_only: Annotated[bool, typer.Option("--crds-only", help="Only the CRDs.")] = False,
    image: Annotated[str, typer.Option("--image", help="The operator's image.")] = (
        f"changeover:{changeover.__version__}"
    ),
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="Where the operator runs.")
    ] = "changeover-system",
    replicas: Annotated[int, typer.Option("--replicas", min=1)] = 2,
) -> None:
    """Print the CRDs, RBAC and operator Deployment as YAML for `kubectl apply -f -`."""
    from changeover.platforms.kubernetes import manifests as m

    docs = m.documents(crds_only=crds_only, namespace=namespace, image=image, replicas=replicas)
    sys.stdout.write(m.to_yaml(docs))


@app.command("install-crds")
def install_crds(
    kubeconfig: app_mod.KubeconfigOpt = None,
    operator: Annotated[
        bool, typer.Option("--operator", help="Also install RBAC and the operator Deployment.")
    ] = False,
    image: Annotated[str, typer.Option("--image")] = f"changeover:{changeover.__version__}",
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "changeover-system",
) -> None:
    """Install (or update) the Rollout and AnalysisTemplate CRDs in the cluster."""
    from changeover.platforms.kubernetes import install

    for line in asyncio.run(
        install.install(kubeconfig=kubeconfig, operator=operator, image=image, namespace=namespace)
    ):
        app_mod.say(line)


@app.command("import")
def import_(
    path: Annotated[str, typer.Argument(help="Argo Rollouts or Flagger manifests (file, dir, -).")],
    output: Annotated[str, typer.Option("--output", "-o", help="yaml or json.")] = "yaml",
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 2 if any field could not be carried over (or its meaning changed).",
        ),
    ] = False,
) -> None:
    """Convert Argo Rollouts Rollout/AnalysisTemplate and Flagger Canary manifests, and flagd
    flag definitions; every field that is not carried over is reported on stderr."""
    import yaml

    from changeover import importers

    result = importers.import_path(path)
    for note in result.notes:
        app_mod.err_line(str(note), style="yellow")
    if output == "json":
        sys.stdout.write(json.dumps(result.documents, indent=2) + "\n")
    else:
        sys.stdout.write("---\n".join(yaml.safe_dump(d, sort_keys=False) for d in result.documents))
    if strict and result.losses:
        raise typer.Exit(2)
