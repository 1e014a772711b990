"""Kubernetes on the command line: ``install-crds``, ``manifests``, ``import``, and the
``--platform kubernetes`` / ``--kubeconfig`` / ``--namespace`` options.

The options are added to the existing commands (apply, get, status, history, promote,
abort, retry, pause, resume, undo, delete, serve) by wrapping their callbacks, so the
command modules stay platform-blind: with ``--platform kubernetes`` a command runs with
``cli.platform.TARGET`` set and ``cli.app.client`` hands it a ``KubeCliClient``; ``serve``
runs the operator instead of the local server. Output and exit codes are the local ones.

    changeover install-crds [--operator] [--kubeconfig F]
    changeover manifests [--crds-only] [--image IMG] [--namespace NS] > changeover.yaml
    changeover import argo-rollout.yaml [-o yaml|json] [--strict]
    changeover serve --platform kubernetes [-n NS | --all-namespaces]
    changeover status web --platform kubernetes -n prod
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer

import changeover
from changeover import errors
from changeover.cli import app as app_mod
from changeover.cli import platform

app = app_mod.app


class PlatformName(StrEnum):
    LOCAL = "local"
    KUBERNETES = "kubernetes"


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

_PLATFORM_PARAMS = [
    inspect.Parameter(
        "platform_",
        inspect.Parameter.KEYWORD_ONLY,
        default=PlatformName.LOCAL,
        annotation=Annotated[
            PlatformName,
            typer.Option(
                "--platform",
                envvar="CHANGEOVER_PLATFORM",
                help="local (the changeover server) or kubernetes (Rollout resources).",
            ),
        ],
    ),
    inspect.Parameter(
        "kubeconfig", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=KubeconfigOpt
    ),
    inspect.Parameter(
        "namespace", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=NamespaceOpt
    ),
]
_SERVE_PARAMS = [
    inspect.Parameter(
        "all_namespaces",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool,
            typer.Option(
                "--all-namespaces",
                "-A",
                help="Kubernetes: watch Rollouts in every namespace "
                "(the default unless --namespace is given).",
            ),
        ],
    ),
    inspect.Parameter(
        "lease_namespace",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--lease-namespace",
                help="Kubernetes: namespace of the leader-election Lease.",
                show_default=False,
            ),
        ],
    ),
    inspect.Parameter(
        "workers",
        inspect.Parameter.KEYWORD_ONLY,
        default=64,
        annotation=Annotated[
            int, typer.Option("--workers", min=1, help="Kubernetes: concurrent reconciles.")
        ],
    ),
]
_SERVE_PARAMS.append(
    inspect.Parameter(
        "metrics_bind",
        inspect.Parameter.KEYWORD_ONLY,
        default="127.0.0.1:8090",
        annotation=Annotated[
            str,
            typer.Option(
                "--metrics-bind",
                help="Kubernetes: HOST:PORT of the operator's /healthz, /readyz and /metrics "
                "('off': none).",
            ),
        ],
    )
)
_SERVE_PARAMS.append(
    inspect.Parameter(
        "argo_rollouts",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool,
            typer.Option(
                "--argo-rollouts",
                help="Kubernetes: also run Argo Rollouts' own Rollout resources "
                "(argoproj.io/v1alpha1), converted as `changeover import` does.",
            ),
        ],
    )
)
_WRAPPED = (
    "apply",
    "get",
    "status",
    "history",
    "promote",
    "abort",
    "retry",
    "pause",
    "resume",
    "undo",
    "delete",
)


def _with_platform(callback: Callable[..., Any], *, serve: bool) -> Callable[..., Any]:
    sig = inspect.signature(callback, eval_str=True)
    extra = _PLATFORM_PARAMS + (_SERVE_PARAMS if serve else [])

    @functools.wraps(callback)
    def wrapper(**kwargs: Any) -> Any:
        chosen = kwargs.pop("platform_")
        kubeconfig, namespace = kwargs.pop("kubeconfig"), kwargs.pop("namespace")
        if serve:
            every = kwargs.pop("all_namespaces")
            lease_ns, workers = kwargs.pop("lease_namespace"), kwargs.pop("workers")
            argo = kwargs.pop("argo_rollouts")
            bind = kwargs.pop("metrics_bind")
            if chosen is PlatformName.KUBERNETES:
                _serve_operator(
                    kubeconfig,
                    None if every or not namespace else namespace,
                    lease_ns,
                    workers,
                    argo=argo,
                    metrics_bind=parse_bind(bind),
                )
                return None
        if chosen is PlatformName.LOCAL:
            return callback(**kwargs)
        token = platform.TARGET.set(platform.KubeTarget(kubeconfig, namespace))
        try:
            return callback(**kwargs)
        finally:
            platform.TARGET.reset(token)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values()]
    wrapper.__signature__ = sig.replace(parameters=[*params, *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*params, *extra]}
    return wrapper


def register_platform_options() -> None:
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__ if info.callback else "")
        if info.callback is None or getattr(info.callback, "_platform_wrapped", False):
            continue
        if name in _WRAPPED or name == "serve":
            info.callback = _with_platform(info.callback, serve=name == "serve")
            info.callback._platform_wrapped = True  # type: ignore[attr-defined]


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


def _serve_operator(
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
    kubeconfig: KubeconfigOpt = None,
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

    from changeover.spec import importers

    result = importers.import_path(path)
    for note in result.notes:
        app_mod.err_line(str(note), style="yellow")
    if output == "json":
        sys.stdout.write(json.dumps(result.documents, indent=2) + "\n")
    else:
        sys.stdout.write("---\n".join(yaml.safe_dump(d, sort_keys=False) for d in result.documents))
    if strict and result.losses:
        raise typer.Exit(2)
