"""Evaluating a parsed condition (``analysis.conditions`` builds the tree), and its functions.

A tree is nested tuples ``(kind, position, ...)``. Evaluation is a plain recursive walk over
values of six types (numbers, strings, booleans, nil, lists, mappings); anything outside that
is an error, never a Python object to poke at. Booleans are not numbers here (``true + 1``
is an error, ``true == 1`` is false), unlike in Python.

    >>> from changeover.analysis import conditions
    >>> conditions.evaluate("default(result, 0) < 0.1", None)
    True
    >>> conditions.evaluate("isNaN(result) || result >= 0.95", float("nan"))
    True
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Node = tuple[Any, ...]
Pred = Callable[[Any], bool]

_NO_ELEMENT = object()


class ConditionError(ValueError):
    """A condition that cannot be parsed or evaluated."""


class EvalError(ConditionError):
    """The condition could not be evaluated against this result (a type mismatch, a
    missing key, an index out of range, a division by zero)."""


def show(value: Any, limit: int = 80, _depth: int = 0) -> str:
    """A value as a condition would write it: ``0.97``, ``[1, 2]``, ``"ok"``, ``nil``.

    At most ``limit`` characters, whatever the value: a huge integer shows its first digits
    and its length, nesting deeper than a few levels shows as ``…``, and a long list stops
    being read once the text is long enough (a measured value is hostile input).
    """
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # Four significant digits: 0.2823529411764706 reads as 0.2824 in a verdict.
        text = "NaN" if value != value else format(value, ".4g")
    elif isinstance(value, int):
        text = _show_int(value)
    elif isinstance(value, str):
        text = '"' + value[:limit] + '"'
    elif isinstance(value, Mapping | list | tuple):
        text = _show_nested(value, limit, _depth)
    else:
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


_SHOW_DEPTH = 4


def _show_int(value: int) -> str:
    # Python refuses to print integers beyond ~4,300 digits; 10**399 is still worth a look.
    if value.bit_length() <= 200:
        return str(value)
    digits = int(value.bit_length() * 0.30103) + 1
    return f"{'-' if value < 0 else ''}an integer of about {digits} digits"


def _show_nested(value: Mapping[Any, Any] | Sequence[Any], limit: int, depth: int) -> str:
    if depth >= _SHOW_DEPTH:
        return "{…}" if isinstance(value, Mapping) else "[…]"
    parts: list[str] = []
    size = 0
    items = value.items() if isinstance(value, Mapping) else enumerate(value)
    for key, item in items:
        if size > limit:
            parts.append("…")
            break
        part = show(item, 20, depth + 1)
        if isinstance(value, Mapping):
            part = f"{str(key)[:20]}: {part}"
        parts.append(part)
        size += len(part) + 2
    if isinstance(value, Mapping):
        return "{" + ", ".join(parts) + "}"
    return "[" + ", ".join(parts) + "]"


def _kind(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _num(value: Any, what: str) -> float | int:
    if not _is_num(value):
        raise EvalError(f"{what} needs a number, got {_kind(value)} ({show(value)})")
    return value  # type: ignore[no-any-return]


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise EvalError(f"{what} needs true or false, got {_kind(value)} ({show(value)})")
    return value


def _seq(value: Any, what: str) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise EvalError(f"{what} needs a list, got {_kind(value)} ({show(value)})")
    return value


# --- the walk -----------------------------------------------------------------------------


def evaluate(tree: Node, result: Any, element: Any = _NO_ELEMENT) -> Any:
    kind = tree[0]
    if kind == "lit":
        return tree[2]
    if kind == "result":
        return result
    if kind == "elem":
        return element
    if kind == "list":
        return [evaluate(item, result, element) for item in tree[2]]
    if kind == "index":
        return _index(evaluate(tree[2], result, element), evaluate(tree[3], result, element))
    if kind in ("and", "or"):
        left = _bool(evaluate(tree[2], result, element), f"'{kind}'")
        if left == (kind == "or"):
            return left
        return _bool(evaluate(tree[3], result, element), f"'{kind}'")
    if kind == "not":
        return not _bool(evaluate(tree[2], result, element), "'not'")
    if kind == "neg":
        return -_num(evaluate(tree[2], result, element), "'-'")
    if kind == "pos":
        return _num(evaluate(tree[2], result, element), "'+'")
    if kind == "if":
        chosen = tree[3] if _bool(evaluate(tree[2], result, element), "'?'") else tree[4]
        return evaluate(chosen, result, element)
    if kind == "bin":
        left = evaluate(tree[3], result, element)
        return _binary(tree[2], left, evaluate(tree[4], result, element))
    if kind == "call":
        return _call(tree[2], tree[3], result, element)
    raise EvalError(f"cannot evaluate {kind}")  # pragma: no cover - the parser makes no others


def _index(obj: Any, key: Any) -> Any:
    if isinstance(obj, Mapping):
        if not isinstance(key, str):
            raise EvalError(f"a mapping is indexed by a string key, got {show(key)}")
        if key not in obj:
            keys = ", ".join(sorted(str(k) for k in obj)[:12]) or "none"
            raise EvalError(f"result has no key {key!r} (keys: {keys})")
        return obj[key]
    if isinstance(obj, list | tuple):
        if not isinstance(key, int) or isinstance(key, bool):
            raise EvalError(f"a list is indexed by an integer, got {show(key)}")
        if not -len(obj) <= key < len(obj):
            raise EvalError(f"index {key} is out of range for a list of {len(obj)}")
        return obj[key]
    raise EvalError(f"cannot index {_kind(obj)} ({show(obj)}) with {show(key)}")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _binary(op: str, a: Any, b: Any) -> Any:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op in ("in", "not in"):
        found = _contains(b, a)
        return found if op == "in" else not found
    if op in ("<", "<=", ">", ">="):
        if not ((_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str))):
            raise EvalError(
                f"'{op}' compares two numbers or two strings, got {_kind(a)} ({show(a)}) "
                f"and {_kind(b)} ({show(b)})"
            )
        return _COMPARISONS[op](a, b)
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    x, y = _num(a, f"'{op}'"), _num(b, f"'{op}'")
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op in ("/", "%") and y == 0:
        raise EvalError(f"division by zero ({show(x)} {op} 0)")
    if op == "/":
        return x / y
    if op == "%":
        return x % y
    try:  # '**': in floats, so 9**9**9 overflows at once instead of computing for hours
        return math.pow(float(x), float(y))
    except (OverflowError, ValueError) as exc:
        raise EvalError(f"{show(x)} ** {show(y)}: {exc}") from None


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, Mapping):
        return item in container if isinstance(item, str) else False
    if isinstance(container, list | tuple):
        return any(_equal(item, x) for x in container)
    if isinstance(container, str):
        if not isinstance(item, str):
            raise EvalError(f"'in' a string needs a string, got {show(item)}")
        return item in container
    raise EvalError(f"'in' needs a list, mapping or string, got {_kind(container)}")


# --- functions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Function:
    arity: tuple[int, int]
    fn: Callable[..., Any]
    predicate: bool = False  # the second argument is a closure over '#'
    maps: bool = False  # ... whose value is any value (map), not true or false


def _call(name: str, args: tuple[Node, ...], result: Any, element: Any) -> Any:
    spec = FUNCTIONS[name]
    if spec.predicate:
        items = _seq(evaluate(args[0], result, element), f"{name}()")
        body = args[1][2]

        def pred(item: Any) -> Any:
            value = evaluate(body, result, item)
            return value if spec.maps else _bool(value, f"the predicate of {name}()")

        return spec.fn(items, pred)
    return spec.fn(*(evaluate(arg, result, element) for arg in args))


def _len(value: Any) -> int:
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise EvalError(f"len() needs a list, mapping or string, got {_kind(value)} ({show(value)})")


def _numbers(values: tuple[Any, ...], name: str) -> list[float | int]:
    items = _seq(values[0], f"{name}()") if len(values) == 1 else values
    if not items:
        raise EvalError(f"{name}() of an empty list")
    return [_num(v, f"{name}()") for v in items]


def _is_nan(value: Any) -> bool:
    return bool(math.isnan(_num(value, "isNaN()")))


def _is_inf(value: Any) -> bool:
    return bool(math.isinf(_num(value, "isInf()")))


def _default(value: Any, fallback: Any) -> Any:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return fallback if missing else value


def _as_float(value: Any) -> float:
    if _is_num(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise EvalError(f"asFloat() cannot read {show(value)} as a number")


def _as_int(value: Any) -> int:
    number = _as_float(value)
    if math.isnan(number) or math.isinf(number):
        raise EvalError(f"asInt() cannot read {show(value)} as an integer")
    return int(number)


FUNCTIONS: dict[str, Function] = {
    "len": Function((1, 1), _len),
    "abs": Function((1, 1), lambda x: abs(_num(x, "abs()"))),
    "min": Function((1, 99), lambda *xs: min(_numbers(xs, "min"))),
    "max": Function((1, 99), lambda *xs: max(_numbers(xs, "max"))),
    "sum": Function((1, 1), lambda xs: sum(_numbers((xs,), "sum")) if xs else 0),
    "mean": Function((1, 1), lambda xs: statistics.fmean(_numbers((xs,), "mean"))),
    "avg": Function((1, 1), lambda xs: statistics.fmean(_numbers((xs,), "avg"))),
    "median": Function((1, 1), lambda xs: statistics.median(_numbers((xs,), "median"))),
    "isNaN": Function((1, 1), _is_nan),
    "isInf": Function((1, 1), _is_inf),
    "isNil": Function((1, 1), lambda x: x is None),
    "default": Function((2, 2), _default),
    "asFloat": Function((1, 1), _as_float),
    "asInt": Function((1, 1), _as_int),
    "all": Function((2, 2), lambda xs, p: all(p(x) for x in xs), predicate=True),
    "any": Function((2, 2), lambda xs, p: any(p(x) for x in xs), predicate=True),
    "none": Function((2, 2), lambda xs, p: not any(p(x) for x in xs), predicate=True),
    "filter": Function((2, 2), lambda xs, p: [x for x in xs if p(x)], predicate=True),
    "count": Function((2, 2), lambda xs, p: sum(1 for x in xs if p(x)), predicate=True),
    "one": Function((2, 2), lambda xs, p: sum(1 for x in xs if p(x)) == 1, predicate=True),
    "map": Function((2, 2), lambda xs, p: [p(x) for x in xs], predicate=True, maps=True),
}
