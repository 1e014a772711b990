"""Loading specs: good YAML becomes Rollouts; bad YAML becomes one SpecError whose lines name
the file, the camelCase field path and what was expected, every problem at once."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from changeover import errors, validation
from changeover.spec import load

FIXTURES = Path(__file__).parent.parent / "fixtures" / "specs"

HEADER = """\
apiVersion: changeover.dev/v1alpha1
kind: Rollout
metadata:
  name: chat-api
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    """What the user sees: load and parse ``path`` and return the lines of the SpecError."""
    with pytest.raises(errors.SpecError) as caught:
        load.parse_rollouts(load.load_path(path))
    return [str(p) for p in caught.value.problems]


def rollout(*parts: str) -> str:
    """A Rollout document whose spec is ``parts`` (each YAML, dedented) put together."""
    body = "".join(textwrap.dedent(part) for part in parts)
    return HEADER + "spec:\n" + textwrap.indent(body, "  ")


GOOD_SPEC = """\
template:
  command: ["python3", "examples/app.py", "--port", "$(PORT)"]
service:
  port: 8080
"""


# --- good specs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "name", "strategy"),
    [
        ("recreate.yaml", "triage-model", "recreate"),
        ("rolling-update.yaml", "web", "rollingUpdate"),
        ("blue-green.yaml", "disease-detector", "blueGreen"),
        ("canary.yaml", "chat-api", "canary"),
        ("ab-test.yaml", "ranker", "abTest"),
        ("shadow.yaml", "embedder", "shadow"),
    ],
)
def test_each_strategy_fixture_loads(file: str, name: str, strategy: str) -> None:
    [loaded] = load.parse_rollouts(load.load_path(FIXTURES / file))
    assert loaded.name == name
    assert loaded.spec.strategy.name == strategy
    assert loaded.spec.template.command[:2] == ["python3", "examples/app.py"]
    assert "$(PORT)" in loaded.spec.template.command


def test_a_canary_reads_as_argo_users_write_it() -> None:
    [canary] = load.parse_rollouts(load.load_path(FIXTURES / "canary.yaml"))
    steps = canary.spec.strategy.canary.steps if canary.spec.strategy.canary else []
    assert [s.kind for s in steps] == [
        "set_canary_scale",
        "set_header_route",
        "set_weight",
        "pause",
        "set_weight",
        "pause",
        "set_weight",
    ]
    assert steps[3].pause is not None and steps[3].pause.duration == 30.0
    assert steps[5].pause is not None and steps[5].pause.duration is None  # wait for promote


def test_a_directory_loads_every_yaml_file_in_name_order() -> None:
    rollouts = load.parse_rollouts(load.load_path(FIXTURES))
    assert [r.name for r in rollouts] == [
        "ranker",  # ab-test.yaml
        "disease-detector",  # blue-green.yaml
        "chat-api",  # canary.yaml
        "triage-model",  # recreate.yaml
        "web",  # rolling-update.yaml
        "embedder",  # shadow.yaml
    ]


def test_a_directory_ignores_other_files_and_empty_yaml(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", rollout(GOOD_SPEC + "strategy: {recreate: {}}\n"))
    write(tmp_path, "notes.txt", "not a spec")
    write(tmp_path, "empty.yaml", "# nothing here yet\n")
    assert [d.source for d in load.load_path(tmp_path)] == [str(tmp_path / "a.yml")]


def test_multi_document_files_skip_empty_documents_and_number_the_rest(tmp_path: Path) -> None:
    one = rollout(GOOD_SPEC + "strategy: {recreate: {}}\n")
    two = one.replace("chat-api", "web").replace("8080", "8081")
    path = write(tmp_path, "r.yaml", f"---\n{one}---\n# empty\n---\n{two}")
    docs = load.load_path(path)
    assert [(d.index, d.label) for d in docs] == [(0, f"{path}#1"), (2, f"{path}#3")]
    assert [r.name for r in load.parse_rollouts(docs)] == ["chat-api", "web"]


def test_a_string_loads_too() -> None:
    docs = load.load_text(rollout(GOOD_SPEC + "strategy:\n  recreate:\n"), source="body")
    [loaded] = load.parse_rollouts(docs)
    assert loaded.spec.strategy.recreate is not None  # a bare `recreate:` means defaults


def test_analysis_templates_are_kept_aside_for_analysis() -> None:
    text = rollout(GOOD_SPEC + "strategy: {canary: {}}\n") + textwrap.dedent("""\
        ---
        apiVersion: changeover.dev/v1alpha1
        kind: AnalysisTemplate
        metadata: {name: success-rate}
        spec: {metrics: []}
        """)
    specs = load.parse_documents(load.load_text(text, source="r.yaml"))
    assert [r.name for r in specs.rollouts] == ["chat-api"]
    assert specs.sources == ["r.yaml#1"]
    assert [d.data["metadata"]["name"] for d in specs.other] == ["success-rate"]


# --- bad specs: each names file, field path and expectation ------------------------------


def test_wrong_types(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.yaml",
        rollout("""\
            replicas: three
            template:
              command: python3 examples/app.py --port $(PORT)
              env:
                WORKERS: 4
            service:
              port: http
            strategy:
              blueGreen:
                autoPromotionEnabled: maybe
            """),
    )
    assert problems(path) == [
        f"{path}: spec.replicas: expected a non-negative integer, got 'three' (line 6)",
        f'{path}: spec.template.command: expected a list of arguments such as ["python3", '
        '"app.py"] (an argv list, never a shell string), got '
        "'python3 examples/app.py --port $(PORT)' (line 8)",
        f'{path}: spec.template.env.WORKERS: expected a string, got 4 (quote it: "4") (line 10)',
        f"{path}: spec.service.port: expected an integer from 1 to 65535, got 'http' (line 12)",
        f"{path}: spec.strategy.blueGreen.autoPromotionEnabled: expected true or false, "
        "got 'maybe' (line 15)",
    ]


def test_unknown_strategy_suggests_the_spelling(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", rollout(GOOD_SPEC + "strategy:\n  bluegreen: {}\n"))
    assert problems(path) == [
        f"{path}: spec.strategy: unknown strategy 'bluegreen' (did you mean 'blueGreen'?); "
        "expected exactly one of recreate, rollingUpdate, blueGreen, canary, abTest, shadow "
        "(line 11)"
    ]


def test_kubernetes_style_strategy_type_is_explained(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", rollout(GOOD_SPEC + "strategy:\n  type: Recreate\n"))
    assert problems(path) == [
        f"{path}: spec.strategy: unknown field 'type': strategies are keys, write "
        "strategy: {canary: {...}} (line 11)"
    ]


def test_two_strategies(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", rollout(GOOD_SPEC + "strategy: {canary: {}, shadow: {}}\n"))
    assert problems(path) == [
        f"{path}: spec.strategy: expected exactly one strategy of recreate, rollingUpdate, "
        "blueGreen, canary, abTest, shadow; got canary, shadow (line 10)"
    ]


def test_no_strategy(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", rollout(GOOD_SPEC))
    assert problems(path) == [f"{path}: spec.strategy: required, but missing (line 5)"]


def test_weights_out_of_range_and_other_step_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.yaml",
        rollout(
            GOOD_SPEC,
            """\
            strategy:
              canary:
                steps:
                  - setWeight: 10
                  - setWeight: -5
                  - setWeight: 150
                  - setWeight: 12.5
                  - pause: {duration: soon}
                  - setCanaryScale: {weight: 101}
                  - setMirrorRoute: {name: shadow, percentage: 120}
                  - setWeight: 20
                    pause: {}
                  - setwieght: 30
            """,
        ),
    )
    steps = f"{path}: spec.strategy.canary.steps"
    assert problems(path) == [
        f"{steps}[1].setWeight: expected an integer from 0 to 100, got -5 (line 14)",
        f"{steps}[2].setWeight: expected an integer from 0 to 100, got 150 (line 15)",
        f"{steps}[3].setWeight: expected an integer from 0 to 100, got 12.5 (line 16)",
        f"{steps}[4].pause.duration: expected a duration such as 30s, 5m or 1h, got 'soon' "
        "(line 17)",
        f"{steps}[5].setCanaryScale.weight: expected an integer from 0 to 100, got 101 (line 18)",
        f"{steps}[6].setMirrorRoute.percentage: expected an integer from 0 to 100, got 120 "
        "(line 19)",
        f"{steps}[7]: expected exactly one of setWeight, pause, setCanaryScale, "
        "setHeaderRoute, setMirrorRoute, analysis, check; got setWeight, pause (line 20)",
        f"{steps}[8]: unknown field 'setwieght' (did you mean 'setWeight'?) (line 22)",
    ]


def test_unknown_field_with_and_without_a_suggestion(tmp_path: Path) -> None:
    body = GOOD_SPEC + "stratgy: {canary: {}}\nstrategy: {canary: {}}\n"
    body = body.replace("  port: 8080", "  port: 8080\n  hots: 0.0.0.0\n  tls: true")
    path = write(tmp_path, "r.yaml", rollout(body))
    assert problems(path) == [
        f"{path}: spec.service: unknown field 'hots' (did you mean 'host'?) (line 10)",
        f"{path}: spec.service: unknown field 'tls'; expected one of port, host, name, canaryName, "
        "targetPort, managed (line 11)",
        f"{path}: spec: unknown field 'stratgy' (did you mean 'strategy'?) (line 12)",
    ]


def test_snake_case_and_capitalised_fields_are_pointed_at_camel_case(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", rollout(GOOD_SPEC + "strategy: {canary: {}}\nMinReady: 1\n"))
    assert problems(path) == [
        f"{path}: spec: unknown field 'MinReady' (did you mean 'minReadySeconds'?) (line 11)"
    ]


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.yaml",
        """\
        apiVersion: changeover.dev/v1alpha1
        kind: Rollout
        metadata:
          name: chat-api
          labels: {team: ml
        spec: {}
        """,
    )
    [problem] = problems(path)
    assert problem.startswith(f"{path}: malformed YAML at line 6, column 5: ")
    assert "line 5" in problem  # where the unclosed flow mapping starts


def test_tabs_are_explained(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "spec:\n\treplicas: 2\n")
    assert problems(path) == [
        f"{path}: malformed YAML at line 2, column 1: found character '\\t' that cannot start "
        "any token (YAML indents with spaces, never tabs)"
    ]


def test_duplicate_keys_are_not_silently_overwritten(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", rollout("replicas: 2\n" + GOOD_SPEC + "replicas: 5\n"))
    with pytest.raises(errors.SpecError) as caught:
        load.load_path(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}: spec: duplicate key 'replicas' (line 6 and line 11)"
    ]


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "# TODO\n")
    assert problems(path) == [
        f"{path}: empty: expected a Rollout (apiVersion, kind, metadata, spec)"
    ]


def test_a_document_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "- name: chat-api\n")
    assert problems(path) == [
        f"{path}: expected a mapping with apiVersion, kind, metadata and spec, got a list (line 1)"
    ]


def test_wrong_api_version_and_kind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.yaml",
        """\
        apiVersion: apps/v1
        kind: Deployment
        ---
        apiVersion: changeover.dev/v1alpha1
        kind: Rolout
        ---
        apiVersion: argoproj.io/v1alpha1
        kind: Rollout
        """,
    )
    assert problems(path) == [
        f"{path}#1: apiVersion: expected changeover.dev/v1alpha1, got 'apps/v1' (line 1)",
        f"{path}#1: kind: unknown kind 'Deployment'; expected one of Rollout, Flag, "
        "AnalysisTemplate (line 2)",
        f"{path}#2: kind: unknown kind 'Rolout' (did you mean 'Rollout'?); expected one of "
        "Rollout, Flag, AnalysisTemplate (line 5)",
        f"{path}#3: apiVersion: this is an Argo Rollouts manifest (argoproj.io/v1alpha1); "
        "convert it with `changeover import` first, or write apiVersion "
        "changeover.dev/v1alpha1 (line 7)",
    ]


def test_a_bad_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.yaml",
        rollout(GOOD_SPEC + "strategy: {canary: {}}\n").replace("chat-api", "Chat_API"),
    )
    assert problems(path) == [
        f"{path}: metadata.name: expected a name of lowercase letters, digits and '-', "
        "starting and ending with a letter or digit, at most 63 characters (like chat-api), "
        "got 'Chat_API' (line 4)"
    ]


def test_a_directory_reports_every_problem_of_every_file_at_once(tmp_path: Path) -> None:
    write(tmp_path, "1-good.yaml", rollout(GOOD_SPEC + "strategy: {recreate: {}}\n"))
    write(tmp_path, "2-typo.yaml", rollout(GOOD_SPEC + "strategy: {canary: {stpes: []}}\n"))
    write(tmp_path, "3-broken.yml", "kind: [Rollout\n")
    write(
        tmp_path,
        "4-multi.yaml",
        rollout(GOOD_SPEC + "strategy: {rollingUpdate: {}}\n")
        + "---\n"
        + rollout(GOOD_SPEC.replace("8080", "0") + "strategy: {shadow: {percentage: 150}}\n"),
    )
    problems_ = [str(p) for p in validation.lint(tmp_path)]
    assert problems_ == [
        f"{tmp_path}/3-broken.yml: malformed YAML at line 2, column 1: expected ',' or ']', "
        "but got '<stream end>' (while parsing a flow sequence that starts at line 1, column 7)",
        f"{tmp_path}/2-typo.yaml: spec.strategy.canary: unknown field 'stpes' "
        "(did you mean 'steps'?) (line 10)",
        f"{tmp_path}/4-multi.yaml#2: spec.service.port: expected an integer from 1 to 65535, "
        "got 0 (line 20)",
        f"{tmp_path}/4-multi.yaml#2: spec.strategy.shadow.percentage: expected an integer "
        "from 0 to 100, got 150 (line 21)",
        f"{tmp_path}/4-multi.yaml#1: metadata.name: another rollout named 'chat-api' is in "
        f"this apply ({tmp_path}/1-good.yaml); expected each name once",
    ]


# --- never a traceback --------------------------------------------------------------------


def test_a_missing_file(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.yaml") == [f"{tmp_path}/nope.yaml: no such file or directory"]


def test_a_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00")
    assert problems(path) == [f"{path}: not a text file (it contains NUL bytes); expected YAML"]


def test_a_file_in_another_encoding(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    assert problems(path) == [f"{path}: not UTF-8 text (bad byte at offset 9)"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "kind: Rollout\n")
    path.chmod(0)
    assert problems(path) == [f"{path}: cannot read: permission denied"]


def test_an_empty_directory(tmp_path: Path) -> None:
    assert problems(tmp_path) == [f"{tmp_path}: no *.yaml or *.yml files in this directory"]


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [*a]",  # an alias inside itself
        "a: &a {b: *a}",
        "[" * 5000,  # nesting deep enough to trouble a recursive parser
        "x: !!python/object/apply:os.system ['true']",  # never run code from YAML
        "\x07",
        "a: 2024-01-01\nkind: Rollout\napiVersion: changeover.dev/v1alpha1\nmetadata: {}\n",
        "kind: Rollout\napiVersion: changeover.dev/v1alpha1\nmetadata: 3\nspec: []\n",
        "? [a, b]\n: c\n",  # a key that is a list
        "lol: &a [1,1,1,1,1,1,1,1,1]\n"
        + "".join(
            f"l{i}: &a{i} [{', '.join([f'*a{i - 1}' if i > 1 else '*a'] * 9)}]\n"
            for i in range(1, 9)
        ),  # billion laughs
    ],
)
def test_garbage_is_a_spec_error_never_a_traceback(text: str) -> None:
    with pytest.raises(errors.SpecError):
        load.parse_rollouts(load.load_text(text, source="junk.yaml"))
