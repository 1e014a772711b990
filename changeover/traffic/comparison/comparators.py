"""Comparators: does the shadow's answer match the primary's?

A comparator is a function ``(primary: Answer, shadow: Answer, settings: Settings) ->
Verdict``. Built in:

- ``exact``: the bodies are equal byte for byte (a streamed answer: its reassembled text);
- ``json``: both bodies parsed and compared as values: key order never matters, fields
  named by a JSON pointer in ``ignore`` are left out (``/id``, ``/usage``, and ``*`` for
  any array index or key: ``/choices/*/logprobs``), numbers match within ``tolerance``;
- ``text``: a similarity score between 0 and 1 (rapidfuzz's normalised Indel similarity)
  that must reach ``threshold``.

A streamed answer (``text/event-stream``, JSON lines) is reassembled into its text first
(``streams.reassemble``); ``json`` then parses that text (a model asked for JSON).

A user's own comparator is named by ``module:function`` (imported with ``importlib``;
nothing is evaluated) or by the name of an entry point in the ``changeover.comparators``
group. It is called with the two ``Answer`` objects and returns a ``bool``, a similarity
between 0 and 1 (compared with ``threshold``) or a ``Verdict``; an exception it raises is
counted as a difference of kind ``body`` with the error as its reason.

    >>> s = Settings(comparator="json", ignore=("/id",), tolerance=0.01)
    >>> a = Answer(200, "application/json", b'{"id": 1, "score": 0.5, "label": "cat"}')
    >>> b = Answer(200, "application/json", b'{"label": "cat", "score": 0.505, "id": 2}')
    >>> compare(a, b, s).matched
    True
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import json
import math
import re
from collections.abc import Callable
from typing import Any

from changeover.traffic.comparison import streams

BUILTIN = ("exact", "json", "text")
ENTRY_POINT_GROUP = "changeover.comparators"
_PLUGIN_PATH = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
_ENTRY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """What the spec's ``compare`` block says about bodies."""

    comparator: str = "exact"
    ignore: tuple[str, ...] = ()
    tolerance: float = 0.0
    threshold: float = 0.9


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    matched: bool
    reason: str = ""
    score: float | None = None


class Answer:
    """One side's response as captured: status, content type, body (de-chunked), and
    whether the capture holds the whole body."""

    __slots__ = ("__dict__", "body", "complete", "content_type", "status")

    def __init__(
        self, status: int, content_type: str, body: bytes, *, complete: bool = True
    ) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body
        self.complete = complete

    @property
    def streamed(self) -> bool:
        return streams.is_stream(self.content_type)

    @functools.cached_property
    def text(self) -> str:
        """The answer as text: a stream's reassembled text, else the decoded body."""
        if self.streamed:
            return streams.reassemble(self.body, self.content_type)
        return self.body.decode("utf-8", "replace")


Comparator = Callable[[Answer, Answer, Settings], Verdict]


def exact(primary: Answer, shadow: Answer, settings: Settings) -> Verdict:
    if primary.streamed or shadow.streamed:
        same = primary.text == shadow.text
    else:
        same = primary.body == shadow.body
    return Verdict(same, "" if same else f"bodies differ{_first_difference(primary, shadow)}")


def text(primary: Answer, shadow: Answer, settings: Settings) -> Verdict:
    from rapidfuzz.distance import Indel  # a C extension; imported where it is used

    score = float(Indel.normalized_similarity(primary.text, shadow.text))
    matched = score >= settings.threshold
    reason = "" if matched else f"similarity {score:.3f} < threshold {settings.threshold:g}"
    return Verdict(matched, reason, score)


def json_values(primary: Answer, shadow: Answer, settings: Settings) -> Verdict:
    try:
        a = json.loads(primary.text if primary.streamed else primary.body)
    except ValueError:
        return exact(primary, shadow, settings) if _not_json(shadow) else _unparsed("primary")
    try:
        b = json.loads(shadow.text if shadow.streamed else shadow.body)
    except ValueError:
        return _unparsed("shadow")
    pointers = [_pointer(p) for p in settings.ignore]
    for tokens in pointers:
        a = _without(a, tokens)
        b = _without(b, tokens)
    where = _difference(a, b, "", settings.tolerance)
    return Verdict(where is None, "" if where is None else f"differs at {where or '/'}")


def _not_json(answer: Answer) -> bool:
    try:
        json.loads(answer.text if answer.streamed else answer.body)
    except ValueError:
        return True
    return False


def _unparsed(side: str) -> Verdict:
    return Verdict(False, f"the {side}'s body is not JSON")


def _pointer(text_pointer: str) -> list[str]:
    """RFC 6901 tokens of ``/a/b~1c`` → ``['a', 'b/c']``."""
    if text_pointer in ("", "/"):
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in text_pointer.lstrip("/").split("/")]


def _without(value: Any, tokens: list[str]) -> Any:
    """``value`` with what ``tokens`` points at removed (``*``: every key or index)."""
    if not tokens:
        return value
    head, rest = tokens[0], tokens[1:]
    if isinstance(value, dict):
        keys = list(value) if head == "*" else [head] if head in value else []
        out = dict(value)
        for key in keys:
            if rest:
                out[key] = _without(value[key], rest)
            else:
                del out[key]
        return out
    if isinstance(value, list):
        if head == "*":
            indexes = range(len(value))
        elif head.isdigit() and int(head) < len(value):
            indexes = range(int(head), int(head) + 1)
        else:
            return value
        if not rest:
            return [v for i, v in enumerate(value) if i not in indexes]
        return [_without(v, rest) if i in indexes else v for i, v in enumerate(value)]
    return value


def _difference(a: Any, b: Any, at: str, tolerance: float) -> str | None:
    """The JSON pointer of the first difference, or None when ``a`` and ``b`` match."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None if a is b else at
    if isinstance(a, int | float) and isinstance(b, int | float):
        if a == b:
            return None
        ok = math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tolerance
        return None if ok else at
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            here = f"{at}/{key.replace('~', '~0').replace('/', '~1')}"
            if key not in a or key not in b:
                return here
            found = _difference(a[key], b[key], here, tolerance)
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return at
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _difference(x, y, f"{at}/{i}", tolerance)
            if found is not None:
                return found
        return None
    return None if type(a) is type(b) and a == b else at


def _first_difference(primary: Answer, shadow: Answer) -> str:
    a, b = (primary.text, shadow.text) if primary.streamed else (primary.body, shadow.body)
    n = min(len(a), len(b))
    i = next((i for i in range(n) if a[i] != b[i]), n)
    return f" from offset {i}"


_BUILTINS: dict[str, Comparator] = {"exact": exact, "json": json_values, "text": text}


class ComparatorError(ValueError):
    """A comparator that cannot be found or loaded; the message says which and why."""


def check_name(name: str) -> str | None:
    """What is wrong with a comparator name as written in a spec (None: fine)."""
    if name in BUILTIN or _PLUGIN_PATH.match(name) or _ENTRY_NAME.match(name):
        return None
    return (
        f"expected exact, json, text, a module:function path or the name of a "
        f"{ENTRY_POINT_GROUP} entry point, got {name!r}"
    )


def load(name: str) -> Comparator:
    """The comparator ``name``: built in, ``module:function``, or an entry point.

    A user's function takes ``(primary, shadow)``; it is wrapped so every comparator
    takes ``(primary, shadow, settings)`` and returns a ``Verdict``."""
    found = _BUILTINS.get(name)
    if found is not None:
        return found
    problem = check_name(name)
    if problem is not None:
        raise ComparatorError(problem)
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # an import runs the user's module: anything can happen
            raise ComparatorError(
                f"comparator {name!r}: cannot import {module_name}: {exc}"
            ) from None
        fn = getattr(module, attr, None)
    else:
        points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name)
        if not points:
            raise ComparatorError(
                f"comparator {name!r}: not exact, json or text, and no installed package "
                f"declares it in the {ENTRY_POINT_GROUP} entry points"
            )
        try:
            fn = next(iter(points)).load()
        except Exception as exc:
            raise ComparatorError(
                f"comparator {name!r}: cannot load its entry point: {exc}"
            ) from None
    if not callable(fn):
        raise ComparatorError(f"comparator {name!r}: not a function")
    return _user(fn)


def _user(fn: Callable[..., Any]) -> Comparator:
    def run(primary: Answer, shadow: Answer, settings: Settings) -> Verdict:
        got = fn(primary, shadow)
        if isinstance(got, Verdict):
            return got
        if isinstance(got, bool):
            return Verdict(got, "" if got else "the comparator said they differ")
        if isinstance(got, int | float) and math.isfinite(got):
            score = float(got)
            ok = score >= settings.threshold
            return Verdict(
                ok, "" if ok else f"score {score:.3f} < threshold {settings.threshold:g}", score
            )
        raise TypeError(f"expected a bool, a number or a Verdict, got {type(got).__name__}")

    return run


def compare(
    primary: Answer, shadow: Answer, settings: Settings, comparator: Comparator | None = None
) -> Verdict:
    """Compare two answers' bodies with ``comparator`` (default: ``settings.comparator``)."""
    fn = comparator if comparator is not None else load(settings.comparator)
    return fn(primary, shadow, settings)
