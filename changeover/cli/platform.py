"""Which platform a CLI command talks to: the local server (default) or a Kubernetes
cluster (``--platform kubernetes``, or ``CHANGEOVER_PLATFORM=kubernetes``).

``cli.kube_commands`` adds the options to the commands and sets ``TARGET`` for the command's
duration; ``cli.app.client`` asks ``kube_client()`` first. Kept import-light: every CLI
start imports it.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from changeover.cli import api_client as client_mod


@dataclass(frozen=True)
class KubeTarget:
    kubeconfig: str | None
    namespace: str | None


TARGET: contextvars.ContextVar[KubeTarget | None] = contextvars.ContextVar(
    "changeover_kube_target", default=None
)


def kube_client() -> client_mod.Client | None:
    """A cluster client when the command runs with ``--platform kubernetes``, else None."""
    target = TARGET.get()
    if target is None:
        return None
    from changeover.cli import kube_client as kube_client_mod

    return kube_client_mod.KubeCliClient(target.kubeconfig, target.namespace)
