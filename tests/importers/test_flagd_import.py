"""flagd flag definitions imported as Flags, every dropped or changed field named, and the
imported flags evaluating as flagd's rules say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from changeover import errors, importers
from changeover.flags import evaluate
from changeover.spec import flag as spec_flag

FIXTURE = Path(__file__).parent / "fixtures" / "flagd" / "flags.flagd.json"


def imported() -> tuple[dict[str, dict[str, Any]], list[str]]:
    result = importers.import_path(str(FIXTURE))
    docs = {d["metadata"]["name"]: d for d in result.documents}
    return docs, [str(n).replace(f"{FIXTURE}: ", "") for n in result.notes]


def compiled(doc: dict[str, Any]) -> evaluate.CompiledFlag:
    return evaluate.compile_flag(spec_flag.Flag.model_validate(doc).spec)


def test_every_flag_is_imported_and_every_loss_named() -> None:
    docs, notes = imported()
    assert sorted(docs) == [
        "discount",
        "header-color",
        "my-bool-flag",
        "new-welcome-banner",
        "timed",
    ]
    assert docs["my-bool-flag"]["spec"] == {
        "key": "myBoolFlag",
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "defaultVariant": "on",
        "enabled": True,
    }
    assert docs["header-color"]["spec"]["enabled"] is False
    assert docs["header-color"]["spec"]["split"] == [
        {"variant": "red", "weight": 34},
        {"variant": "blue", "weight": 33},
        {"variant": "green", "weight": 33},
    ]
    assert "rules" not in docs["timed"]["spec"]
    assert notes == [
        "flags.myBoolFlag: changed: named my-bool-flag (a Kubernetes name); spec.key keeps "
        "'myBoolFlag'",
        "flags.new-welcome-banner.metadata: dropped: flag metadata is not carried over",
        "flags.new-welcome-banner.targeting.if[3].fractional: changed: users are bucketed by "
        "changeover's hash of targetingKey (crc32), not flagd's murmur3: the shares are the "
        "same, a given user may land on another variant",
        "flags.header-color.state: changed: flagd answers a disabled flag with an error; "
        "changeover serves the default variant with reason DISABLED",
        "flags.header-color.targeting.fractional[0]: changed: buckets by {'cat': [{'var': "
        "'$flagd.flagKey'}, {'var': 'email'}]} in flagd; changeover buckets by targetingKey",
        "flags.header-color.targeting.fractional: changed: weights rounded to whole percents "
        "(they add up to 100)",
        "flags.header-color.targeting.fractional: changed: users are bucketed by changeover's "
        "hash of targetingKey (crc32), not flagd's murmur3: the shares are the same, a given "
        "user may land on another variant",
        "flags.timed.targeting: dropped: flags.timed.targeting.if[0]: $flagd.timestamp is "
        "flagd's own context; changeover has no such attribute; without targeting everyone "
        "gets the default variant",
    ]


@pytest.mark.parametrize(
    ("context", "variant"),
    [
        ({"email": "ann@example.com"}, "on"),  # ends_with
        ({"email": "bo@staff.example.org"}, "on"),  # $ref: "in" as a substring
        ({"appVersion": "2.1.0", "country": "DE", "plan": "pro", "targetingKey": "bob"}, "on"),
        ({"appVersion": "2.1.0", "country": "DE", "plan": "pro", "targetingKey": "alice"}, "off"),
        ({"appVersion": "2.1.0", "country": "DE", "plan": "free", "targetingKey": "bob"}, "off"),
        ({"appVersion": "2.0.9", "country": "DE", "targetingKey": "bob"}, "off"),
        ({}, "off"),
    ],
)
def test_imported_rules_evaluate_as_flagd_would(context: dict[str, Any], variant: str) -> None:
    # fractional 1:3 → on for buckets 0-24: bob (bucket 4) in, alice (35) out
    docs, _ = imported()
    assert compiled(docs["new-welcome-banner"]).evaluate(context).variant == variant


def test_numbers_and_a_null_else() -> None:
    docs, _ = imported()
    flag = compiled(docs["discount"])
    assert flag.evaluate({"age": 20}).value == 10
    assert flag.evaluate({"age": 30}).value == 0


def test_a_file_that_is_not_flagd_or_broken(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    flag = '{"state": "ENABLED", "variants": {"a": 1, "b": "s"}, "defaultVariant": "c"}'
    bad.write_text('{"flags": {"x": ' + flag + "}}")
    with pytest.raises(errors.SpecError) as refused:
        importers.import_path(str(bad))
    text = str(refused.value)
    assert "spec.defaultVariant: unknown variant 'c'" in text
