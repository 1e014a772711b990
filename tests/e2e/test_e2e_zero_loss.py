"""Zero lost requests from v1 to v2, for every strategy that promises no downtime.

Given v1 Healthy behind the builtin router and a loopback client sending at least 200
requests/s through it for the whole rollout, when v2 is applied (and promoted whenever the
rollout waits for a human), then the client saw no failed request at all, the rollout ends
Healthy on revision 2 with every request weighted to it, and v2 is answering at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import wait_until
from e2e_load import BackgroundLoad, describe
from e2e_serve import Serve
from e2e_specs import example_rollout, with_version, write_rollout

pytestmark = pytest.mark.slow

RATE = 250.0  # offered; at least 200/s must be achieved for the run to count

CASES: dict[str, dict[str, Any]] = {
    "rollingUpdate": {"replicas": 3, "patch": {"maxSurge": 1, "maxUnavailable": 0}},
    "blueGreen": {
        "replicas": 2,
        "patch": {"autoPromotionEnabled": False, "scaleDownDelaySeconds": "1s"},
    },
    "canary": {
        "replicas": 2,
        "patch": {
            "maxSurge": "50%",
            "steps": [
                {"setWeight": 20},
                {"pause": {"duration": "1s"}},
                {"setWeight": 50},
                {"pause": {}},
                {"setWeight": 80},
                {"pause": {"duration": "1s"}},
            ],
        },
    },
    # No duration: the test runs until promote, as a human would end it.
    "abTest": {"replicas": 2, "patch": {"duration": None}},
    "shadow": {"replicas": 2, "patch": {"percentage": 50, "replicas": 1}},
}


def _headers(i: int) -> dict[str, str]:
    # A/B traffic: 200 users, and every tenth request asks for B by header.
    headers = {"x-user-id": f"user-{i % 200}"}
    if i % 10 == 0:
        headers["x-variant"] = "b"
    return headers


def _waiting_for_human(doc: dict[str, Any]) -> bool:
    pause = doc.get("pause") or {}
    return doc.get("phase") == "Paused" and not doc.get("userPaused") and pause.get("until") is None


@pytest.mark.parametrize("strategy", list(CASES))
def test_no_request_is_lost_from_v1_to_v2(serve: Serve, tmp_path: Path, strategy: str) -> None:
    case = CASES[strategy]
    name = f"zl-{strategy.lower()}"
    v1 = example_rollout(
        strategy,
        name=name,
        version="v1",
        mark=serve.mark,
        replicas=case["replicas"],
        strategy_patch=case["patch"],
    )
    spec = write_rollout(tmp_path / "rollout.yaml", v1)
    assert serve.apply(spec).code == 0
    ready = serve.wait_phase(name, "Healthy", stableRevision=1)
    endpoint = ready["endpoint"]

    headers_fn = _headers if strategy == "abTest" else None
    with BackgroundLoad(endpoint, rate=RATE, headers_fn=headers_fn) as load:
        load.wait_for("1", 200)

        write_rollout(spec, with_version(v1, "v2"))
        applied = serve.apply(spec)
        assert applied.code == 0, str(applied)

        promotions = 0

        def finished() -> bool:
            nonlocal promotions
            doc = serve.api_status(name)
            if doc["phase"] == "Healthy" and doc["stableRevision"] == 2:
                return True
            assert doc["phase"] in ("Progressing", "Paused"), doc
            if _waiting_for_human(doc) and doc.get("canaryRevision") == 2:
                result = serve.cli("promote", name)
                assert result.code == 0, str(result)
                promotions += 1
            return False

        wait_until(finished, within=120, what=f"{name} Healthy on revision 2", interval=0.2)
        # v2 carries the traffic at the end, and keeps answering while the old side drains.
        load.wait_for("2", 300)
        report = load.stop()

    assert report.failures == 0, describe(report)
    assert report.rate_per_s >= 200, describe(report)
    assert report.by_revision.get("1", 0) > 0 and report.by_revision.get("2", 0) >= 300
    if strategy in ("blueGreen", "canary", "abTest", "shadow"):
        assert promotions >= 1

    final = serve.status(name)
    assert final["phase"] == "Healthy"
    assert final["stableRevision"] == 2
    assert final["canaryRevision"] is None
    assert final["weights"] == {"2": 100}
