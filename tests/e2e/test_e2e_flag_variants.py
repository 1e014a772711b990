"""A flag rollout judged variant against variant, under load: a real ``changeover serve``,
the real builtin router (in its own process) evaluating the flag per request, and real
replicas of examples/flag_app.py taking the variant from the router's header.

Both variants run in the one revision of Rollout ``web``; the analysis compares the
error rate of the variant being rolled out with the default variant's (``variant:
{flag, name, against}``). ``new`` is as healthy as ``old``: promoted. ``broken`` (its code
path answers 500) errs more than ``old``: the flag is turned off.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import EXAMPLES, metric_sum
from e2e_load import BackgroundLoad, describe
from e2e_serve import Serve
from e2e_specs import checkout_flag, example_rollout, write_rollout

pytestmark = pytest.mark.slow


def judged(variant: str) -> dict[str, Any]:
    """An analysis step: ``variant``'s error rate at most 5 points above ``old``'s."""
    scope = {"flag": "checkout", "name": variant, "against": "old"}
    metric = {
        "name": f"{variant}-vs-old",
        "interval": "2s",
        "count": 3,
        "failureLimit": 0,
        "consecutiveErrorLimit": 10,  # no traffic on a variant yet is an Error
        "successCondition": "result <= 0.05",
        "provider": {
            "builtin": {"metric": "error-rate", "variant": scope, "window": "6s", "minRequests": 5}
        },
    }
    return {"analysis": {"metrics": [metric]}}


def flag_doc(variant: str) -> dict[str, Any]:
    return checkout_flag(
        variant,
        [{"setWeight": 40}, judged(variant), {"setWeight": 100}],
        router={"rollout": "web", "header": "x-flag-checkout"},
        requestContext={"targetingKey": {"header": "x-user"}},
        rollout={"target": "web"},
    )


def test_variant_judged_against_the_default_promoted_then_a_bad_one_turned_off(
    serve: Serve, tmp_path: Path
) -> None:
    web = example_rollout("canary", name="web", version="v1", mark=serve.mark, replicas=1)
    template = web["spec"]["template"]
    template["command"] = [sys.executable, str(EXAMPLES / "flag_app.py")]
    template["env"].update({"FLAG_HEADER": "x-flag-checkout", "APP_VERSION": "v1"})
    assert serve.apply(write_rollout(tmp_path / "web.yaml", web), "--wait").code == 0
    url = serve.status("web")["endpoint"]
    flag = tmp_path / "flag.yaml"

    users = {"headers_fn": lambda i: {"x-user": f"user-{i % 997}"}}
    with BackgroundLoad(url, rate=60, **users) as load:  # type: ignore[arg-type]
        write_rollout(flag, flag_doc("new"))
        assert serve.apply(flag).code == 0
        done = serve.wait_flag("checkout", "Healthy", "Aborted", within=150)
        assert (done["phase"], done["split"]) == ("Healthy", {"new": 100}), done
        assert load.snapshot().failures == 0, describe(load.snapshot())
        events = serve.cli("get", "flag/checkout", check=True).stdout
        assert events.count("AnalysisPassed") == 1, events
        seen = serve.status("web")["variants"]["1"]["checkout"]
        assert seen["new"]["requests"] > 0 and seen["new"]["errors"] == 0, seen

        write_rollout(flag, flag_doc("broken"))
        assert serve.apply(flag).code == 0
        off = serve.wait_flag("checkout", "Healthy", "Aborted", within=150)
        assert (off["phase"], off["enabled"]) == ("Aborted", False), off
        assert off["rollout"]["weight"] == 40 and off["rollout"]["stepIndex"] == 1, off
        assert "turned off: analysis at step 2 failed" in off["message"], off
        failures_at_off = load.snapshot().failures
        assert failures_at_off > 0
        report = load.stop()

    # the router counted the 500s against "broken", not "old", in status and /metrics
    seen = serve.status("web")["variants"]["1"]["checkout"]
    assert seen["broken"]["errors"] > 0 and seen["broken"]["errorRate"] == 1.0, seen
    assert seen["old"]["errors"] == 0, seen
    samples = serve.metrics()
    name = "changeover_variant_requests_total"
    assert metric_sum(samples, name, flag="checkout", variant="broken", code="5xx") > 0
    assert metric_sum(samples, name, flag="checkout", variant="old", code="5xx") == 0
    print(f"500s while broken was on: {failures_at_off}; {describe(report)}")
