"""What every Kubernetes router shares: the ``RouterContext`` it is built with and the
``Mesh`` protocol each data-plane module (istio, gateway_api, nginx_ingress, smi)
implements in terms of two Services, *stable* and *canary*.

Revisions never reach a mesh module: ``traffic.kubernetes.router.KubeRouter`` turns the
engine's revision-level calls (``set_weight({1: 80, 2: 20})``) into Service selectors
(``services``) plus a canary percentage for the mesh (``set_split(20)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from changeover import errors
from changeover.kube import client as kube
from changeover.spec import models

JSON = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class RouterContext:
    client: kube.KubeClient
    rollout: JSON  # the Rollout object (namespace, name, uid for owner references)
    config: JSON  # the router's settings under spec.traffic
    stable_service: str
    canary_service: str
    preview_service: str
    port: int
    target_port: int
    # The pod-template hash of a revision's ReplicaSet (None if it has none yet), and back.
    hash_of: Callable[[int], str | None]
    revision_of_hash: Callable[[str], int | None]
    # Canary-like strategies split between stable and canary Services; recreate and
    # rolling updates without a mesh send the stable Service to every pod.
    split: bool = True
    # Canary, A/B and shadow keep a canary Service; blue-green, recreate and rolling don't.
    with_canary_service: bool = True
    # False without ``spec.service``: the user's own Service selects every revision's pods
    # (Argo's basic canary) and the router creates or changes no Service.
    manage_services: bool = True
    managed: list[str] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return str(self.rollout["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.rollout["metadata"]["name"])

    def setting(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        value = self.config.get(key, default)
        if required and value in (None, ""):
            raise errors.PermanentBackendError(
                f"rollout {self.name}: spec.traffic needs {key} for this router"
            )
        return value


class Mesh(Protocol):
    """A data plane that splits between the stable and canary Services."""

    async def set_split(self, canary_weight: int) -> None:
        """``canary_weight`` percent to the canary Service, the rest to stable."""

    async def set_revisions(self, stable_hash: str | None, canary_hash: str | None) -> None:
        """Which pod-template hashes stable and canary are (Istio subsets need them)."""

    async def set_header_route(self, name: str, match: Sequence[models.RouteMatch]) -> None:
        """Requests matching any of ``match`` go to canary; an empty ``match`` removes."""

    async def set_mirror(
        self, name: str, percentage: int, match: Sequence[models.RouteMatch]
    ) -> None:
        """Copy ``percentage`` of (matching) requests to canary; 0 removes."""

    async def remove_managed_routes(self) -> None: ...

    async def verify_split(self, canary_weight: int) -> bool: ...


def string_match_regex(match: models.StringMatch) -> str:
    """A StringMatch as one regular expression (for data planes without prefix matches).

    >>> string_match_regex(models.StringMatch(prefix="beta"))
    '^beta.*'
    """
    import re

    if match.exact is not None:
        return f"^{re.escape(match.exact)}$"
    if match.prefix is not None:
        return f"^{re.escape(match.prefix)}.*"
    return match.regex or ".*"


def cookie_regex(name: str, value: models.StringMatch) -> str:
    """A Cookie header regex that finds cookie ``name`` with a matching value.

    >>> cookie_regex("variant", models.StringMatch(exact="b"))
    '^(.*?;\\\\s*)?variant=b(;.*)?$'
    """
    import re

    if value.exact is not None:
        inner = re.escape(value.exact)
    elif value.prefix is not None:
        inner = re.escape(value.prefix) + "[^;]*"
    else:
        inner = (value.regex or ".*").lstrip("^").rstrip("$")
    return f"^(.*?;\\s*)?{re.escape(name)}={inner}(;.*)?$"
