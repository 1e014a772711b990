"""Flag resources keep their revisions on the cluster: the operator records each
generation's spec in ``status.history``, ``changeover history flag/NAME --platform
kubernetes`` lists them as the local platform does, and ``undo`` writes one back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from k8s_flags import cli, cli_ok, flag_status, kubectl_changeover
from k8s_helpers import Kube, eventually

from changeover.kube import client as kube
from changeover.operator.flag_commands import KubeFlags
from changeover.operator.runtime import Operator

JSON = dict[str, Any]
ROW_KEYS = {"revision", "createdAt", "current", "enabled", "split", "changes"}


def banner(weight: int, *, default: str = "old", steps: list[JSON] | None = None) -> JSON:
    spec: JSON = {
        "type": "string",
        "variants": {"old": "v1", "new": "v2"},
        "defaultVariant": default,
        "split": [{"variant": "new", "weight": weight}],
    }
    if steps is not None:
        spec["rollout"] = {"variant": "new", "steps": steps}
    return {
        "apiVersion": "changeover.dev/v1alpha1",
        "kind": "Flag",
        "metadata": {"name": "banner"},
        "spec": spec,
    }


async def kept(k: Kube, *revisions: int) -> JSON:
    """The Flag's status once the operator kept ``revisions``."""
    return await eventually(
        lambda: flag_status(k, "banner"),
        lambda s: [e.get("revision") for e in s.get("history") or []] == list(revisions),
        what=f"revisions {revisions} kept",
    )


async def history(k: Kube) -> list[JSON]:
    rows: list[JSON] = json.loads(await cli_ok(k.namespace, "history", "flag/banner", "-o", "json"))
    return rows


async def test_history_and_undo_of_a_flag_through_the_cli(
    kube_: Kube, operator: Operator, tmp_path: Path
) -> None:
    k = kube_
    path = tmp_path / "banner.yaml"

    async def apply(doc: JSON) -> str:
        path.write_text(json.dumps(doc))  # JSON is YAML
        return await cli_ok(k.namespace, "apply", "-f", str(path))

    assert "flag/banner created (revision 1)" in await apply(banner(10))
    await kept(k, 1)
    assert "flag/banner updated (revision 2)" in await apply(banner(40))
    await kept(k, 1, 2)
    assert "flag/banner updated (revision 3)" in await apply(banner(40, default="new"))
    await kept(k, 1, 2, 3)

    rows = await history(k)
    assert all(set(r) == ROW_KEYS for r in rows)
    assert [(r["revision"], r["current"], r["split"], r["changes"]) for r in rows] == [
        (1, False, {"new": 10}, []),
        (2, False, {"new": 40}, ["split"]),
        (3, True, {"new": 40}, ["defaultVariant"]),
    ]
    table = await cli_ok(k.namespace, "history", "flag/banner")
    assert "REVISION" in table and "new 40%" in table and "current" in table

    # undo: the revision before the current one, written back as revision 4; as a new
    # apply, it turns a flag that was turned off on again.
    await cli_ok(k.namespace, "abort", "flag/banner")
    out = await cli_ok(k.namespace, "undo", "flag/banner")
    assert "flag/banner rolled back" in out
    obj = await k.client.get(kube.FLAGS, "banner", namespace=k.namespace)
    assert (obj["spec"]["defaultVariant"], obj["spec"]["split"]) == (
        "old",
        [{"variant": "new", "weight": 40}],
    )
    assert obj["metadata"]["generation"] == 4
    await kept(k, 1, 2, 3, 4)
    doc = json.loads(await cli_ok(k.namespace, "status", "flag/banner", "-o", "json"))
    assert (doc["revision"], doc["enabled"], doc["phase"]) == (4, True, "Healthy")
    rows = await history(k)
    assert [(r["revision"], r["current"]) for r in rows][-2:] == [(3, False), (4, True)]

    # A revision not kept is refused, naming the kept ones; nothing is written.
    code, _, err = await asyncio.to_thread(
        cli, k.namespace, "undo", "flag/banner", "--to-revision", "9"
    )
    assert code == 1 and "flag 'banner' has no revision 9 (kept: 1, 2, 3, 4)" in err
    code, _, err = await asyncio.to_thread(
        cli, k.namespace, "undo", "flag/banner", "--to-revision", "4"
    )
    assert code == 1 and "already the current one" in err
    assert (await k.client.get(kube.FLAGS, "banner", namespace=k.namespace))["metadata"][
        "generation"
    ] == 4

    # kubectl's dialect goes to the same command.
    await kubectl_changeover("undo", "flag", "banner", "--to-revision", "1", "-n", k.namespace)
    obj = await k.client.get(kube.FLAGS, "banner", namespace=k.namespace)
    assert obj["spec"]["split"] == [{"variant": "new", "weight": 10}]
    await kept(k, 1, 2, 3, 4, 5)


async def test_a_walked_flags_history_survives_commands_and_undo_retries_on_conflict(
    kube_: Kube, operator: Operator
) -> None:
    """The walk's commands (written to the status) keep the history, and an undo whose
    read is overtaken by a status write (the operator's, or a user's) reads again."""
    k = kube_
    flags = KubeFlags(k.client, namespace=k.namespace)
    await k.create(kube.FLAGS, banner(100, steps=[{"setWeight": 20}, {"pause": {}}]))
    await kept(k, 1)
    await k.update(
        kube.FLAGS, "banner", lambda f: f["spec"]["rollout"]["steps"].insert(0, {"setWeight": 5})
    )
    await eventually(
        lambda: flag_status(k, "banner"),
        lambda s: s.get("observedGeneration") == 2 and s.get("phase") == "Paused",
        what="revision 2 paused at 20%",
    )
    await flags.pause("banner")
    await flags.abort("banner")
    await flags.retry("banner")  # retry starts the walk again: a fresh rollout status
    # Had a command dropped the history, the operator could keep only the current spec.
    await kept(k, 1, 2)

    real_replace = k.client.replace
    raced: list[bool] = []

    async def replace_after_a_status_write(res, body, **kw):  # type: ignore[no-untyped-def]
        if res is kube.FLAGS and kw.get("sub") is None and not raced:
            raced.append(True)
            await flags.pause("banner")  # the status changes between read and write
        return await real_replace(res, body, **kw)

    k.client.replace = replace_after_a_status_write  # type: ignore[method-assign]
    try:
        doc = await flags.undo("banner")
    finally:
        k.client.replace = real_replace  # type: ignore[method-assign]
    assert raced and (doc["undoneTo"], doc["newRevision"]) == (1, 3)
    # revision 3 is revision 1's spec: its walk starts from the first step again.
    st = await eventually(
        lambda: flag_status(k, "banner"),
        lambda s: s.get("observedGeneration") == 3 and s.get("phase") == "Paused",
        what="revision 3 walked to its pause",
    )
    assert st["rollout"]["weight"] == 20 and not st["rollout"]["userPaused"]
    assert [e["revision"] for e in st["history"]] == [1, 2, 3]
