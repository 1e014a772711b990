"""Flags through a real ``changeover serve``: the CLI stores them with revisions, and the
real OpenFeature Python SDK with its OFREP provider evaluates them.

Buckets (crc32 mod 100, see tests/flags): bob 4, trent 18, erin 22, alice 35, judy 99.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_helpers import wait_until
from e2e_serve import Serve
from openfeature import api as openfeature
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import ErrorCode, Reason

pytestmark = pytest.mark.slow

FLAG = """\
apiVersion: changeover.dev/v1alpha1
kind: Flag
metadata: {name: checkout}
spec:
  type: string
  variants: {"old": "v1", "new": "v2"}
  defaultVariant: old
  rules:
    - name: testers
      when: [{attribute: email, emailDomain: [example.com]}]
      variant: new
  split: [{variant: new, weight: WEIGHT}]
"""
USERS = ["bob", "trent", "erin", "alice", "judy"]


def write(tmp_path: Path, weight: int) -> str:
    path = tmp_path / f"flag-{weight}.yaml"
    path.write_text(FLAG.replace("WEIGHT", str(weight)))
    return str(path)


def evaluation_token(serve: Serve) -> str:
    return (serve.state_dir / "flags" / "token").read_text().strip()


@pytest.fixture
def client(serve: Serve) -> Any:
    token = evaluation_token(serve)
    openfeature.set_provider(
        OFREPProvider(serve.url, headers_factory=lambda: {"Authorization": f"Bearer {token}"})
    )
    yield openfeature.get_client()
    openfeature.shutdown()


def variants(client: Any) -> dict[str, str]:
    return {
        user: client.get_string_value("checkout", "fallback", EvaluationContext(user))
        for user in USERS
    }


def test_sdk_sees_the_percentage_grow_the_off_switch_and_an_undo(
    serve: Serve, client: Any, tmp_path: Path
) -> None:
    assert serve.cli("apply", "-f", write(tmp_path, 20), check=True).stdout.strip() == (
        "flag/checkout created (revision 1)"
    )
    # 20%: buckets 0-19 (bob 4, trent 18) get the new variant
    assert variants(client) == {
        "bob": "v2",
        "trent": "v2",
        "erin": "v1",
        "alice": "v1",
        "judy": "v1",
    }
    details = client.get_string_details("checkout", "x", EvaluationContext("trent"))
    assert (details.variant, details.reason) == ("new", Reason.SPLIT)
    tester = EvaluationContext("judy", {"email": "judy@example.com"})
    assert client.get_string_details("checkout", "x", tester).reason == Reason.TARGETING_MATCH

    serve.cli("apply", "-f", write(tmp_path, 40), check=True)
    # nobody who had v2 loses it; erin (22) and alice (35) join
    assert variants(client) == {
        "bob": "v2",
        "trent": "v2",
        "erin": "v2",
        "alice": "v2",
        "judy": "v1",
    }

    assert "aborted" in serve.cli("abort", "flag/checkout", check=True).stdout
    assert set(variants(client).values()) == {"v1"}
    off = client.get_string_details("checkout", "x", tester)
    assert (off.value, off.reason) == ("v1", Reason.DISABLED)
    status = serve.cli("status", "flag/checkout", "-o", "json", check=True).json
    assert (status["phase"], status["enabled"], status["revision"]) == ("Aborted", False, 2)

    history = serve.cli("history", "flag/checkout", "-o", "json", check=True).json
    assert [(h["revision"], h["split"], h["current"]) for h in history] == [
        (1, {"new": 20}, False),
        (2, {"new": 40}, True),
    ]
    serve.cli("undo", "flag/checkout", "--to-revision", "1", check=True)
    assert variants(client) == {
        "bob": "v2",
        "trent": "v2",
        "erin": "v1",
        "alice": "v1",
        "judy": "v1",
    }
    status = serve.cli("status", "flag/checkout", "-o", "json", check=True).json
    assert (status["phase"], status["revision"], status["split"]) == ("Healthy", 3, {"new": 20})

    missing = client.get_string_details("nope", "fallback", EvaluationContext("bob"))
    assert (missing.value, missing.error_code) == ("fallback", ErrorCode.FLAG_NOT_FOUND)


def test_ofrep_takes_only_the_evaluation_token(serve: Serve, tmp_path: Path) -> None:
    serve.cli("apply", "-f", write(tmp_path, 20), check=True)
    admin = (serve.state_dir / "token").read_text().strip()
    url = serve.url + "/ofrep/v1/evaluate/flags/checkout"

    def post(token: str | None, body: bytes = b'{"context": {"targetingKey": "bob"}}') -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    assert post(evaluation_token(serve)) == 200
    # serve says where applications find OFREP and its token
    token_file = serve.state_dir.resolve() / "flags" / "token"
    assert f"OFREP (feature flags): {serve.url}/ofrep/v1/, token {token_file}" in serve.log()
    assert post(None) == 401
    assert post(admin) == 401  # the admin token is not an evaluation token
    assert post(evaluation_token(serve), b"{nope") == 400
    assert post(evaluation_token(serve), b'{"context": []}') == 400
    # and the evaluation token changes nothing
    request = urllib.request.Request(
        serve.url + "/api/v1/flags/checkout/abort",
        data=b"{}",
        headers={"Authorization": f"Bearer {evaluation_token(serve)}"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 401


def test_a_bad_flag_is_refused_whole_and_nothing_is_stored(serve: Serve, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = FLAG.replace("WEIGHT", "120").replace("defaultVariant: old", "defaultVariant: gone")
    bad.write_text(text)
    lint = serve.cli("lint", str(bad))
    assert lint.code == 2
    assert f"{bad}: spec.split: weights add up to 120; expected at most 100" in lint.stderr
    assert f"{bad}: spec.defaultVariant: unknown variant 'gone'" in lint.stderr
    assert serve.cli("apply", "-f", str(bad)).code == 2
    assert serve.cli("get", "flags", "-o", "json", check=True).json == []
    # the server refuses it too when a client skips the CLI's check
    doc = yaml.safe_load(text)
    admin = (serve.state_dir / "token").read_text().strip()
    request = urllib.request.Request(
        serve.url + "/api/v1/apply",
        data=json.dumps({"documents": [doc], "source": "bad.yaml"}).encode(),
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400
    assert serve.cli("get", "flags", "-o", "json", check=True).json == []


def test_a_flag_rollout_naming_a_missing_template_is_refused(serve: Serve, tmp_path: Path) -> None:
    doc = yaml.safe_load(FLAG.replace("WEIGHT", "100"))
    doc["spec"]["rollout"] = {
        "variant": "new",
        "target": "web",
        "steps": [{"setWeight": 10}, {"analysis": {"templates": [{"templateName": "nope"}]}}],
    }
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(doc))
    refused = serve.cli("apply", "-f", str(path))
    assert refused.code == 2, str(refused)
    assert (
        "spec.rollout.steps[1].analysis.templates[0].templateName: no AnalysisTemplate "
        "named 'nope'" in refused.stderr
    ), str(refused)
    assert serve.cli("get", "flags", "-o", "json", check=True).json == []


def test_a_flag_rollout_whose_target_is_missing_turns_off_and_stays_off(
    serve: Serve, tmp_path: Path
) -> None:
    doc = yaml.safe_load(FLAG.replace("WEIGHT", "100"))
    judged = {"analysis": {"templates": [{"templateName": "error-rate"}]}}
    doc["spec"]["rollout"] = {"variant": "new", "target": "ghost", "steps": [judged]}
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(doc))
    templates = Path(__file__).parents[2] / "examples" / "analysis-template.yaml"
    assert serve.cli("apply", "-f", str(templates), "-f", str(path)).code == 0

    def status() -> Any:
        return serve.cli("status", "flag/checkout", "-o", "json", check=True).json

    off = wait_until(lambda: (s := status())["phase"] == "Aborted" and s, within=30, what="off")
    assert "the target rollout 'ghost' does not exist" in off["message"], off
    serve.stop()
    serve.start()  # "off" is stored with the flag: it stays off after a restart
    after = status()
    assert (after["phase"], after["enabled"]) == ("Aborted", False), after
