"""The pod template: what ``spec.template`` is when a rollout runs on Kubernetes.

How one spec carries both platforms: ``spec.template`` is *either* a process template
(``command``, ``env``, ``readinessProbe``: the local platform) *or* a Kubernetes
``PodTemplateSpec`` (``metadata`` + ``spec.containers``), and the shape decides which. We
chose the shape over a ``spec.platform: kubernetes`` switch because:

- a pod template is unmistakable (``spec.containers``) and so is a process template
  (``command``): a switch would only be one more field to keep in agreement with them,
  and one more way to write a contradictory document;
- the same document then means the same thing to ``changeover lint``, to the local
  server and to the operator; each platform refuses the other's kind with the field path
  and what it expected (``spec.template: a pod template runs on Kubernetes...``), at
  apply time, before anything runs;
- Argo Rollouts manifests (and what ``changeover import`` writes) already have this shape.

The pod spec itself stays a mapping: the API server validates the full PodSpec (and knows
its version's fields better than a copy of its schema would), so we check only what
changeover relies on: at least one container, each with a ``name`` and an ``image``.

Who uses it: ``spec.models`` (the template union), the Kubernetes platform (ReplicaSets,
hook Jobs), the importers.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class PodMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodTemplate(BaseModel):
    """A ``PodTemplateSpec``: ``{metadata: {labels, annotations}, spec: {containers: [...]}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metadata: PodMetadata = Field(default_factory=PodMetadata)
    spec: dict[str, Any]

    @field_validator("spec")
    @classmethod
    def _containers(cls, spec: dict[str, Any]) -> dict[str, Any]:
        containers = spec.get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("expected containers: a list of at least one container")
        for i, container in enumerate(containers):
            if not isinstance(container, dict):
                raise ValueError(f"containers[{i}]: expected a mapping")
            name, image = container.get("name"), container.get("image")
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"containers[{i}].name: expected a DNS label such as 'app'")
            if not isinstance(image, str) or not image:
                raise ValueError(f"containers[{i}].image: expected an image such as 'app:v2'")
        return spec

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def container_port(self) -> int | None:
        """The first container's first ``containerPort``: a Service's default targetPort."""
        for container in self.spec["containers"]:
            for port in container.get("ports") or []:
                if isinstance(port, dict) and isinstance(port.get("containerPort"), int):
                    return int(port["containerPort"])
        return None

    @property
    def image(self) -> str:
        return str(self.spec["containers"][0]["image"])


def looks_like_pod_template(value: object) -> bool:
    """The shape test behind the template union: a mapping with ``spec`` or ``metadata``
    (a pod template) rather than ``command`` (a process template)."""
    if isinstance(value, PodTemplate):
        return True
    return (
        isinstance(value, dict)
        and "command" not in value
        and ("spec" in value or "metadata" in value)
    )
