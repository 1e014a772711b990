"""The flag evaluator: pure, in-process, a few microseconds per call, never raises.

    >>> from changeover.spec import flag as spec_flag
    >>> f = compile_flag(spec_flag.FlagSpec.model_validate({
    ...     "type": "boolean", "variants": {"on": True, "off": False},
    ...     "defaultVariant": "off", "split": [{"variant": "on", "weight": 20}]}))
    >>> bucket("user-8"), f.evaluate({"targetingKey": "user-8"})
    (12, Resolution(value=True, variant='on', reason='SPLIT'))
    >>> f.evaluate({}).reason  # no targetingKey: the split cannot place the user
    'DEFAULT'

Order: the off switch (``enabled: false`` serves ``defaultVariant``, reason DISABLED), the
rules in order (TARGETING_MATCH), the split (SPLIT), then ``defaultVariant`` (DEFAULT, or
STATIC when the flag has no rules and no split). Reasons are OpenFeature's.

The context is hostile (it arrives in OFREP requests and HTTP headers): an attribute that is
missing or of the wrong type fails its condition; nothing in it is ever executed.
"""

from __future__ import annotations

import dataclasses
import operator
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from changeover import regex
from changeover.spec import flag as spec_flag

TARGETING_KEY = "targetingKey"
Context = Mapping[str, Any]
Test = Callable[[Context], bool]


def bucket(key: str) -> int:
    """The user's bucket 0..99: crc32 of the UTF-8 key, mod 100. The same hash as the
    abTest sticky split (``traffic.builtin.table.bucket``, HAProxy's ``crc32`` map), so a
    user at 10% of a flag is a user at 10% of an A/B test; tests check they agree."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % 100


@dataclasses.dataclass(frozen=True, slots=True)
class Resolution:
    value: Any
    variant: str
    reason: str  # STATIC, DEFAULT, TARGETING_MATCH, SPLIT, DISABLED


@dataclasses.dataclass(frozen=True, slots=True)
class _Split:
    """Consecutive bucket ranges: entry i covers [sum of weights before i, + weight i)."""

    bounds: tuple[tuple[int, str], ...]  # (exclusive upper bucket, variant), ascending

    def place(self, context: Context) -> str | None:
        key = context.get(TARGETING_KEY)
        if not isinstance(key, str) or not key:
            return None
        b = bucket(key)
        for upper, variant in self.bounds:
            if b < upper:
                return variant
        return None


def _split(entries: Sequence[spec_flag.SplitEntry]) -> _Split | None:
    bounds, upper = [], 0
    for entry in entries:
        if entry.weight:
            upper += entry.weight
            bounds.append((upper, entry.variant))
    return _Split(tuple(bounds)) if bounds else None


@dataclasses.dataclass(frozen=True, slots=True)
class _Rule:
    tests: tuple[Test, ...]
    variant: str | None
    split: _Split | None

    def outcome(self, context: Context) -> str | None:
        for test in self.tests:
            if not test(context):
                return None
        if self.split is not None:
            return self.split.place(context)
        return self.variant


class CompiledFlag:
    """A flag ready to evaluate; build with ``compile_flag`` (once per spec revision).

    Every answer is one of a few (variant, reason) pairs, built here once: ``evaluate``
    allocates nothing."""

    __slots__ = ("_answers", "_default", "_enabled", "_rules", "_split", "variants")

    def __init__(
        self,
        *,
        variants: Mapping[str, Any],
        default: str,
        enabled: bool,
        rules: tuple[_Rule, ...],
        split: _Split | None,
    ) -> None:
        self.variants = variants
        self._enabled = enabled
        self._rules = rules
        self._split = split
        self._answers = {
            (name, reason): Resolution(value, name, reason)
            for name, value in variants.items()
            for reason in ("TARGETING_MATCH", "SPLIT")
        }
        static = not rules and split is None
        self._default = Resolution(variants[default], default, "STATIC" if static else "DEFAULT")
        if not enabled:
            self._default = Resolution(variants[default], default, "DISABLED")

    def evaluate(self, context: Context) -> Resolution:
        """The variant ``context`` gets, its value and why."""
        if not self._enabled:
            return self._default
        for rule in self._rules:
            variant = rule.outcome(context)
            if variant is not None:
                return self._answers[variant, "TARGETING_MATCH"]
        if self._split is not None:
            variant = self._split.place(context)
            if variant is not None:
                return self._answers[variant, "SPLIT"]
        return self._default


def compile_flag(spec: spec_flag.FlagSpec) -> CompiledFlag:
    rules = tuple(
        _Rule(
            tests=tuple(compile_condition(c) for c in rule.when),
            variant=rule.variant,
            split=_split(rule.split) if rule.split is not None else None,
        )
        for rule in spec.rules
    )
    return CompiledFlag(
        variants=dict(spec.variants),
        default=spec.default_variant,
        enabled=spec.enabled,
        rules=rules,
        split=_split(spec.split),
    )


# --- conditions ----------------------------------------------------------------------


def compile_condition(condition: spec_flag.Condition) -> Test:
    """A function of the context telling whether ``condition`` holds."""
    name = condition.attribute
    test = _VALUE_TESTS[condition.operator](condition.operand)
    missing = object()

    def holds(context: Context) -> bool:
        value = context.get(name, missing)
        return value is not missing and test(value)

    if condition.negate:
        return lambda context: not holds(context)
    return holds


def _key(value: object) -> tuple[str, object] | None:
    """Equality that keeps types apart (True is not 1, "1" is not 1; 1 is 1.0)."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)  # 1 == 1.0 and they hash alike; no float() of a huge int
    if isinstance(value, str):
        return ("s", value)
    return None


def _in(values: list[Any]) -> Callable[[Any], bool]:
    keys = frozenset(_key(v) for v in values)
    return lambda value: _key(value) in keys


def _not_in(values: list[Any]) -> Callable[[Any], bool]:
    keys = frozenset(_key(v) for v in values)
    return lambda value: _key(value) is not None and _key(value) not in keys


def _text(check: Callable[[str], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and check(value)


def _regex(pattern: str) -> Callable[[Any], bool]:
    matches = regex.full_matcher(pattern)
    return _text(lambda value: matches(value.encode("utf-8", "surrogatepass")))


def _email_domain(domains: list[str]) -> Callable[[Any], bool]:
    wanted = frozenset(d.lower().lstrip("@") for d in domains)
    return _text(lambda value: "@" in value and value.rpartition("@")[2].lower() in wanted)


def _number(compare: Callable[[float, float], bool], bound: float) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and compare(value, bound)
        )

    return check


def _semver(text: str) -> Callable[[Any], bool]:
    op, version = spec_flag.parse_semver_range(text)
    want = spec_flag.parse_semver(version)
    assert want is not None  # parse_semver_range checked it

    def check(value: Any) -> bool:
        got = spec_flag.parse_semver(value) if isinstance(value, str) else None
        return got is not None and semver_holds(op, got, want)

    return check


def semver_holds(op: str, got: spec_flag.SemVer, want: spec_flag.SemVer) -> bool:
    """``got op want`` on parsed versions; ``^`` is same major (same minor below 1.0, as
    npm and flagd), ``~`` same major and minor, both at least ``want``."""
    if op == "^":
        same = got[:2] == want[:2] if want[0] == 0 else got[0] == want[0]
        return same and got >= want
    if op == "~":
        return got[:2] == want[:2] and got >= want
    return _COMPARE[op](got, want)


_COMPARE: dict[str, Callable[[spec_flag.SemVer, spec_flag.SemVer], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_VALUE_TESTS: dict[str, Callable[[Any], Callable[[Any], bool]]] = {
    "in": _in,
    "notIn": _not_in,
    "startsWith": lambda s: _text(lambda v: v.startswith(s)),
    "endsWith": lambda s: _text(lambda v: v.endswith(s)),
    "contains": lambda s: _text(lambda v: s in v),
    "regex": _regex,
    "emailDomain": _email_domain,
    "semver": _semver,
    "gt": lambda b: _number(operator.gt, b),
    "gte": lambda b: _number(operator.ge, b),
    "lt": lambda b: _number(operator.lt, b),
    "lte": lambda b: _number(operator.le, b),
}
