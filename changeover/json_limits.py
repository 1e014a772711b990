"""Limits for JSON from clients: integers of bounded length, nesting of bounded depth.

``json.loads(body, parse_int=bounded_int)`` refuses an integer of more than
``MAX_INT_DIGITS`` digits with ValueError (Python's own limit, 4,300, is far past any spec
and slow to reach); ``deeper_than`` walks without recursion, so a hostile document cannot
exhaust the stack of whoever checks it.

    >>> deeper_than({"a": [[1]]}, 2), deeper_than({"a": [[1]]}, 3)
    (True, False)
"""

from __future__ import annotations

from typing import Any

MAX_INT_DIGITS = 40  # no spec or context needs more


def bounded_int(text: str) -> int:
    """A JSON integer, refused past ``MAX_INT_DIGITS`` digits (as the YAML loader does)."""
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of more than {MAX_INT_DIGITS} digits")
    return int(text)


def deeper_than(doc: Any, limit: int) -> bool:
    """Whether ``doc`` nests more than ``limit`` levels (walked without recursion)."""
    stack = [(doc, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False
