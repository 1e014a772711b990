"""Flag custom resources on the test cluster, evaluated over OFREP by the operator's flag
endpoint, with the real OpenFeature SDK and its OFREP provider as the client.

Buckets (crc32 mod 100, see tests/flags): bob 4, trent 18, erin 22, alice 35, judy 99.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from k8s_helpers import Kube, eventually
from openfeature import api as openfeature
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import Reason

from changeover.kube import client as kube
from changeover.operator.flag_endpoint import FlagEndpoint

USERS = ["bob", "trent", "erin", "alice", "judy"]


def flag(weight: int, **more: Any) -> dict[str, Any]:
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Flag",
        "metadata": {"name": "checkout"},
        "spec": {
            "key": "newCheckout",
            "type": "string",
            "variants": {"old": "v1", "new": "v2"},
            "defaultVariant": "old",
            "split": [{"variant": "new", "weight": weight}],
            **more,
        },
    }


async def test_flag_resources_served_over_ofrep_follow_their_changes(kube_: Kube) -> None:
    await kube_.create(kube.FLAGS, flag(20))
    token = secrets.token_urlsafe(16)
    endpoint = FlagEndpoint(kube_.client, namespace=kube_.namespace, token=token)
    port = await endpoint.start("127.0.0.1", 0)
    openfeature.set_provider(
        OFREPProvider(
            f"http://127.0.0.1:{port}",
            headers_factory=lambda: {"Authorization": f"Bearer {token}"},
        )
    )
    client = openfeature.get_client()

    def variants() -> dict[str, str]:
        return {
            u: client.get_string_value("newCheckout", "fallback", EvaluationContext(u))
            for u in USERS
        }

    async def seen() -> dict[str, str]:
        return await asyncio.to_thread(variants)

    try:
        at_20 = {"bob": "v2", "trent": "v2", "erin": "v1", "alice": "v1", "judy": "v1"}
        await eventually(seen, lambda v: v == at_20, what="the flag at 20%")

        await kube_.update(
            kube.FLAGS, "checkout", lambda f: f["spec"]["split"][0].update(weight=40)
        )
        at_40 = {**at_20, "erin": "v2", "alice": "v2"}
        await eventually(seen, lambda v: v == at_40, what="the flag at 40%")

        await kube_.update(kube.FLAGS, "checkout", lambda f: f["spec"].update(enabled=False))
        await eventually(seen, lambda v: set(v.values()) == {"v1"}, what="the flag off")
        off = await asyncio.to_thread(
            client.get_string_details, "newCheckout", "x", EvaluationContext("bob")
        )
        assert off.reason == Reason.DISABLED

        # a Flag the model refuses is left out; the others keep answering
        bad = flag(20)
        bad["metadata"]["name"] = "broken"
        bad["spec"]["key"] = "broken"
        bad["spec"]["defaultVariant"] = "gone"
        await kube_.create(kube.FLAGS, bad)
        await asyncio.sleep(1)
        missing = await asyncio.to_thread(
            client.get_string_details, "broken", "fallback", EvaluationContext("bob")
        )
        assert missing.value == "fallback" and missing.error_code is not None
        assert (await seen())["bob"] == "v1"

        await kube_.client.delete(kube.FLAGS, "checkout", namespace=kube_.namespace)
        await eventually(
            seen, lambda v: set(v.values()) == {"fallback"}, what="the deleted flag gone"
        )
    finally:
        openfeature.shutdown()
        await endpoint.close()
