"""Hypothesis strategies for hostile spec documents and condition expressions.

Documents are built from the pydantic models themselves (``model_doc(models.Rollout)``):
every field under its camelCase name, each value either of the field's type or, often
enough, something hostile (wrong type, huge or non-finite number, a string with NUL or
non-ASCII digits, a random nesting), and unknown keys beside them. ``mutated`` takes a valid
example document and breaks it at one random path, so deep fields are reached with the rest
of the document intact.

``EXAMPLES`` is how many cases each property runs: a few hundred by default (``make test``),
``CHANGEOVER_FUZZ_EXAMPLES=10000`` in ``make fuzz``.
"""

from __future__ import annotations

import copy
import functools
import os
import types
import typing
from pathlib import Path
from typing import Any

import pydantic
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("CHANGEOVER_FUZZ_EXAMPLES", "100"))
FUZZ = "CHANGEOVER_FUZZ_EXAMPLES" in os.environ

# Derandomized in the suite (the same cases every run, so CI never flakes on a new find);
# random in ``make fuzz``, where new finds are the point.
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not FUZZ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ROOT = Path(__file__).resolve().parents[2]
_MAX_DEPTH = 7

# --- hostile scalars and trees -------------------------------------------------------------

_WORDS = [
    "",
    "30s",
    "5m",
    "1h",
    "250ms",
    "١٠s",  # Arabic-Indic digits: \d and isdigit() take them, int() and YAML may not
    "²",
    "25%",
    "٣٠%",
    "1e400",
    "nan",
    "inf",
    "-1",
    "0",
    "$(PORT)",
    "$(NOPE)",
    "$$",
    "a=b",
    "x\x00y",
    "\x00",
    "result > 0.5",
    "http://127.0.0.1:1/",
    "builtin",
    "haproxy",
    "canary",
    "{{args.x}}",
    "{{",
    "*",
    "(",
    "[a-",
    "😀",
    "\u202e",
    "Rollout",
    "AnalysisTemplate",
    "changeover.dev/v1alpha1",
]

hostile_text = st.one_of(
    st.sampled_from(_WORDS),
    st.text(max_size=12),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
)
hostile_int = st.one_of(
    st.integers(min_value=-3, max_value=70_000),
    st.sampled_from([2**31, 2**63, -(2**63), 10**20, 10**400]),
)
hostile_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1e308, 1e-308]),
)
hostile_scalar = st.one_of(st.none(), st.booleans(), hostile_int, hostile_float, hostile_text)


def hostile_tree(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON-ish value, nested."""
    return st.recursive(
        hostile_scalar,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(hostile_text, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def deep(levels: int) -> Any:
    """A list nested ``levels`` deep (past any recursion limit when large)."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# --- documents from the models -------------------------------------------------------------


def _alias(name: str, field: Any) -> str:
    return str(field.alias or name)


def for_annotation(annotation: Any, depth: int) -> st.SearchStrategy[Any]:
    """Values of ``annotation``'s type (mostly), recursing into models, lists and dicts."""
    if depth > _MAX_DEPTH:
        return hostile_scalar
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return model_doc(annotation, depth + 1)
    if origin is typing.Annotated:
        return for_annotation(args[0], depth)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(for_annotation(a, depth) for a in args))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (list, tuple):
        item = args[0] if args else Any
        return st.lists(for_annotation(item, depth + 1), max_size=3)
    if origin is dict:
        value = args[1] if len(args) == 2 else Any
        return st.dictionaries(hostile_text, for_annotation(value, depth + 1), max_size=3)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        int: hostile_int,
        float: st.one_of(hostile_float, hostile_int, st.sampled_from(_WORDS[1:6])),
        str: hostile_text,
        bool: st.booleans(),
        type(None): st.none(),
    }
    return simple.get(annotation, hostile_tree(6))


@functools.cache
def model_doc(model: type[pydantic.BaseModel], depth: int = 0) -> st.SearchStrategy[Any]:
    """A mapping with some of ``model``'s fields (by alias), each well or badly typed, and
    sometimes an unknown key; now and then not a mapping at all. (Cached: built once per
    model and depth, or the strategy tree grows exponentially.)"""
    fields = {}
    for name, field in model.model_fields.items():
        typed = for_annotation(field.annotation, depth)
        fields[_alias(name, field)] = st.one_of(typed, typed, typed, hostile_tree(4))
    doc = st.fixed_dictionaries(
        {}, optional={**fields, "unknownField": hostile_scalar, "": hostile_scalar}
    )
    return st.one_of(doc, doc, doc, doc, doc, doc, doc, hostile_scalar, hostile_tree(4))


def rollout_documents() -> st.SearchStrategy[dict[str, Any]]:
    """Whole Rollout documents whose spec comes from the models."""
    from changeover.spec import models

    return st.fixed_dictionaries(
        {
            "apiVersion": st.one_of(st.just("changeover.dev/v1alpha1"), hostile_scalar),
            "kind": st.one_of(st.just("Rollout"), hostile_scalar),
            "metadata": st.one_of(
                st.fixed_dictionaries({"name": st.sampled_from(["web", "a", "Bad_Name", ""])}),
                model_doc(models.Metadata),
            ),
            "spec": model_doc(models.RolloutSpec),
        }
    )


def template_documents() -> st.SearchStrategy[dict[str, Any]]:
    """AnalysisTemplate documents whose spec comes from the models."""
    from changeover.spec import analysis

    return st.fixed_dictionaries(
        {
            "apiVersion": st.just("changeover.dev/v1alpha1"),
            "kind": st.just("AnalysisTemplate"),
            "metadata": st.fixed_dictionaries({"name": st.sampled_from(["t", "checks"])}),
            "spec": model_doc(analysis.AnalysisTemplateSpec),
        }
    )


# --- valid examples, broken at one path ------------------------------------------------------


def example_documents() -> list[dict[str, Any]]:
    """Every document of ``examples/*.yaml``: valid specs with deep, real structure."""
    docs = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return docs


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, documents: list[dict[str, Any]]) -> dict[str, Any]:
    """One of ``documents`` with the value at a random path replaced, deleted, deepened or
    given an unknown sibling."""
    doc = copy.deepcopy(documents[draw(st.integers(0, len(documents) - 1))])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)[1:]
        if not paths:
            break
        path = paths[draw(st.integers(0, len(paths) - 1))]
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.integers(0, 4))
        if action <= 1:
            parent[key] = draw(st.one_of(hostile_scalar, hostile_tree(6)))
        elif action == 2:
            del parent[key]
        elif action == 3:
            parent[key] = deep(draw(st.sampled_from([40, 200])))
        elif isinstance(parent, dict):
            parent[draw(hostile_text)] = draw(hostile_scalar)
    return doc


# --- condition expressions ----------------------------------------------------------------

_TOKENS = [
    "result",
    "#",
    "0",
    "1",
    "0.05",
    "1e308",
    "99999999999999999999",
    '"ok"',
    "'x'",
    "true",
    "false",
    "nil",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    ",",
    ".",
    "p99",
    "?",
    ":",
    "+",
    "-",
    "*",
    "/",
    "%",
    "**",
    "^",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "!",
    "and",
    "or",
    "not",
    "in",
    "len",
    "abs",
    "min",
    "max",
    "sum",
    "mean",
    "median",
    "isNaN",
    "isInf",
    "isNil",
    "default",
    "asFloat",
    "asInt",
    "all",
    "any",
    "none",
    "filter",
    "map",
    "count",
    "one",
    "__import__",
    "=",
    "١",
    "\x00",
]


def _well_formed(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.sampled_from(["+", "-", "*", "/", "%", "**", "==", "!=", "<", ">=", "&&", "||"])
    unary_fn = st.sampled_from(["len", "abs", "isNaN", "isInf", "isNil", "asFloat", "asInt"])
    predicate = st.sampled_from(["all", "any", "none", "filter", "map", "count", "one"])
    return st.one_of(
        st.tuples(children, binary, children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(unary_fn, children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(predicate, children, children).map(lambda t: f"{t[0]}({t[1]}, {{{t[2]}}})"),
        st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(children, children, children).map(lambda t: f"{t[0]} ? {t[1]} : {t[2]}"),
        st.tuples(children, children).map(lambda t: f"default({t[0]}, {t[1]})"),
        children.map(lambda c: f"[{c}, {c}]"),
        children.map(lambda c: f"!{c}"),
    )


conditions = st.one_of(
    st.lists(st.sampled_from(_TOKENS), max_size=14).map(" ".join),
    st.recursive(
        st.sampled_from(["result", "result.p99", "result[0]", "#", "1", "0.5", '"a"', "nil"]),
        _well_formed,
        max_leaves=10,
    ),
    st.text(max_size=30),
    st.sampled_from(["(" * 40 + "1" + ")" * 40, "result" + ".a" * 300, "1" * 2001]),
)

# What a provider may hand the judge: numbers of any size, non-finite floats, nesting.
measured_values = st.one_of(
    hostile_tree(16),
    st.sampled_from([10**400, -(10**400), float("nan"), float("inf"), 1e308]),
    st.integers(min_value=1, max_value=3000).map(deep),
    st.builds(lambda n: {"p99": 0.1, "errorRate": n}, hostile_scalar),
)
