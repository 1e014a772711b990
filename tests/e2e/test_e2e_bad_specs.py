"""Bad specs are refused with exit 2, a message a user can act on, and no stored change.

Given a server running rollout ``bad`` Healthy on revision 1, when ``changeover apply -f``
gets a file with wrong types, an unknown strategy, negative weights, steps out of range or
malformed YAML, then it exits 2, stderr names the file, the field path and what was
expected, and the rollout's status, spec and history are exactly as before. The server
applies the same rules to a client that skips the CLI's own check.
"""

from __future__ import annotations

import copy
import json
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_helpers import JSON, http_get
from e2e_serve import Serve, marked_processes
from e2e_specs import example_rollout, write_rollout

pytestmark = pytest.mark.slow

NAME = "bad"


@dataclass
class Deployed:
    serve: Serve
    doc: JSON
    root: Path

    def snapshot(self) -> dict[str, Any]:
        """Everything stored about the rollout (minus the clock), read from the API the CLI
        reads (cheaper than a CLI process per read; the CLI's status is checked once)."""
        api = f"{self.serve.url}/api/v1/rollouts"
        status = http_get(f"{api}/{NAME}").json()
        status.pop("updatedAt", None)
        return {
            "status": status,
            "history": http_get(f"{api}/{NAME}/history").json(),
            "spec": http_get(f"{api}/{NAME}/spec").json(),
            "rollouts": [r["name"] for r in http_get(api).json()["rollouts"]],
        }


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """One server for every case: each case changes nothing, which is the point."""
    root = tmp_path_factory.mktemp("bad-specs")
    serve = Serve(root / "serve")
    serve.root.mkdir(parents=True)
    try:
        serve.start()
        doc = example_rollout(
            "canary",
            name=NAME,
            version="v1",
            mark=serve.mark,
            replicas=2,
            strategy_patch={"steps": [{"setWeight": 50}, {"pause": {}}]},
        )
        assert serve.apply(write_rollout(root / "good.yaml", doc)).code == 0
        serve.wait_phase(NAME, "Healthy", stableRevision=1)
        yield Deployed(serve, doc, root)
    finally:
        serve.cleanup()
        assert not marked_processes(serve.mark)


def _v2(doc: JSON) -> JSON:
    """A change that would start a rollout if it were accepted."""
    new = copy.deepcopy(doc)
    command = new["spec"]["template"]["command"]
    command[command.index("--version") + 1] = "v2"
    return new


def _set(path: str, value: Any) -> Callable[[JSON], JSON]:
    def mutate(doc: JSON) -> JSON:
        new = _v2(doc)
        *parents, last = path.split(".")
        node = new
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return new

    return mutate


# (id, how to break the good spec (or raw text), expected in stderr: field path, expectation)
CASES: list[tuple[str, Callable[[JSON], JSON] | str, list[str]]] = [
    ("replicas-not-int", _set("spec.replicas", "three"), ["spec.replicas", "integer"]),
    (
        "command-is-a-string",
        _set("spec.template.command", "python3 app.py --version v2"),
        ["spec.template.command", "list"],
    ),
    ("port-not-int", _set("spec.service.port", "http"), ["spec.service.port", "integer"]),
    (
        "unknown-strategy",
        _set("spec.strategy", {"bogus": {"steps": []}}),
        ["spec.strategy", "bogus", "canary"],
    ),
    (
        "negative-weight",
        _set("spec.strategy.canary.steps", [{"setWeight": -20}, {"pause": {}}]),
        ["spec.strategy.canary.steps[0].setWeight", "0 to 100"],
    ),
    (
        "weight-over-100",
        _set("spec.strategy.canary.steps", [{"setWeight": 20}, {"setWeight": 150}]),
        ["spec.strategy.canary.steps[1].setWeight", "0 to 100"],
    ),
    (
        "ab-weight-negative",
        lambda doc: {
            **_v2(doc),
            "spec": {
                **_v2(doc)["spec"],
                "strategy": {"abTest": {"userKey": {"header": "x-user-id"}, "weight": -5}},
            },
        },
        ["spec.strategy.abTest.weight", "0 to 100"],
    ),
    (
        "two-kinds-in-one-step",
        _set("spec.strategy.canary.steps", [{"setWeight": 20, "pause": {}}]),
        ["spec.strategy.canary.steps[0]", "exactly one"],
    ),
    (
        "kubernetes-router-on-the-local-platform",
        _set("spec.traffic", {"istio": {"virtualService": "chat-vs"}}),
        ["spec.traffic.istio", "runs on Kubernetes", "expected one of builtin, haproxy"],
    ),
    (
        "misspelt-router-setting",
        _set("spec.traffic", {"haproxy": {"nbthred": 2}}),
        ["spec.traffic.haproxy", "unknown field 'nbthred'", "did you mean 'nbthread'"],
    ),
    (
        "pod-template-on-the-local-platform",
        _set("spec.template", {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}),
        ["spec.template", "runs on Kubernetes", "--platform kubernetes"],
    ),
    (
        "malformed-yaml",
        "apiVersion: changeover.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: [bad\n"
        "spec:\n  replicas: 2\n",
        ["YAML", "line"],
    ),
    (
        "bad-indentation",
        "apiVersion: changeover.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: bad\n"
        "spec:\n  replicas: 2\n   template: {}\n",
        ["YAML", "line"],
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_spec_exits_2_names_file_path_and_expectation_and_changes_nothing(
    deployed: Deployed, mutate: Callable[[JSON], JSON] | str, expected: list[str]
) -> None:
    serve = deployed.serve
    before = deployed.snapshot()
    path = deployed.root / "broken.yaml"
    if isinstance(mutate, str):
        path.write_text(mutate)
    else:
        write_rollout(path, mutate(deployed.doc))

    result = serve.apply(path)

    assert result.code == 2, str(result)
    assert str(path) in result.stderr, str(result)
    for text in expected:
        assert text in result.stderr, f"{text!r} missing from:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert deployed.snapshot() == before


def test_one_bad_document_refuses_the_whole_file(deployed: Deployed) -> None:
    """A multi-document file with a good change and a bad one: neither is applied."""
    serve = deployed.serve
    before = deployed.snapshot()
    other = copy.deepcopy(deployed.doc)
    other["metadata"]["name"] = "other"
    other["spec"]["replicas"] = -1
    path = deployed.root / "multi.yaml"
    path.write_text(yaml.safe_dump_all([_v2(deployed.doc), other], sort_keys=False))

    result = serve.apply(path)

    assert result.code == 2, str(result)
    assert str(path) in result.stderr and "spec.replicas" in result.stderr, str(result)
    assert deployed.snapshot() == before
    # As the CLI reports it, too: still Healthy on revision 1, one revision in history.
    status = serve.status(NAME)
    assert (status["phase"], status["revision"], status["weights"]) == ("Healthy", 1, {"1": 100})
    assert [h["revision"] for h in serve.history(NAME)] == [1]
    assert [r["name"] for r in serve.cli("get", "-o", "json", check=True).json] == [NAME]


def test_the_server_refuses_a_bad_spec_that_skipped_the_cli(deployed: Deployed) -> None:
    """The API validates too: a script posting straight to it gets 400 with field paths."""
    serve = deployed.serve
    before = deployed.snapshot()
    token = (serve.state_dir / "token").read_text().strip()
    bad = _set("spec.strategy.canary.steps", [{"setWeight": -1}])(deployed.doc)
    request = urllib.request.Request(
        f"{serve.url}/api/v1/apply",
        data=json.dumps({"documents": [bad], "source": "script.yaml"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            code, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        code, body = exc.code, exc.read()

    assert code == 400, body
    problems = json.loads(body)["problems"]
    assert any(p["path"] == "spec.strategy.canary.steps[0].setWeight" for p in problems), problems
    assert deployed.snapshot() == before
