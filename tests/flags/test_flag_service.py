"""FlagService over a real SQLite store: revision numbers, undo, the off switch, OFREP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from changeover import errors
from changeover.flags import ofrep
from changeover.flags.flag_service import FlagService
from changeover.flags.flag_store import FlagStore
from changeover.spec import flag as spec_flag


def flag(weight: int, **spec: Any) -> spec_flag.Flag:
    return spec_flag.Flag.model_validate(
        {
            "metadata": {"name": "f"},
            "spec": {
                "type": "boolean",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "split": [{"variant": "on", "weight": weight}],
                **spec,
            },
        }
    )


@pytest.fixture
def service(tmp_path: Path) -> FlagService:
    clock = iter(range(1000, 2000))
    return FlagService(
        FlagStore(tmp_path / "state.db"), now=lambda: float(next(clock)), evaluation_token="t"
    )


def test_revisions_follow_the_rollout_rule(service: FlagService) -> None:
    assert service.apply([flag(10)])[0] == {
        "kind": "Flag",
        "name": "f",
        "revision": 1,
        "action": "created",
    }
    assert service.apply([flag(10)])[0]["action"] == "unchanged"
    assert service.apply([flag(30)])[0]["revision"] == 2
    undone = service.undo("f")
    assert (undone["undoneTo"], undone["newRevision"], undone["split"]) == (1, 3, {"on": 10})
    assert [h["revision"] for h in service.history("f")] == [1, 2, 3]
    assert service.history("f")[1]["changes"] == ["split"]
    with pytest.raises(errors.NotFound, match=r"no revision 7 \(kept: 1, 2, 3\)"):
        service.undo("f", to_revision=7)
    with pytest.raises(errors.StateError, match="already the current one"):
        service.undo("f", to_revision=3)


def test_abort_turns_the_served_flag_off_until_retry_or_a_new_apply(service: FlagService) -> None:
    service.apply([flag(100)])
    assert service.snapshot()["f"].evaluate({"targetingKey": "u"}).variant == "on"
    assert service.abort("f")["enabled"] is False
    assert service.snapshot()["f"].evaluate({"targetingKey": "u"}).reason == "DISABLED"
    assert service.apply([flag(100)])[0]["action"] == "unchanged"  # still off
    assert service.status("f")["phase"] == "Aborted"
    assert service.retry("f")["enabled"] is True
    assert service.snapshot()["f"].evaluate({"targetingKey": "u"}).variant == "on"
    reasons = [e["reason"] for e in service.events("f")]
    assert reasons == ["Applied", "Aborted", "Retried"]


def test_ofrep_answers(service: FlagService) -> None:
    service.apply([flag(100)])
    flags = service.snapshot()
    status, doc = ofrep.evaluate_flag(flags, "f", b'{"context": {"targetingKey": "u"}}')
    assert (status, doc["value"], doc["variant"], doc["reason"]) == (200, True, "on", "SPLIT")
    assert ofrep.evaluate_flag(flags, "g", b"{}")[0] == 404
    assert ofrep.evaluate_flag(flags, "f", b"[1]")[1]["errorCode"] == "PARSE_ERROR"
    assert ofrep.evaluate_flag(flags, "f", b'{"context": 3}')[1]["errorCode"] == "INVALID_CONTEXT"
    deep = b'{"context": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    assert ofrep.evaluate_flag(flags, "f", deep)[1]["errorCode"] in (
        "PARSE_ERROR",
        "INVALID_CONTEXT",
    )
    assert ofrep.evaluate_flag(flags, "f", b"\xff\xfe")[1]["errorCode"] == "PARSE_ERROR"

    status, body, headers = ofrep.evaluate_flags(flags, b'{"context": {}}', None)
    assert status == 200 and json.loads(body)["flags"][0]["reason"] == "DEFAULT"
    etag = headers["ETag"]
    assert ofrep.evaluate_flags(flags, b'{"context": {}}', f'"x", {etag}')[:2] == (304, b"")
    other = ofrep.evaluate_flags(flags, b'{"context": {"targetingKey": "u"}}', etag)
    assert other[0] == 200  # another context, another answer


def test_two_flags_answering_to_one_key_are_refused(service: FlagService) -> None:
    service.apply([flag(10, key="newCheckout")])
    other = spec_flag.Flag.model_validate(
        {**flag(10).model_dump(by_alias=True), "metadata": {"name": "g"}}
    )
    other = other.model_copy(update={"spec": other.spec.model_copy(update={"key": "newCheckout"})})
    with pytest.raises(errors.SpecError, match="key 'newCheckout' is already the key of flag 'f'"):
        service.apply([other])
    assert [s["name"] for s in service.list_flags()] == ["f"]
    # the flag itself may be applied again under its key
    assert service.apply([flag(20, key="newCheckout")])[0]["action"] == "updated"
    status, doc = ofrep.evaluate_flag(service.snapshot(), "newCheckout", b"{}")
    assert (status, doc["key"]) == (200, "newCheckout")
