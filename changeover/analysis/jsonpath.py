"""A small JSONPath for the ``web`` provider's ``jsonPath``: ``$.data.ok``, ``$.items[0].v``,
``$['a-b']``, ``$.items[*].v``, and Kubernetes' braces ``{$.data.ok}`` (Argo's spelling),
where ``{$.}`` is the whole document and the ``$`` may be left out (``{.data.ok}``).

    >>> select("{$.data.ok}", {"data": {"ok": True}})
    True
    >>> select("$.items[*].v", {"items": [{"v": 1}, {"v": 2}]})
    [1, 2]
    >>> select("$.items[-1]['the key']", {"items": [{"the key": 3}]})
    3
    >>> select("{$.}", {"major": "1"}), select("{.major}", {"major": "1"})
    ({'major': '1'}, '1')

A path that does not match raises ``PathError`` (the measurement is then an Error).
"""

from __future__ import annotations

import re
from typing import Any

_STEP = re.compile(
    r"""
    \.(?P<name>[A-Za-z_][-A-Za-z0-9_]*)
  | \.\*(?P<dotstar>)
  | \[\s*(?P<index>-?\d+)\s*\]
  | \[\s*\*\s*\](?P<star>)
  | \[\s*(?P<quoted>'[^']*'|"[^"]*")\s*\]
    """,
    re.VERBOSE,
)


class PathError(ValueError):
    pass


def parse(path: str) -> list[tuple[str, Any]]:
    """The steps of ``path``: ("key", name), ("index", n) or ("all", None)."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
        if text.startswith("."):  # Kubernetes' JSONPath: the root is implied
            text = "$" + text
    if text == "$.":  # Argo's test templates write the whole body as {$.}
        text = "$"
    if not text.startswith("$"):
        raise PathError(f"jsonPath must start with $ (got {path!r})")
    steps: list[tuple[str, Any]] = []
    pos = 1
    while pos < len(text):
        match = _STEP.match(text, pos)
        if match is None:
            raise PathError(f"jsonPath {path!r}: cannot read {text[pos:]!r}")
        if match.group("name") is not None:
            steps.append(("key", match.group("name")))
        elif match.group("index") is not None:
            steps.append(("index", int(match.group("index"))))
        elif match.group("quoted") is not None:
            steps.append(("key", match.group("quoted")[1:-1]))
        else:
            steps.append(("all", None))
        pos = match.end()
    return steps


def select(path: str, document: Any) -> Any:
    """The value at ``path`` in ``document`` (a list of values after a wildcard)."""
    values = [document]
    fanned = False
    for kind, arg in parse(path):
        nxt: list[Any] = []
        for value in values:
            if kind == "all":
                if isinstance(value, list):
                    nxt += value
                elif isinstance(value, dict):
                    nxt += list(value.values())
                else:
                    raise PathError(f"jsonPath {path!r}: [*] on a {type(value).__name__}")
            elif kind == "key":
                if not isinstance(value, dict) or arg not in value:
                    raise PathError(f"jsonPath {path!r}: no key {arg!r}")
                nxt.append(value[arg])
            else:
                if not isinstance(value, list) or not -len(value) <= arg < len(value):
                    raise PathError(f"jsonPath {path!r}: no index {arg}")
                nxt.append(value[arg])
        fanned = fanned or kind == "all"
        values = nxt
    return values if fanned else values[0]
