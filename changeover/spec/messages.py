"""Turning pydantic's validation errors into plain expectations at camelCase field paths.

``spec.load`` calls ``translate`` for every document that fails model validation; the
helpers here find the field's declaration (to say "an integer from 0 to 100" rather than
"less_than_equal") and show values the way the user wrote them.
"""

from __future__ import annotations

import contextvars
import difflib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

import pydantic
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from changeover import errors
from changeover.spec import models
from changeover.spec.document import LoadedDocument, Loc

# The model a document is validated as (a Rollout, or an AnalysisTemplate), so field
# suggestions and bounds are looked up where the error is.
_ROOT: contextvars.ContextVar[type[pydantic.BaseModel]] = contextvars.ContextVar(
    "root", default=models.Rollout
)


def problem(
    source: str, message: str, *, path: str = "", line: int | None = None
) -> errors.SpecProblem:
    suffix = f" (line {line})" if line is not None else ""
    return errors.SpecProblem(file=source, path=path, message=message + suffix)


def translate(
    exc: pydantic.ValidationError,
    doc: LoadedDocument,
    *,
    root: type[pydantic.BaseModel] | None = None,
) -> list[errors.SpecProblem]:
    """pydantic's errors as SpecProblems: camelCase paths and plain expectations.
    ``root`` is the model the document was validated as (default: Rollout)."""
    token = _ROOT.set(root) if root is not None else None
    try:
        problems = []
        for error in exc.errors(include_url=False):
            loc = _clean_loc(error["loc"])
            path_loc, message = _message(error, loc)
            problems.append(
                problem(doc.label, message, path=render_path(path_loc), line=doc.line_of(loc))
            )
        return problems
    finally:
        if token is not None:
            _ROOT.reset(token)


def render_path(loc: Iterable[str | int]) -> str:
    """``('spec', 'strategy', 'canary', 'steps', 2, 'setWeight')`` →
    ``spec.strategy.canary.steps[2].setWeight``; odd map keys are quoted:

    >>> render_path(("metadata", "labels", "app.kubernetes.io/name"))
    'metadata.labels["app.kubernetes.io/name"]'
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "a").replace("-", "a").isalnum():
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


def _clean_loc(loc: tuple[str | int, ...]) -> Loc:
    # pydantic inserts validator and union-member tags ("function-before[...]", "int") into
    # loc; they are not fields the user wrote.
    return tuple(
        p for p in loc if isinstance(p, int) or not (_TAG.match(p) or p in ("int", "str", "float"))
    )


# A pydantic tag such as "function-before[parse_duration()]" or "template[process]"; a key
# the user wrote with a bracket in it ("[a-") is a field to name, not a tag.
_TAG = re.compile(r"^[a-z][a-z-]*\[.*\]$")


# --- turning pydantic's jargon into expectations ----------------------------------------


def _message(error: ErrorDetails, loc: Loc) -> tuple[Loc, str]:
    """The path to report and the plain-words message for one pydantic error."""
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    got = f"got {show(value)}"
    last = loc[-1] if loc else ""

    if kind == "extra_forbidden":
        return loc[:-1], _unknown_field(loc)
    if kind == "missing":
        return loc, "required, but missing"
    if kind in ("value_error", "assertion_error"):
        return loc, str(ctx.get("error", error["msg"]))
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return loc, f"expected {_number_phrase(loc, 'integer')}, {got}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return loc, f"expected {_number_phrase(loc, 'number')}, {got}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        noun = "integer" if isinstance(value, int) else "number"
        return loc, f"expected {_number_phrase(loc, noun)}, {got}"
    if kind in ("bool_type", "bool_parsing"):
        return loc, f"expected true or false, {got}"
    if kind == "string_type":
        quote = f' (quote it: "{_yaml_scalar(value)}")' if _is_scalar(value) else ""
        return loc, f"expected a string, {got}{quote}"
    if kind == "list_type":
        if last == "command":
            return loc, (
                'expected a list of arguments such as ["python3", "app.py"] (an argv list, '
                f"never a shell string), {got}"
            )
        return loc, f"expected a list, {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return loc, f"expected a mapping, {got}"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return loc, f"expected at least {least} item{'s' if least != 1 else ''}, {got}"
    if kind == "string_too_long":
        return loc, f"expected at most {ctx.get('max_length')} characters, {got}"
    if kind == "string_pattern_mismatch":
        if last == "name":
            return loc, (
                "expected a name of lowercase letters, digits and '-', starting and ending "
                f"with a letter or digit, at most 63 characters (like chat-api), {got}"
            )
        return loc, f"expected text matching {ctx.get('pattern')}, {got}"
    if kind == "literal_error":
        return loc, f"expected {ctx.get('expected')}, {got}"
    if kind == "recursion_loop":
        return loc, "YAML aliases refer to themselves; expected plain data"
    message = error["msg"]
    return loc, f"{message[:1].lower()}{message[1:]}"


def _unknown_field(loc: Loc) -> str:
    name = str(loc[-1]) if loc else ""
    allowed = _fields_of(loc[:-1])
    parent = loc[-2] if len(loc) > 1 else ""
    if parent == "strategy":
        if name == "type":  # Kubernetes' Deployment spelling, strategy: {type: Recreate}
            return "unknown field 'type': strategies are keys, write strategy: {canary: {...}}"
        return (
            f"unknown strategy '{name}'{suggest(name, allowed)}; expected exactly one of "
            f"{', '.join(models.STRATEGY_NAMES)}"
        )
    hint = suggest(name, allowed)
    if hint or not allowed:
        return f"unknown field '{name}'{hint}"
    return f"unknown field '{name}'; expected one of {', '.join(allowed)}"


def suggest(name: str, allowed: Sequence[str]) -> str:
    by_lower = {a.lower(): a for a in allowed}
    # "max_surge" and "MaxSurge" are the camelCase field under another spelling.
    exact = by_lower.get(to_camel(name).lower()) or by_lower.get(name.lower())
    close = [exact] if exact else difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _number_phrase(loc: Loc, noun: str) -> str:
    """'an integer from 0 to 100', 'a non-negative integer', 'a number greater than 0'."""
    bounds = _bounds(loc)
    article = "an" if noun == "integer" else "a"
    lo, hi = bounds.get("ge"), bounds.get("le")
    if lo is not None and hi is not None:
        return f"{article} {noun} from {lo} to {hi}"
    if lo == 0:
        return f"a non-negative {noun}"
    if lo is not None:
        return f"{article} {noun} of at least {lo}"
    if bounds.get("gt") == 0:
        return f"a positive {noun}"
    if "gt" in bounds:
        return f"{article} {noun} greater than {bounds['gt']}"
    if hi is not None:
        return f"{article} {noun} of at most {hi}"
    return f"{article} {noun}"


# --- finding a field's declaration from an error location -------------------------------


def _target(loc: Loc) -> tuple[Any, list[Any]]:
    """The annotation at ``loc`` (walking models, lists and dicts from Rollout) and the
    constraint metadata gathered on the way to it; (None, []) if the walk gets lost."""
    annotation: Any = _ROOT.get()
    metadata: list[Any] = []
    for part in loc:
        annotation = _unwrap(annotation, part)
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            if not isinstance(part, str):
                return None, []
            info = _field(annotation, part)
            if info is None:
                return None, []
            annotation, metadata = info.annotation, list(info.metadata)
        elif typing.get_origin(annotation) is list and isinstance(part, int):
            annotation, metadata = typing.get_args(annotation)[0], []
        elif typing.get_origin(annotation) is dict and isinstance(part, str):
            annotation, metadata = typing.get_args(annotation)[1], []
        else:
            return None, []
    return annotation, metadata


def _unwrap(annotation: Any, part: str | int) -> Any:
    """Strip Annotated and Optional; of a union, pick the member ``part`` can index."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            fits = [m for m in members if _indexable_by(m, part)]
            annotation = (fits or members)[0]
        else:
            return annotation


def _indexable_by(annotation: Any, part: str | int) -> bool:
    base = (
        typing.get_args(annotation)[0]
        if typing.get_origin(annotation) is typing.Annotated
        else annotation
    )
    if isinstance(part, int):
        return typing.get_origin(base) is list
    return typing.get_origin(base) is dict or (
        isinstance(base, type) and issubclass(base, pydantic.BaseModel)
    )


def _field(model: type[pydantic.BaseModel], name: str) -> Any:
    for attr, info in model.model_fields.items():
        if name in (attr, info.alias):
            return info
    return None


def _fields_of(loc: Loc) -> list[str]:
    """The camelCase field names allowed at ``loc`` (a model), for suggestions."""
    annotation, _ = _target(loc)
    annotation = _unwrap(annotation, "") if annotation is not None else None
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [info.alias or attr for attr, info in annotation.model_fields.items()]
    return []


def _bounds(loc: Loc) -> dict[str, Any]:
    """ge/gt/le/lt declared for the field at ``loc``, wherever pydantic tucked them:
    on the field (``port: Port``) or inside an Optional (``setWeight: Percent | None``)."""
    annotation, metadata = _target(loc)
    found: dict[str, Any] = {}
    pending: list[Any] = [*metadata, annotation]
    while pending:
        item = pending.pop()
        if isinstance(item, pydantic.fields.FieldInfo):
            pending += item.metadata
        for key in ("ge", "gt", "le", "lt"):
            if isinstance(getattr(item, key, None), int | float):
                found.setdefault(key, getattr(item, key))
        origin = typing.get_origin(item)
        if origin is typing.Annotated:
            pending += list(item.__metadata__)
        elif origin in (typing.Union, types.UnionType):
            pending += list(typing.get_args(item))
    return found


# --- showing values the way the user wrote them -----------------------------------------


def _is_scalar(value: object) -> bool:
    return isinstance(value, bool | int | float)


def _yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def show(value: object) -> str:
    """A value as the user would recognise it in YAML: 150, 'abc', true, a list."""
    if value is None:
        return "nothing (null)"
    if _is_scalar(value):
        return _yaml_scalar(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"  # a date or timestamp YAML parsed for us
