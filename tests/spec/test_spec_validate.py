"""Cross-field checks: given specs that parse, when linted against the routers registered,
then these problems (and warnings), each naming file, field path and expectation."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from changeover import errors, spec, validation
from changeover.traffic import base

FIXTURES = Path(__file__).parent.parent / "fixtures" / "specs"
C = base.Capability


def no_router(*args: object, **kwargs: object) -> base.TrafficRouter:
    raise NotImplementedError("validation never builds a router")


@pytest.fixture
def routers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A registry of two fake routers: a builtin that can do everything and an haproxy that
    only splits by weight and header; the real registry comes back afterwards."""
    monkeypatch.setattr(base, "_REGISTRY", {})
    base.register("builtin", frozenset(C), no_router)
    base.register("haproxy", frozenset({C.WEIGHTS, C.HEADER_ROUTES}), no_router)
    yield


@pytest.fixture
def no_routers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_REGISTRY", {})


def rollout(name: str, *, port: int, strategy: str, extra: str = "") -> str:
    """A Rollout document; ``strategy`` and ``extra`` are YAML at the level under spec."""
    body = textwrap.dedent(f"""\
        template:
          command: ["python3", "examples/app.py", "--port", "$(PORT)"]
        service:
          port: {port}
        """)
    for part in (strategy, extra):
        body += textwrap.dedent(part).rstrip("\n") + "\n" if part else ""
    return (
        "apiVersion: changeover.dev/v1alpha1\nkind: Rollout\n"
        f"metadata:\n  name: {name}\nspec:\n" + textwrap.indent(body, "  ")
    )


def lint(tmp_path: Path, *documents: str) -> list[str]:
    path = tmp_path / "r.yaml"
    path.write_text("---\n".join(documents))
    return [str(p).replace(str(path), "r.yaml") for p in validation.lint(path)]


CANARY_MIRROR = """\
strategy:
  canary:
    steps:
      - setWeight: 10
      - setMirrorRoute: {name: copy, percentage: 50}
      - setHeaderRoute:
          name: beta
          match:
            - cookieName: beta
              cookieValue: {exact: "yes"}
            - headerName: x-beta
              headerValue: {prefix: "y"}
"""


def test_the_fixtures_are_clean_on_a_capable_router(routers: None) -> None:
    assert validation.lint(FIXTURES) == []


def test_steps_the_chosen_router_cannot_do(routers: None, tmp_path: Path) -> None:
    doc = rollout("chat", port=8080, strategy=CANARY_MIRROR, extra="traffic: {haproxy: {}}\n")
    assert lint(tmp_path, doc) == [
        "r.yaml: spec.strategy.canary.steps[1].setMirrorRoute: setMirrorRoute needs a router "
        "with mirroring: builtin (this rollout uses 'haproxy')",
        "r.yaml: spec.strategy.canary.steps[2].setHeaderRoute.match[0]: setHeaderRoute by "
        "cookie needs a router with cookie routes: builtin (this rollout uses 'haproxy')",
    ]


def test_the_same_steps_on_the_builtin_router_are_fine(routers: None, tmp_path: Path) -> None:
    assert lint(tmp_path, rollout("chat", port=8080, strategy=CANARY_MIRROR)) == []


def test_an_unregistered_router_is_unknown(no_routers: None, tmp_path: Path) -> None:
    assert lint(tmp_path, rollout("chat", port=8080, strategy=CANARY_MIRROR)) == [
        "r.yaml: spec.traffic: unknown router 'builtin' (registered: none)"
    ]


def test_a_rollout_that_asks_nothing_of_the_router_needs_none(
    no_routers: None, tmp_path: Path
) -> None:
    assert lint(tmp_path, rollout("web", port=8080, strategy="strategy: {rollingUpdate: {}}")) == []


def test_ab_test_and_shadow_need_sticky_splits_and_mirroring(routers: None, tmp_path: Path) -> None:
    ab = rollout(
        "ranker",
        port=8080,
        strategy="""\
            strategy:
              abTest:
                match: [{headerName: x-variant, headerValue: {exact: b}}]
                userKey: {cookie: uid}
            """,
        extra="traffic: {haproxy: {}}\n",
    )
    shadow = rollout(
        "embedder", port=8081, strategy="strategy: {shadow: {}}", extra="traffic: {haproxy: {}}"
    )
    assert lint(tmp_path, ab, shadow) == [
        "r.yaml#1: spec.strategy.abTest.userKey: abTest userKey needs a router with sticky "
        "user splits: builtin (this rollout uses 'haproxy')",
        "r.yaml#2: spec.strategy.shadow: shadow needs a router with mirroring: builtin "
        "(this rollout uses 'haproxy')",
    ]


def test_without_exact_weights_set_weight_is_approximated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(base, "_REGISTRY", {})
    base.register("builtin", frozenset({C.BACKENDS}), no_router)
    doc = rollout("chat", port=8080, strategy="strategy: {canary: {steps: [{setWeight: 5}]}}")
    assert lint(tmp_path, doc) == [
        "r.yaml: spec.strategy.canary.steps[0].setWeight: warning: router 'builtin' cannot "
        "split by exact weights; setWeight is approximated by the ratio of canary to stable "
        "replicas"
    ]


def test_preview_port_must_differ_from_the_service_port(routers: None, tmp_path: Path) -> None:
    doc = rollout("detector", port=8080, strategy="strategy: {blueGreen: {previewPort: 8080}}")
    assert lint(tmp_path, doc) == [
        "r.yaml: spec.strategy.blueGreen.previewPort: expected a port other than "
        "spec.service.port (8080): preview and active traffic cannot share one port"
    ]


def test_names_and_ports_are_unique_within_one_apply(routers: None, tmp_path: Path) -> None:
    assert lint(
        tmp_path,
        rollout("chat", port=8080, strategy="strategy: {recreate: {}}"),
        rollout("chat", port=8081, strategy="strategy: {recreate: {}}"),
        rollout("web", port=8080, strategy="strategy: {recreate: {}}"),
        rollout("detector", port=9000, strategy="strategy: {blueGreen: {previewPort: 8081}}"),
    ) == [
        "r.yaml#2: metadata.name: another rollout named 'chat' is in this apply (r.yaml#1); "
        "expected each name once",
        "r.yaml#3: spec.service.port: port 8080 is already used by rollout 'chat' (r.yaml#1); "
        "expected a free port",
        "r.yaml#4: spec.strategy.blueGreen.previewPort: port 8081 is already used by rollout "
        "'chat' (r.yaml#2); expected a free port",
    ]


def test_different_hosts_may_share_a_port(routers: None, tmp_path: Path) -> None:
    one = rollout("a", port=8080, strategy="strategy: {recreate: {}}")
    two = rollout("b", port=8080, strategy="strategy: {recreate: {}}")
    two = two.replace("port: 8080", "port: 8080\n    host: 127.0.0.2")
    assert lint(tmp_path, one, two) == []


def test_variable_references(routers: None, tmp_path: Path) -> None:
    doc = rollout(
        "chat",
        port=8080,
        strategy="strategy: {recreate: {}}",
        extra="""\
            template:
              command: ["python3", "app.py", "--port", "$(PORT)", "--model", "$(MODEL)",
                        "--home", "$(HOME)", "--price", "$$(LITERAL)", "--workers", "$WORKERS"]
              env:
                MODEL: "llama"
                URL: "http://localhost:$(PORT)/$(PREFIX)"
            """,
    )
    doc = doc.replace(
        '  template:\n    command: ["python3", "examples/app.py", "--port", "$(PORT)"]\n', ""
    )
    assert lint(tmp_path, doc) == [
        "r.yaml: spec.template.command[7]: $(HOME) is not defined: only $(PORT) and keys of "
        "spec.template.env are expanded (write $$(HOME) for a literal)",
        "r.yaml: spec.template.command[11]: warning: $WORKERS is passed as is (commands run "
        "without a shell); write $(WORKERS) to expand it",
        "r.yaml: spec.template.env.URL: $(PREFIX) is not defined: only $(PORT) and keys of "
        "spec.template.env are expanded (write $$(PREFIX) for a literal)",
    ]


def test_a_shell_command_may_use_shell_variables(routers: None, tmp_path: Path) -> None:
    doc = rollout("chat", port=8080, strategy="strategy: {recreate: {}}").replace(
        '["python3", "examples/app.py", "--port", "$(PORT)"]',
        '["sh", "-c", "exec python3 app.py --port $PORT"]',
    )
    assert lint(tmp_path, doc) == []


def test_settings_that_contradict_each_other_are_warned_about(
    routers: None, tmp_path: Path
) -> None:
    assert lint(
        tmp_path,
        rollout(
            "a",
            port=8001,
            strategy="""\
                strategy:
                  blueGreen: {autoPromotionEnabled: false, autoPromotionSeconds: 30s}
                """,
        ),
        rollout("b", port=8002, strategy="strategy: {canary: {steps: []}}"),
        rollout(
            "c", port=8003, strategy="strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0%}}"
        ),
        rollout("d", port=8004, strategy="strategy: {rollingUpdate: {maxUnavailable: 150%}}"),
        rollout(
            "e",
            port=8005,
            strategy="strategy: {abTest: {match: [{cookieName: v, cookieValue: {exact: b}}], "
            "weight: 30}}",
        ),
    ) == [
        "r.yaml#1: spec.strategy.blueGreen.autoPromotionSeconds: warning: ignored: "
        "autoPromotionEnabled is false, so only promote goes ahead",
        "r.yaml#2: spec.strategy.canary.steps: warning: no steps: the new revision takes all "
        "traffic as soon as it is ready",
        "r.yaml#3: spec.strategy.rollingUpdate: warning: maxSurge and maxUnavailable are both "
        "0, so nothing could change; maxUnavailable is taken as 1 (Kubernetes rejects this "
        "outright)",
        "r.yaml#4: spec.strategy.rollingUpdate.maxUnavailable: expected an integer or a "
        "percentage up to 100%, got '150%'",
        "r.yaml#5: spec.strategy.abTest.weight: warning: ignored without userKey: only "
        "requests that match go to B",
    ]


def test_read_raises_on_errors_and_hands_back_warnings(routers: None, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(rollout("b", port=8002, strategy="strategy: {canary: {steps: []}}"))
    specs = validation.read(path)
    assert [r.name for r in specs.rollouts] == ["b"]
    assert [p.severity for p in specs.warnings] == ["warning"]

    path.write_text(rollout("b", port=8002, strategy="strategy: {blueGreen: {previewPort: 8002}}"))
    with pytest.raises(errors.SpecError) as caught:
        validation.read(path)
    assert caught.value.exit_code == 2
    assert [p.path for p in caught.value.problems] == ["spec.strategy.blueGreen.previewPort"]


def test_read_text_for_request_bodies(routers: None) -> None:
    text = rollout("b", port=8002, strategy="strategy: {shadow: {percentage: 101}}")
    with pytest.raises(errors.SpecError) as caught:
        validation.read_text(text, source="request")
    assert [str(p) for p in caught.value.problems] == [
        "request: spec.strategy.shadow.percentage: expected an integer from 0 to 100, got 101 "
        "(line 10)"
    ]


def test_validate_rollouts_for_rollouts_already_in_hand(routers: None) -> None:
    rollouts = spec.parse_rollouts(spec.load_path(FIXTURES))
    doubled = [*rollouts, rollouts[0]]
    assert [str(p) for p in validation.validate_rollouts(doubled, source="apply")] == [
        "apply: metadata.name: another rollout named 'ranker' is in this apply (apply); "
        "expected each name once"
    ]


POD_TEMPLATE = """\
apiVersion: changeover.dev/v1alpha1
kind: Rollout
metadata: {name: chat}
spec:
  template:
    spec:
      containers: [{name: app, image: "chat:2"}]
  service: {port: 8080}
  traffic: {smi: {}}
  strategy:
    canary:
      steps:
        - setWeight: 10
        - setHeaderRoute:
            name: beta
            match: [{headerName: x-beta, headerValue: {exact: "1"}}]
"""


def test_on_kubernetes_only_kubernetes_routers_are_suggested(tmp_path: Path) -> None:
    import changeover.traffic  # noqa: F401  (the real registry: builtin, haproxy, istio, ...)

    assert lint(tmp_path, POD_TEMPLATE) == [
        "r.yaml: spec.strategy.canary.steps[1].setHeaderRoute.match[0]: setHeaderRoute by "
        "header needs a router with header routes: gateway-api, istio, nginx "
        "(this rollout uses 'smi')"
    ]
    local = POD_TEMPLATE.replace("smi: {}", "haproxy: {}")
    assert lint(tmp_path, local) == [
        "r.yaml: spec.traffic.haproxy: router 'haproxy' runs on the local platform, but this "
        "rollout's template is a pod template (Kubernetes); expected one of istio, gatewayAPI, "
        "nginx, smi"
    ]


def test_router_settings_are_checked_by_name(tmp_path: Path) -> None:
    import changeover.traffic  # noqa: F401

    doc = POD_TEMPLATE.replace("smi: {}", "istio: {destinationRule: {name: dr}}")
    assert lint(tmp_path, doc) == [
        "r.yaml: spec.traffic.istio.virtualService: required, but missing (line 9)"
    ]
