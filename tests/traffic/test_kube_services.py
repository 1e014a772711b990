"""The Services a Kubernetes rollout points at revisions (``traffic.kubernetes.services``),
against an in-memory API with JSON merge-patch semantics: a Service the user made keeps its
own selector and only gains (then loses) the hash key, as under Argo Rollouts; one the
Rollout made is wholly its own. The test cluster runs the same through the operator
(tests/kubernetes/test_argo_meaning.py)."""

from __future__ import annotations

import copy
from typing import Any, cast

from changeover.kube import client as kube
from changeover.kube import names
from changeover.traffic.kubernetes import services
from changeover.traffic.kubernetes.base import RouterContext

JSON = dict[str, Any]
HASH = names.HASH_LABEL


def _merge(target: JSON, patch: JSON) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeApi:
    """Services only: get, create, merge-patch, list by one label."""

    def __init__(self) -> None:
        self.objects: dict[str, JSON] = {}

    async def get_or_none(self, res: Any, name: str, *, namespace: str | None = None) -> Any:
        obj = self.objects.get(name)
        return copy.deepcopy(obj) if obj is not None else None

    async def create(self, res: Any, body: JSON, *, namespace: str | None = None) -> JSON:
        name = body["metadata"]["name"]
        if name in self.objects:
            raise kube.Conflict(f"{name} exists")
        self.objects[name] = copy.deepcopy(body)
        return body

    async def patch(self, res: Any, name: str, body: JSON, **_: Any) -> JSON:
        _merge(self.objects[name], body)
        return copy.deepcopy(self.objects[name])

    async def list(
        self, res: Any, *, namespace: str | None = None, label_selector: str = ""
    ) -> JSON:
        key, _, value = label_selector.partition("=")
        items = [
            o for o in self.objects.values() if o["metadata"].get("labels", {}).get(key) == value
        ]
        return {"items": copy.deepcopy(items)}


ROLLOUT = {
    "apiVersion": "changeover.dev/v1alpha1",
    "kind": "Rollout",
    "metadata": {"name": "demo", "namespace": "ns", "uid": "u-1"},
}


def _services(api: FakeApi) -> services.Services:
    ctx = RouterContext(
        client=cast(kube.KubeClient, api),
        rollout=ROLLOUT,
        config={},
        stable_service="demo",
        canary_service="demo-canary",
        preview_service="",
        port=80,
        target_port=8080,
        hash_of=lambda rev: None,
        revision_of_hash=lambda h: None,
    )
    return services.Services(ctx)


async def test_an_adopted_service_keeps_its_selector_and_is_released() -> None:
    api = FakeApi()
    api.objects["demo"] = {
        "metadata": {"name": "demo", "namespace": "ns"},
        "spec": {"selector": {"app": "demo"}, "ports": [{"port": 80}]},
    }
    svc = _services(api)
    await svc.point("demo", "h1")
    assert api.objects["demo"]["spec"]["selector"] == {"app": "demo", HASH: "h1"}
    assert api.objects["demo"]["metadata"]["labels"] == {services.MANAGED_BY_LABEL: "demo"}
    await svc.point("demo", "h2")
    assert api.objects["demo"]["spec"]["selector"] == {"app": "demo", HASH: "h2"}
    await svc.point("demo", None)  # every revision's pods: the user's selector as written
    assert api.objects["demo"]["spec"]["selector"] == {"app": "demo"}
    await svc.point("demo", "h3")
    await services.release(cast(kube.KubeClient, api), "ns", "demo")
    assert api.objects["demo"]["spec"]["selector"] == {"app": "demo"}
    assert api.objects["demo"]["metadata"]["labels"] == {}


async def test_a_service_the_rollout_creates_is_its_own() -> None:
    api = FakeApi()
    svc = _services(api)
    await svc.point("demo-canary", "h1")
    made = api.objects["demo-canary"]
    assert made["spec"]["selector"] == {names.ROLLOUT_LABEL: "demo", HASH: "h1"}
    assert made["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    await _services(api).point("demo-canary", "h2")  # a fresh router reads it first
    assert made["spec"]["selector"] == {names.ROLLOUT_LABEL: "demo", HASH: "h2"}
    await services.release(cast(kube.KubeClient, api), "ns", "demo")
    assert made["spec"]["selector"] == {names.ROLLOUT_LABEL: "demo", HASH: "h2"}
