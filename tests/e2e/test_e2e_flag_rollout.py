"""A progressive flag rollout judged by analysis, under load: a real ``changeover serve``,
the real builtin router, and real replicas of examples/flag_app.py, an app that reads the
flag through the OpenFeature SDK only. Nobody promotes or turns anything off by hand.

The flag's ``new`` variant walks 25% → 100%, each step judged by the error-rate template on
the app's traffic: promoted. Then a ``broken`` variant (its code path answers 500) walks to
30%: the analysis fails, the flag is turned off, and the 500s stop.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import EXAMPLES, http_get, wait_until
from e2e_load import BackgroundLoad, describe
from e2e_serve import Serve
from e2e_specs import checkout_flag, example_rollout, write_rollout

pytestmark = pytest.mark.slow

JUDGED = [{"analysis": {"templates": [{"templateName": "error-rate"}]}}]


def flag_doc(variant: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return checkout_flag(variant, steps, rollout={"target": "web"})


def test_flag_rollout_promoted_by_analysis_then_a_bad_one_turned_off(
    serve: Serve, tmp_path: Path
) -> None:
    web = example_rollout("canary", name="web", version="v1", mark=serve.mark, replicas=1)
    token = (serve.state_dir / "flags" / "token").read_text().strip()
    template = web["spec"]["template"]
    template["command"] = [sys.executable, str(EXAMPLES / "flag_app.py")]
    template["env"].update({"OFREP_URL": serve.url, "OFREP_TOKEN": token, "APP_VERSION": "v1"})
    spec = write_rollout(tmp_path / "web.yaml", web)
    templates = EXAMPLES / "analysis-template.yaml"
    applied = serve.cli("apply", "-f", str(spec), "-f", str(templates), "--wait")
    assert applied.code == 0, str(applied)
    url = serve.status("web")["endpoint"]
    flag = tmp_path / "flag.yaml"

    with BackgroundLoad(url, rate=60) as load:
        good = flag_doc("new", [{"setWeight": 25}, *JUDGED, {"setWeight": 100}, *JUDGED])
        write_rollout(flag, good)
        assert serve.apply(flag).code == 0
        serve.wait_flag("checkout", "Progressing", "Paused", within=30)
        done = serve.wait_flag("checkout", "Healthy", "Aborted", within=150)
        assert (done["phase"], done["enabled"], done["split"]) == ("Healthy", True, {"new": 100})
        events = serve.cli("get", "flag/checkout", check=True).stdout
        assert events.count("AnalysisPassed") == 2, events
        assert load.snapshot().failures == 0, describe(load.snapshot())

        bad = flag_doc("broken", [{"setWeight": 30}, *JUDGED, {"setWeight": 100}])
        write_rollout(flag, bad)
        assert serve.apply(flag).code == 0
        serve.wait_flag("checkout", "Progressing", "Paused", within=30)
        off = serve.wait_flag("checkout", "Healthy", "Aborted", within=120)
        assert (off["phase"], off["enabled"]) == ("Aborted", False), off
        assert "turned off: analysis at step 2 failed" in off["message"], off
        # it never went past 30%, and once off every request gets the default again
        assert off["rollout"]["weight"] == 30 and off["rollout"]["stepIndex"] == 1, off
        failures_at_off = load.snapshot().failures
        assert failures_at_off > 0
        load.wait_for("1", 300, within=60)
        report = load.stop()
    assert report.failure_timeline[-3:] == [0, 0, 0], describe(report)
    print(f"500s while broken was on: {failures_at_off}; {describe(report)}")


def test_the_router_evaluates_a_flag_per_request_and_passes_the_variant(
    serve: Serve, tmp_path: Path
) -> None:
    """Buckets: bob 4, trent 18, erin 22, alice 35, judy 99 (crc32 mod 100)."""
    web = example_rollout("canary", name="web", version="v1", mark=serve.mark, replicas=1)
    template = web["spec"]["template"]
    template["command"] = [sys.executable, str(EXAMPLES / "flag_app.py")]
    template["env"].update({"FLAG_HEADER": "x-flag-checkout", "APP_VERSION": "v1"})
    assert serve.apply(write_rollout(tmp_path / "web.yaml", web), "--wait").code == 0
    url = serve.status("web")["endpoint"]
    doc = flag_doc("new", [{"setWeight": 100}])
    del doc["spec"]["rollout"]
    doc["spec"]["split"] = [{"variant": "new", "weight": 20}]
    doc["spec"]["router"] = {"rollout": "web", "header": "x-flag-checkout"}
    doc["spec"]["requestContext"] = {"targetingKey": {"header": "x-user"}}
    flag = write_rollout(tmp_path / "flag.yaml", doc)
    assert serve.apply(flag).code == 0

    def seen(headers: dict[str, str] | None = None) -> dict[str, str]:
        out = {}
        for user in ("bob", "trent", "erin", "alice", "judy"):
            reply = http_get(url + "/", headers={"x-user": user, **(headers or {})})
            out[user] = reply.headers.get("x-flag-value", "")
        return out

    at_20 = {"bob": "new", "trent": "new", "erin": "old", "alice": "old", "judy": "old"}
    wait_until(lambda: seen() == at_20, within=30, what="the router passing the variant")
    # a client cannot pick its variant: the router replaces the header it sent
    assert seen({"x-flag-checkout": "broken"}) == at_20

    doc["spec"]["split"] = [{"variant": "new", "weight": 40}]
    assert serve.apply(write_rollout(flag, doc)).code == 0
    at_40 = {**at_20, "erin": "new", "alice": "new"}
    wait_until(lambda: seen() == at_40, within=30, what="the router at 40%")
    assert serve.cli("abort", "flag/checkout").code == 0
    wait_until(lambda: set(seen().values()) == {"old"}, within=30, what="the flag off")
    assert serve.cli("delete", "flag/checkout").code == 0
    # no flag evaluated any more: the header is gone (the app falls back to "old")
    wait_until(lambda: seen({"x-flag-checkout": "new"})["judy"] == "new", within=30, what="no flag")
