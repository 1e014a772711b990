"""The Flag spec: a release flag's variants, targeting rules, sticky split and off switch.

A flag answers "which variant does this evaluation context get?"::

    apiVersion: changeover.dev/v1alpha1
    kind: Flag
    metadata: {name: new-checkout}
    spec:
      type: boolean
      variants: {"on": true, "off": false}
      defaultVariant: "off"
      enabled: true                # false: everyone gets defaultVariant (reason DISABLED)
      rules:                       # first match wins; every condition of a rule must hold
        - name: testers
          variant: "on"
          when: [{attribute: email, emailDomain: [example.com]}]
      split: [{variant: "on", weight: 10}]   # 10% of users by targetingKey, sticky

Evaluation order (``changeover.flags.evaluate``): the off switch, then the rules in order,
then the split, then ``defaultVariant``. The split puts a user in bucket 0..99 by the same
hash the abTest strategy's sticky split uses (crc32 of the key, mod 100) and gives the
entries consecutive bucket ranges in order, so growing the last entry's weight only moves
users from the default to it: nobody goes from on back to off as a percentage grows.

``requestContext`` says where the builtin router finds the context when it evaluates the
flag per request (a header or a cookie per attribute; ``targetingKey`` is the user key).
``rollout`` walks the split's ``variant`` weight through canary-like steps.

Conditions are data, not code: one operator per condition, no expressions, no eval.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from changeover import regex
from changeover.spec import analysis as spec_analysis
from changeover.spec import models

FLAG_TYPES = ("boolean", "string", "number", "object")
VariantName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][-A-Za-z0-9_.]{0,62}$")]
AttributeName = Annotated[str, Field(pattern=r"^[A-Za-z_][-A-Za-z0-9_.]{0,62}$")]
Scalar = Annotated[str, Field(max_length=1024)] | int | float | bool

_YAML_BOOLEAN_NAME = (
    "expected a variant name; YAML reads an unquoted on/off/yes/no/true/false as a "
    'boolean: quote it ("on")'
)
_SEMVER_OPS = ("=", "!=", "<", "<=", ">", ">=", "^", "~")
_SEMVER_RANGE = re.compile(r"^\s*(!=|<=|>=|=|<|>|\^|~)?\s*v?([0-9][-+.A-Za-z0-9]*)\s*$")
_SEMVER = re.compile(
    r"^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)

OPERATORS = (
    "in",
    "notIn",
    "startsWith",
    "endsWith",
    "contains",
    "regex",
    "emailDomain",
    "semver",
    "gt",
    "gte",
    "lt",
    "lte",
)


SemVer = tuple[int, int, int, tuple[tuple[int, int | str], ...]]


def parse_semver(text: str) -> SemVer | None:
    """Semantic Version 2.0 precedence key, None if ``text`` is not a version.

    A release sorts after its pre-releases; numeric pre-release parts sort before text ones.

    >>> parse_semver("1.2.3") > parse_semver("1.2.3-rc.1") > parse_semver("1.2.3-beta.11")
    True
    >>> parse_semver("1.2") is None
    True
    """
    if len(text) > MAX_VERSION_LENGTH:
        return None
    return _parse_semver(text)


MAX_VERSION_LENGTH = 128  # longer is no version; it also bounds the cache below


@functools.lru_cache(maxsize=4096)  # evaluation sees the same few app versions again
def _parse_semver(text: str) -> SemVer | None:
    m = _SEMVER.match(text)
    if m is None:
        return None
    pre: tuple[tuple[int, int | str], ...] = ((2, 0),)  # a release: after any pre-release
    if m.group(4):
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in m.group(4).split("."))
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), pre


def parse_semver_range(text: str) -> tuple[str, str]:
    """``">=1.2.0"`` → (">=", "1.2.0"); ValueError naming what is expected."""
    m = _SEMVER_RANGE.match(text)
    if m is None or parse_semver(m.group(2)) is None:
        raise ValueError(
            "expected a comparison and a semantic version such as '>=1.2.0', '^2.0.0' or "
            f"'~1.4.0' (operators {' '.join(_SEMVER_OPS)}), got {text[:60]!r}"
        )
    return m.group(1) or "=", m.group(2)


class Condition(models.Model):
    """One test of one context attribute: exactly one operator, optionally negated.

    A missing attribute fails every operator (so ``negate`` makes it pass), and an
    attribute of the wrong type (a number to ``startsWith``) fails rather than errs.
    """

    attribute: AttributeName
    negate: bool = False
    in_: Annotated[list[Scalar], Field(min_length=1, max_length=10_000)] | None = Field(
        default=None, alias="in"
    )
    not_in: Annotated[list[Scalar], Field(min_length=1, max_length=10_000)] | None = None
    starts_with: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    ends_with: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    contains: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    regex: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    email_domain: Annotated[list[str], Field(min_length=1, max_length=10_000)] | None = None
    semver: str | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Condition:
        given = self.operators()
        if len(given) != 1:
            raise ValueError(
                f"expected exactly one operator of {', '.join(OPERATORS)}; "
                f"got {', '.join(given) or 'none'}"
            )
        return self

    def operators(self) -> list[str]:
        return [op for op in OPERATORS if getattr(self, _attr(op)) is not None]

    @property
    def operator(self) -> str:
        return self.operators()[0]

    @property
    def operand(self) -> Any:
        return getattr(self, _attr(self.operator))

    @field_validator("regex")
    @classmethod
    def _linear_time(cls, pattern: str | None) -> str | None:
        return regex.checked(pattern)  # matched against client-sent values: RE2 only

    @field_validator("semver")
    @classmethod
    def _semver_range(cls, text: str | None) -> str | None:
        if text is not None:
            parse_semver_range(text)
        return text


def _attr(operator: str) -> str:
    return "in_" if operator == "in" else re.sub(r"([A-Z])", r"_\1", operator).lower()


class SplitEntry(models.Model):
    variant: VariantName
    weight: models.Percent


Split = Annotated[list[SplitEntry], Field(max_length=100)]


class Rule(models.Model):
    """When every condition in ``when`` holds: ``variant``, or a sticky ``split`` of users.
    A rule without conditions matches every context (a catch-all after the others)."""

    name: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    when: Annotated[list[Condition], Field(max_length=64)] = Field(default_factory=list)
    variant: VariantName | None = None
    split: Split | None = None

    @model_validator(mode="after")
    def _one_outcome(self) -> Rule:
        if (self.variant is None) == (self.split is None):
            raise ValueError("expected exactly one of variant, split")
        return self


RolloutName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]


class FlagRollout(models.Model):
    """Walk ``variant``'s weight in the split through ``steps`` (setWeight, pause,
    analysis), judged like a canary; a failed analysis turns the flag off. ``target`` is
    the Rollout serving the code behind the flag: analysis steps measure its traffic
    (the builtin provider's window is that rollout's current revision)."""

    variant: VariantName
    target: (
        Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)] | None
    ) = None
    steps: Annotated[list[models.CanaryStep], Field(min_length=1, max_length=100)]
    # Flagger's webhook types, as a Rollout's ``spec.webhooks`` (``flags.progress`` says
    # where each gates the walk); a failed gate turns the flag off.
    webhooks: Annotated[list[spec_analysis.Webhook], Field(max_length=32)] = Field(
        default_factory=list
    )

    @field_validator("webhooks")
    @classmethod
    def _unique_hook_names(cls, hooks: list[spec_analysis.Webhook]) -> list[spec_analysis.Webhook]:
        names = [h.name for h in hooks]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"webhook names must be unique: {name!r} appears twice")
        return hooks

    @field_validator("steps")
    @classmethod
    def _flag_steps(cls, steps: list[models.CanaryStep]) -> list[models.CanaryStep]:
        for i, step in enumerate(steps):
            if step.kind not in ("set_weight", "pause", "analysis"):
                raise ValueError(
                    f"step {i}: a flag rollout takes setWeight, pause and analysis steps, "
                    f"got {to_camel(step.kind)}"
                )
        return steps

    @model_validator(mode="after")
    def _target_for_analysis(self) -> FlagRollout:
        if self.target is None and any(s.analysis is not None for s in self.steps):
            raise ValueError(
                "analysis steps need target: the name of the Rollout whose traffic they judge"
            )
        return self


FlagKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][-A-Za-z0-9_.:]{0,127}$")]


class FlagRouter(models.Model):
    """The builtin router of Rollout ``rollout`` evaluates the flag per request (context
    from ``requestContext``) and passes the variant's name to the service in ``header``;
    a ``header`` the client sent is replaced, never passed on."""

    rollout: RolloutName
    header: Annotated[str, Field(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_]{0,63}$")]


class FlagSpec(models.Model):
    """``key`` is what applications ask for over OFREP (default: ``metadata.name``); it
    may hold capitals and dots, which Kubernetes names may not (``myBoolFlag``)."""

    key: FlagKey | None = None
    type: Literal["boolean", "string", "number", "object"]
    variants: Annotated[dict[VariantName, Any], Field(min_length=1, max_length=256)]
    default_variant: VariantName
    enabled: bool = True
    rules: Annotated[list[Rule], Field(max_length=256)] = Field(default_factory=list)
    split: Split = Field(default_factory=list)
    request_context: Annotated[dict[AttributeName, models.UserKey], Field(max_length=64)] = Field(
        default_factory=dict
    )
    router: FlagRouter | None = None
    rollout: FlagRollout | None = None

    @field_validator("variants", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        if isinstance(value, dict):
            for name in value:
                if isinstance(name, bool):
                    raise ValueError(_YAML_BOOLEAN_NAME)
        return value

    @field_validator("default_variant", mode="before")
    @classmethod
    def _default_name(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError(_YAML_BOOLEAN_NAME)
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> FlagSpec:
        # ``spec.load`` runs ``cross_field_problems`` on the raw document itself, so the
        # problems show with their own paths even when some field is also wrong.
        if info.context and info.context.get(CROSS_CHECKED):
            return self
        problems = cross_field_problems(self.model_dump(mode="json", by_alias=True))
        if problems:
            raise ValueError("; ".join(f"{_render(loc)}: {msg}" for loc, msg in problems))
        return self


CROSS_CHECKED = "flag-cross-checked"
Loc = tuple[str | int, ...]


def cross_field_problems(spec: object) -> list[tuple[Loc, str]]:
    """Problems between a flag spec's fields, on the raw (possibly broken) document:
    variant values of the wrong type, references to unknown variants, split weights over
    100, a rollout variant without a split entry. Parts that are malformed are skipped
    (field validation reports them)."""
    if not isinstance(spec, dict):
        return []
    variants = spec.get("variants")
    variants = variants if isinstance(variants, dict) else {}
    kind = spec.get("type")
    problems: list[tuple[Loc, str]] = []
    if kind in FLAG_TYPES:
        for name, value in variants.items():
            if isinstance(name, str) and not _has_type(value, kind):
                got = "null" if value is None else _JSON_NAMES.get(type(value), "value")
                problems.append((("variants", name), f"expected a {kind} value, got {got}"))
    refs: list[tuple[Loc, object]] = [(("defaultVariant",), spec.get("defaultVariant"))]
    splits: list[tuple[Loc, object]] = [(("split",), spec.get("split"))]
    for i, rule in _items(spec.get("rules")):
        refs.append((("rules", i, "variant"), rule.get("variant")))
        splits.append((("rules", i, "split"), rule.get("split")))
    for loc, split in splits:
        problems += _split_problems(loc, split)
        refs += [((*loc, j, "variant"), e.get("variant")) for j, e in _items(split)]
    rollout = spec.get("rollout")
    if isinstance(rollout, dict):
        refs.append((("rollout", "variant"), rollout.get("variant")))
        named = [e.get("variant") for _, e in _items(spec.get("split"))]
        if isinstance(rollout.get("variant"), str) and rollout["variant"] not in named:
            problems.append(
                (
                    ("rollout", "variant"),
                    f"{rollout['variant']!r} needs an entry in split (its weight is what "
                    "the rollout walks; start it at weight 0)",
                )
            )
    # With a YAML boolean for a name, its own error says what to do; every reference to
    # "on" would otherwise be reported too.
    if variants and not any(isinstance(n, bool) for n in variants):
        known = ", ".join(sorted(str(n) for n in variants))
        problems += [
            (loc, f"unknown variant {name!r}; expected one of {known}")
            for loc, name in refs
            if isinstance(name, str) and name not in variants
        ]
    return problems


_JSON_NAMES = {bool: "a boolean", str: "a string", int: "a number", float: "a number"}
_JSON_NAMES.update({dict: "an object", list: "a list"})


def _items(value: object) -> list[tuple[int, dict[str, Any]]]:
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _split_problems(loc: Loc, split: object) -> list[tuple[Loc, str]]:
    entries = [e for _, e in _items(split)]
    weights = [e.get("weight") for e in entries]
    problems = []
    if all(isinstance(w, int) and not isinstance(w, bool) for w in weights):
        total = sum(w for w in weights if isinstance(w, int))
        if total > 100:
            problems.append((loc, f"weights add up to {total}; expected at most 100"))
    names = [e.get("variant") for e in entries]
    for j, name in enumerate(names):
        if isinstance(name, str) and name in names[:j]:
            problems.append(((*loc, j, "variant"), f"variant {name!r} appears more than once"))
    return problems


def _render(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _has_type(value: object, kind: str) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and math.isfinite(value)  # type: ignore[arg-type]
    return isinstance(value, dict)


class Flag(models.Model):
    api_version: Literal["changeover.dev/v1alpha1"] = models.API_VERSION
    kind: Literal["Flag"] = "Flag"
    metadata: models.Metadata
    spec: FlagSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def key(self) -> str:
        return self.spec.key or self.metadata.name
