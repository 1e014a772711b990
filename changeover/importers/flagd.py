"""flagd flag definitions (``{"flags": {...}, "$evaluators": {...}}``) into Flag documents.

Each flagd flag becomes one ``kind: Flag``: ``state`` → ``enabled``, ``variants`` and
``defaultVariant`` as they are, the type read from the variants' values, the key kept as
``spec.key`` when it is not a valid Kubernetes name. ``targeting`` (JsonLogic) is carried
over when it is made of what a Flag can say:

- ``if`` chains: each condition an ``and``/``or`` of comparisons; each branch a variant, a
  nested ``if``, or ``fractional``; an ``else`` becomes a catch-all rule;
- comparisons of one ``var`` with literals: ``==``, ``!=``, ``in`` (list membership, or a
  substring of a string), ``starts_with``, ``ends_with``, ``sem_ver``, ``<``, ``<=``,
  ``>``, ``>=``, ``!`` of any of them; ``$ref`` to ``$evaluators``;
- ``fractional`` becomes a split: weights turned into percentages, users bucketed by
  ``targetingKey`` with changeover's hash (so a user may land in another bucket than
  under flagd; the shares stay the same).

Anything else (``var`` of ``$flagd.*``, arithmetic, ``cat``, ``substr``, an ``if`` without
a variant in a branch) drops the flag's whole targeting, with a note naming the path: half
a rule set would serve variants flagd never would; without targeting everyone gets the
default variant. Flag ``metadata`` is dropped with a note.
"""

from __future__ import annotations

import re
from typing import Any

from changeover.importers.report import Notes, Result
from changeover.spec import models

JSON = dict[str, Any]
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_COMPARE = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_SEMVER_OPS = {"=", "!=", "<", "<=", ">", ">=", "^", "~"}


class Unsupported(Exception):
    """A part of the targeting a Flag cannot express; ``path`` names it."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why


def is_flagd(doc: object) -> bool:
    """A flagd definition file: a ``flags`` mapping and no Kubernetes apiVersion."""
    return isinstance(doc, dict) and isinstance(doc.get("flags"), dict) and "apiVersion" not in doc


def flag_definitions(doc: JSON, source: str) -> Result:
    notes = Notes(source)
    result = Result()
    for key in doc:
        if key not in ("flags", "$evaluators", "$schema"):
            notes.drop(key, "not part of a flag: left out")
    evaluators = doc.get("$evaluators")
    evaluators = evaluators if isinstance(evaluators, dict) else {}
    for key, flag in doc["flags"].items():
        converted = _flag(str(key), flag, evaluators, notes)
        if converted is not None:
            result.documents.append(converted)
    result.notes += notes.items
    return result


def _flag(key: str, flag: object, evaluators: JSON, notes: Notes) -> JSON | None:
    where = f"flags.{key}"
    if not isinstance(flag, dict):
        notes.drop(where, "expected a mapping: left out")
        return None
    found = flag.get("variants")
    variants: JSON = found if isinstance(found, dict) else {}
    spec: JSON = {"type": _type(variants, where, notes), "variants": variants}
    name = _name(key)
    if name != key:
        spec = {"key": key, **spec}
        notes.change(
            f"{where}", f"named {name} (a Kubernetes name); spec.key keeps {key!r}", loss=False
        )
    default = flag.get("defaultVariant")
    if default is None:
        default = next(iter(variants), "")
        notes.change(
            f"{where}.defaultVariant",
            f"none given (flagd answers the code default): {default!r} is served instead",
        )
    spec["defaultVariant"] = default
    state = flag.get("state", "ENABLED")
    spec["enabled"] = state == "ENABLED"
    if state not in ("ENABLED", "DISABLED"):
        notes.change(f"{where}.state", f"unknown state {state!r}: imported as disabled")
    if state == "DISABLED":
        notes.change(
            f"{where}.state",
            "flagd answers a disabled flag with an error; changeover serves the default "
            "variant with reason DISABLED",
            loss=False,
        )
    if "metadata" in flag:
        notes.drop(f"{where}.metadata", "flag metadata is not carried over")
    for field in flag:
        if field not in ("state", "variants", "defaultVariant", "targeting", "metadata"):
            notes.drop(f"{where}.{field}", "not supported by changeover")
    targeting = flag.get("targeting")
    if targeting not in (None, {}):
        try:
            spec.update(_targeting(targeting, evaluators, f"{where}.targeting", notes))
        except Unsupported as exc:
            notes.drop(
                f"{where}.targeting",
                f"{exc.path}: {exc.why}; without targeting everyone gets the default variant",
            )
    return {
        "apiVersion": models.API_VERSION,
        "kind": "Flag",
        "metadata": {"name": name},
        "spec": spec,
    }


def _name(key: str) -> str:
    if _NAME.match(key) and len(key) <= 63:
        return key
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", key).lower()
    name = re.sub(r"[^a-z0-9]+", "-", snake).strip("-")[:63].strip("-")
    return name or "flag"


def _type(variants: JSON, where: str, notes: Notes) -> str:
    kinds = set()
    for value in variants.values():
        if isinstance(value, bool):
            kinds.add("boolean")
        elif isinstance(value, int | float):
            kinds.add("number")
        elif isinstance(value, str):
            kinds.add("string")
        else:
            kinds.add("object")
    if len(kinds) == 1:
        return kinds.pop()
    notes.change(f"{where}.variants", f"values of more than one type ({', '.join(sorted(kinds))})")
    return "object"


# --- targeting ------------------------------------------------------------------------


def _targeting(logic: Any, evaluators: JSON, path: str, notes: Notes) -> JSON:
    """``rules`` and/or ``split`` for a targeting expression; Unsupported otherwise."""
    logic = _deref(logic, evaluators, path)
    if isinstance(logic, dict) and set(logic) == {"fractional"}:
        return {"split": _fractional(logic["fractional"], evaluators, path, notes)}
    rules = _branches(logic, [], evaluators, path, notes)
    return {"rules": rules}


def _branches(
    logic: Any, outer: list[JSON], evaluators: JSON, path: str, notes: Notes
) -> list[JSON]:
    """Rules for an ``if`` chain (or a bare outcome), each also requiring ``outer``."""
    logic = _deref(logic, evaluators, path)
    if isinstance(logic, str):
        return [{"when": outer, "variant": logic}]
    if isinstance(logic, dict) and set(logic) == {"fractional"}:
        return [{"when": outer, "split": _fractional(logic["fractional"], evaluators, path, notes)}]
    if not (isinstance(logic, dict) and set(logic) == {"if"} and isinstance(logic["if"], list)):
        raise Unsupported(path, f"expected an if, a variant name or fractional, got {_show(logic)}")
    args = logic["if"]
    rules: list[JSON] = []
    for i in range(0, len(args) - 1, 2):
        for conditions in _disjuncts(args[i], evaluators, f"{path}.if[{i}]"):
            rules += _branches(
                args[i + 1], outer + conditions, evaluators, f"{path}.if[{i + 1}]", notes
            )
    if len(args) % 2 == 1 and args[-1] is not None:
        rules += _branches(args[-1], outer, evaluators, f"{path}.if[{len(args) - 1}]", notes)
    return rules


def _disjuncts(logic: Any, evaluators: JSON, path: str) -> list[list[JSON]]:
    """A condition as an ``or`` of ``and``\\ s of comparisons (one rule per ``or`` arm)."""
    logic = _deref(logic, evaluators, path)
    if isinstance(logic, dict) and set(logic) == {"or"} and isinstance(logic["or"], list):
        return [
            c
            for i, arm in enumerate(logic["or"])
            for c in _disjuncts(arm, evaluators, f"{path}.or[{i}]")
        ]
    return [_conjuncts(logic, evaluators, path)]


def _conjuncts(logic: Any, evaluators: JSON, path: str) -> list[JSON]:
    logic = _deref(logic, evaluators, path)
    if isinstance(logic, dict) and set(logic) == {"and"} and isinstance(logic["and"], list):
        return [
            c
            for i, arm in enumerate(logic["and"])
            for c in _conjuncts(arm, evaluators, f"{path}.and[{i}]")
        ]
    return [_comparison(logic, evaluators, path)]


def _comparison(logic: Any, evaluators: JSON, path: str) -> JSON:
    logic = _deref(logic, evaluators, path)
    if not (isinstance(logic, dict) and len(logic) == 1):
        raise Unsupported(path, f"expected a comparison, got {_show(logic)}")
    ((op, args),) = logic.items()
    if op == "!":
        inner = args[0] if isinstance(args, list) and len(args) == 1 else args
        condition = _comparison(inner, evaluators, f"{path}.!")
        return {**condition, "negate": not condition.get("negate", False)}
    if not isinstance(args, list) or len(args) < 2:
        raise Unsupported(path, f"{op}: expected a list of arguments")
    attribute, literals, flipped = _var_and_literals(args, path, op)
    if op in ("==", "!="):
        return {"attribute": attribute, "in": [literals[0]], "negate": op == "!="}
    if op == "in":
        if flipped and isinstance(literals[0], list):  # {"in": [{"var": x}, [a, b]]}
            return {"attribute": attribute, "in": literals[0]}
        if not flipped and isinstance(literals[0], str):  # {"in": ["@x.com", {"var": x}]}
            return {"attribute": attribute, "contains": literals[0]}
        raise Unsupported(path, "in: expected a var in a list, or a string in a var")
    if op in ("starts_with", "ends_with") and flipped and isinstance(literals[0], str):
        return {
            "attribute": attribute,
            "startsWith" if op == "starts_with" else "endsWith": literals[0],
        }
    if op == "sem_ver" and flipped and len(literals) == 2 and literals[0] in _SEMVER_OPS:
        return {"attribute": attribute, "semver": f"{literals[0]}{literals[1]}"}
    if op in _COMPARE and len(args) == 2 and _number(literals[0]):
        compare = op if flipped else _MIRROR[op]
        return {"attribute": attribute, _COMPARE[compare]: literals[0]}
    raise Unsupported(path, f"the operation {op!r} with these arguments is not supported")


def _var_and_literals(args: list[Any], path: str, op: str) -> tuple[str, list[Any], bool]:
    """The one ``var`` among ``args``, the other (literal) arguments, and whether the var
    came first."""
    names = [_var(a) for a in args]
    found = [i for i, n in enumerate(names) if n is not None]
    if len(found) != 1:
        raise Unsupported(path, f"{op}: expected exactly one var compared with literals")
    literals = [a for i, a in enumerate(args) if i != found[0]]
    for value in literals:
        if isinstance(value, dict):
            raise Unsupported(path, f"{op}: expected literal values, got {_show(value)}")
    name = names[found[0]]
    assert name is not None
    if name.startswith("$flagd."):
        raise Unsupported(path, f"{name} is flagd's own context; changeover has no such attribute")
    return name, literals, found[0] == 0


def _var(value: Any) -> str | None:
    if isinstance(value, dict) and set(value) == {"var"}:
        name = value["var"]
        if isinstance(name, list) and len(name) == 1:
            name = name[0]
        return name if isinstance(name, str) else None
    return None


def _fractional(args: Any, evaluators: JSON, path: str, notes: Notes) -> list[JSON]:
    if not isinstance(args, list) or not args:
        raise Unsupported(path, "fractional: expected a list of [variant, weight]")
    if not isinstance(args[0], list):
        if _var(args[0]) != "targetingKey":
            notes.change(
                f"{path}.fractional[0]",
                f"buckets by {_show(args[0])} in flagd; changeover buckets by targetingKey",
            )
        args = args[1:]
    entries = []
    for i, item in enumerate(args):
        if not (isinstance(item, list) and 1 <= len(item) <= 2 and isinstance(item[0], str)):
            raise Unsupported(f"{path}.fractional[{i}]", "expected [variant, weight]")
        weight = item[1] if len(item) == 2 else 1
        if not _number(weight) or weight < 0:
            raise Unsupported(f"{path}.fractional[{i}]", "expected a non-negative weight")
        entries.append((item[0], float(weight)))
    total = sum(w for _, w in entries)
    if total <= 0:
        raise Unsupported(path, "fractional: the weights add up to 0")
    percents = _percentages([w for _, w in entries], total)
    if any(abs(p - w * 100 / total) > 1e-9 for p, (_, w) in zip(percents, entries, strict=True)):
        notes.change(f"{path}.fractional", "weights rounded to whole percents (they add up to 100)")
    notes.change(
        f"{path}.fractional",
        "users are bucketed by changeover's hash of targetingKey (crc32), not flagd's "
        "murmur3: the shares are the same, a given user may land on another variant",
        loss=False,
    )
    return [{"variant": v, "weight": p} for (v, _), p in zip(entries, percents, strict=True)]


def _percentages(weights: list[float], total: float) -> list[int]:
    """Whole percents adding up to 100, by largest remainder."""
    exact = [w * 100 / total for w in weights]
    floors = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: exact[i] - floors[i], reverse=True)
    for i in order[: 100 - sum(floors)]:
        floors[i] += 1
    return floors


def _deref(logic: Any, evaluators: JSON, path: str) -> Any:
    if isinstance(logic, dict) and set(logic) == {"$ref"}:
        target = evaluators.get(str(logic["$ref"]))
        if target is None:
            raise Unsupported(path, f"$ref {logic['$ref']!r} names no entry of $evaluators")
        return target
    return logic


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
