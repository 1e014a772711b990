"""The flag evaluator against hand-computed cases: off switch, rules, split, stickiness.

Buckets used below (crc32 of the key mod 100, computed by hand with ``zlib.crc32``):
bob 4, grace 3, trent 18, erin 22, alice 35, walter 50, victor 70, judy 99.
"""

from __future__ import annotations

from typing import Any

import pytest

from changeover.flags import evaluate
from changeover.spec import flag as spec_flag

BUCKETS = {
    "bob": 4,
    "grace": 3,
    "trent": 18,
    "erin": 22,
    "alice": 35,
    "walter": 50,
    "victor": 70,
    "judy": 99,
}


def flag(**spec: Any) -> evaluate.CompiledFlag:
    body = {"type": "boolean", "variants": {"on": True, "off": False}, "defaultVariant": "off"}
    return evaluate.compile_flag(spec_flag.FlagSpec.model_validate({**body, **spec}))


def test_buckets_are_the_hand_computed_ones_and_the_ab_test_hash() -> None:
    from changeover.traffic.builtin import table

    assert {k: evaluate.bucket(k) for k in BUCKETS} == BUCKETS
    for i in range(2000):
        key = f"user-{i}"
        assert evaluate.bucket(key) == table.bucket(key.encode())


def test_split_gives_consecutive_bucket_ranges_in_order() -> None:
    f = evaluate.compile_flag(
        spec_flag.FlagSpec.model_validate(
            {
                "type": "string",
                "variants": {"a": "A", "b": "B", "c": "C"},
                "defaultVariant": "c",
                "split": [{"variant": "a", "weight": 10}, {"variant": "b", "weight": 30}],
            }
        )
    )
    got = {k: (f.evaluate({"targetingKey": k}).variant) for k in BUCKETS}
    # a: buckets 0-9, b: 10-39, default c: 40-99
    assert got == {
        "bob": "a",
        "grace": "a",
        "trent": "b",
        "erin": "b",
        "alice": "b",
        "walter": "c",
        "victor": "c",
        "judy": "c",
    }
    assert f.evaluate({"targetingKey": "trent"}) == evaluate.Resolution("B", "b", "SPLIT")
    assert f.evaluate({"targetingKey": "judy"}) == evaluate.Resolution("C", "c", "DEFAULT")


def test_no_targeting_key_means_the_default() -> None:
    f = flag(split=[{"variant": "on", "weight": 100}])
    assert f.evaluate({"targetingKey": "judy"}).variant == "on"
    for context in ({}, {"targetingKey": ""}, {"targetingKey": 7}, {"targetingKey": None}):
        assert f.evaluate(context) == evaluate.Resolution(False, "off", "DEFAULT")


def test_no_user_moves_from_on_to_off_as_the_percentage_grows() -> None:
    users = [f"user-{i}" for i in range(3000)]
    on_before: set[str] = set()
    for weight in range(0, 101, 5):
        f = flag(split=[{"variant": "on", "weight": weight}])
        on = {u for u in users if f.evaluate({"targetingKey": u}).value is True}
        assert on_before <= on, f"users left 'on' at {weight}%: {sorted(on_before - on)[:5]}"
        # the share is the weight, within sampling noise of 3000 users
        assert abs(len(on) / len(users) - weight / 100) < 0.03
        on_before = on
    assert len(on_before) == len(users)


def test_the_off_switch_wins_over_rules_and_split() -> None:
    rules = [{"when": [{"attribute": "email", "endsWith": "@example.com"}], "variant": "on"}]
    f = flag(enabled=False, rules=rules, split=[{"variant": "on", "weight": 100}])
    context = {"targetingKey": "bob", "email": "a@example.com"}
    assert f.evaluate(context) == evaluate.Resolution(False, "off", "DISABLED")
    assert flag(rules=rules).evaluate(context).reason == "TARGETING_MATCH"


def test_rules_first_match_wins_and_all_conditions_must_hold() -> None:
    f = evaluate.compile_flag(
        spec_flag.FlagSpec.model_validate(
            {
                "type": "number",
                "variants": {"low": 1, "mid": 2.5, "high": 10},
                "defaultVariant": "low",
                "rules": [
                    {
                        "name": "staff on new app",
                        "when": [
                            {"attribute": "email", "emailDomain": ["Example.com"]},
                            {"attribute": "appVersion", "semver": ">=2.1.0"},
                        ],
                        "variant": "high",
                    },
                    {"when": [{"attribute": "country", "in": ["DE", "FR"]}], "variant": "mid"},
                ],
            }
        )
    )
    staff = {"email": "ann@EXAMPLE.COM", "appVersion": "2.1.0", "country": "DE"}
    assert f.evaluate(staff) == evaluate.Resolution(10, "high", "TARGETING_MATCH")
    assert f.evaluate({**staff, "appVersion": "2.1.0-rc.1"}).variant == "mid"
    assert f.evaluate({**staff, "email": "ann@sub.example.com"}).variant == "mid"
    assert f.evaluate({**staff, "country": "US", "appVersion": "2.0.9"}) == evaluate.Resolution(
        1, "low", "DEFAULT"
    )


@pytest.mark.parametrize(
    ("condition", "value", "holds"),
    [
        ({"in": ["a", 1, True]}, "a", True),
        ({"in": ["a", 1, True]}, 1.0, True),
        ({"in": ["a", 1]}, True, False),  # True is not 1
        ({"in": ["1"]}, 1, False),  # "1" is not 1
        ({"notIn": ["a"]}, "b", True),
        ({"notIn": ["a"]}, "a", False),
        ({"notIn": ["a"]}, ["b"], False),  # not a scalar: fails
        ({"startsWith": "beta-"}, "beta-7", True),
        ({"startsWith": "beta-"}, 7, False),
        ({"endsWith": "@example.com"}, "x@example.com", True),
        ({"contains": "bot"}, "Googlebot/2.1", True),
        ({"regex": "v[0-9]+"}, "v12", True),
        ({"regex": "v[0-9]+"}, "xv12", False),  # the whole value
        ({"emailDomain": ["example.com"]}, "a@b@Example.COM", True),
        ({"emailDomain": ["example.com"]}, "example.com", False),
        ({"semver": "^1.2.0"}, "1.9.0", True),
        ({"semver": "^1.2.0"}, "2.0.0", False),
        ({"semver": "^0.2.0"}, "0.3.0", False),
        ({"semver": "~1.2.0"}, "1.2.9", True),
        ({"semver": "~1.2.0"}, "1.3.0", False),
        ({"semver": "<1.0.0"}, "1.0.0-alpha", True),
        ({"semver": "!=1.0.0"}, "1.0.0+build.5", False),
        ({"semver": "=1.0.0"}, "1.0", False),  # not a version: fails
        ({"gt": 3}, 3.5, True),
        ({"gte": 3}, 3, True),
        ({"lt": 3}, True, False),  # a boolean is not a number
        ({"lte": 3}, "2", False),
    ],
)
def test_each_operator(condition: dict[str, Any], value: object, holds: bool) -> None:
    c = spec_flag.Condition.model_validate({"attribute": "x", **condition})
    assert evaluate.compile_condition(c)({"x": value}) is holds
    negated = spec_flag.Condition.model_validate({"attribute": "x", "negate": True, **condition})
    assert evaluate.compile_condition(negated)({"x": value}) is not holds


def test_a_missing_attribute_fails_and_negate_flips_it() -> None:
    c = spec_flag.Condition.model_validate({"attribute": "plan", "in": ["pro"]})
    assert evaluate.compile_condition(c)({}) is False
    n = spec_flag.Condition.model_validate({"attribute": "plan", "in": ["pro"], "negate": True})
    assert evaluate.compile_condition(n)({}) is True


def test_a_rule_split_only_places_users_it_covers() -> None:
    f = flag(
        rules=[
            {
                "when": [{"attribute": "plan", "in": ["pro"]}],
                "split": [{"variant": "on", "weight": 20}],
            }
        ]
    )
    assert f.evaluate({"plan": "pro", "targetingKey": "trent"}).reason == "TARGETING_MATCH"
    assert f.evaluate({"plan": "pro", "targetingKey": "erin"}).reason == "DEFAULT"
    assert flag().evaluate({"targetingKey": "trent"}).reason == "STATIC"


def test_hostile_context_never_raises() -> None:
    operators: list[tuple[str, dict[str, Any]]] = [
        ("s", {"semver": ">1.0.0"}),
        ("e", {"emailDomain": ["x.org"]}),
        ("r", {"regex": "a+"}),
        ("n", {"gt": 1}),
        ("i", {"in": ["x"]}),
    ]
    f = flag(
        rules=[{"when": [{"attribute": a, **op}], "variant": "on"} for a, op in operators],
        split=[{"variant": "on", "weight": 50}],
    )
    weird: list[object] = [None, [], {}, {"a": 1}, "\udcff", "9" * 5000, float("nan"), 10**400]
    for value in weird:
        context = dict.fromkeys(["s", "e", "r", "n", "i", "targetingKey"], value)
        assert f.evaluate(context).variant in ("on", "off")
