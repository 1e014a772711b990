"""Flag documents through ``changeover lint``'s path: every bad field named, with its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

from changeover import validation
from changeover.spec import load

GOOD = """\
apiVersion: changeover.dev/v1alpha1
kind: Flag
metadata: {name: checkout}
spec:
  type: object
  variants: {"old": {"layout": 1}, "new": {"layout": 2}}
  defaultVariant: old
  rules:
    - name: testers
      when: [{attribute: email, emailDomain: [example.com]}, {attribute: v, semver: "^2.0.0"}]
      variant: new
  split: [{variant: new, weight: 5}]
  requestContext: {targetingKey: {header: x-user}, email: {cookie: email}}
"""


def lint(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "flag.yaml"
    path.write_text(textwrap.dedent(text))
    return [str(p).replace(f"{path}: ", "") for p in validation.lint(path)]


def test_a_good_flag_parses_beside_a_rollout_kind(tmp_path: Path) -> None:
    assert lint(tmp_path, GOOD) == []
    specs = load.parse_documents(load.load_text(GOOD, source="flag.yaml"))
    assert [f.name for f in specs.flags] == ["checkout"] and specs.rollouts == []
    flag = specs.flags[0]
    assert flag.spec.rules[0].when[1].semver == "^2.0.0"
    assert flag.to_json_dict()["spec"]["rules"][0]["when"][0] == {
        "attribute": "email",
        "emailDomain": ["example.com"],
        "negate": False,
    }


def test_every_bad_field_is_named_with_its_line(tmp_path: Path) -> None:
    got = lint(
        tmp_path,
        """\
        apiVersion: changeover.dev/v1alpha1
        kind: Flag
        metadata: {name: checkout}
        spec:
          type: boolean
          variants: {"on": true, "off": 3}
          defaultVariant: "of"
          rules:
            - when: [{attribute: email, startsWith: a, endsWith: b}]
              variant: "on"
            - when: [{attribute: v, semver: "bigger 1"}, {attribute: r, regex: "(?=x)"}]
              variant: nope
          split: [{variant: "on", weight: 70}, {variant: "on", weight: 40}]
          rollout: {variant: "on", steps: [{setCanaryScale: {replicas: 1}}]}
          colour: red
        """,
    )
    assert got == [
        "spec.rules[0].when[0]: expected exactly one operator of in, notIn, startsWith, "
        "endsWith, contains, regex, emailDomain, semver, gt, gte, lt, lte; got startsWith, "
        "endsWith (line 9)",
        "spec.rules[1].when[0].semver: expected a comparison and a semantic version such as "
        "'>=1.2.0', '^2.0.0' or '~1.4.0' (operators = != < <= > >= ^ ~), got 'bigger 1' "
        "(line 11)",
        "spec.rules[1].when[1].regex: RE2 cannot match it in linear time: invalid perl "
        "operator: (?= (line 11)",
        "spec.rollout.steps: step 0: a flag rollout takes setWeight, pause and analysis "
        "steps, got setCanaryScale (line 14)",
        "spec: unknown field 'colour' (did you mean 'rollout'?) (line 15)",
        "spec.variants.off: expected a boolean value, got a number (line 6)",
        "spec.split: weights add up to 110; expected at most 100 (line 13)",
        "spec.split[1].variant: variant 'on' appears more than once (line 13)",
        "spec.defaultVariant: unknown variant 'of'; expected one of off, on (line 7)",
        "spec.rules[1].variant: unknown variant 'nope'; expected one of off, on (line 12)",
    ]


def test_unquoted_on_is_explained_not_reported_as_unknown(tmp_path: Path) -> None:
    got = lint(tmp_path, GOOD.replace('{"old": {"layout": 1}', '{on: {"layout": 1}'))
    assert got == [
        "spec.variants: expected a variant name; YAML reads an unquoted "
        'on/off/yes/no/true/false as a boolean: quote it ("on") (line 6)'
    ]


def test_two_flags_of_one_name_in_one_apply(tmp_path: Path) -> None:
    path = tmp_path / "flag.yaml"
    assert lint(tmp_path, GOOD + "---\n" + GOOD) == [
        f"{path}#2: metadata.name: flag 'checkout' is also defined in {path}#1"
    ]
