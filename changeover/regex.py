"""Header and cookie route regexes, matched in linear time with RE2 (``google-re2``).

A route's regex runs on a client-controlled value on every request, so a backtracking
engine lets one client spend seconds of the router's CPU per request (``(a+)+$`` on 30
``a``s). RE2 guarantees time linear in the input, as Envoy and Istio use it, at the price
of a few features (backreferences, lookaround, possessive quantifiers): ``problem`` names
what is wrong with a pattern so ``lint`` refuses it, ``full_matcher`` compiles one.

Patterns are UTF-8, and match the whole value (as Envoy, Istio and Gateway API do).

    >>> problem("v(1|2)-.*") is None
    True
    >>> problem("(?=admin)")
    'RE2 cannot match it in linear time: invalid perl operator: (?='
    >>> matches = full_matcher("(a+)+b")
    >>> matches(b"aab"), matches(b"a" * 10_000)
    (True, False)
"""

from __future__ import annotations

from collections.abc import Callable

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error is returned (and shown by lint), not logged by RE2


def _compile(pattern: str) -> re2._Regexp:
    return re2.compile(pattern, _OPTIONS)


def problem(pattern: str) -> str | None:
    """Why RE2 cannot take ``pattern`` (None when it can)."""
    try:
        _compile(pattern)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return f"RE2 cannot match it in linear time: {detail}"
    return None


def checked(pattern: str | None) -> str | None:
    """``pattern`` itself, or ValueError with ``problem``'s text (a pydantic validator)."""
    if pattern is not None:
        why = problem(pattern)
        if why is not None:
            raise ValueError(why)
    return pattern


def full_matcher(pattern: str) -> Callable[[bytes], bool]:
    """A function telling whether a whole value matches ``pattern`` (raises ValueError
    with ``problem``'s text when RE2 cannot take it)."""
    why = problem(pattern)
    if why is not None:
        raise ValueError(why)
    fullmatch = _compile(pattern).fullmatch

    def matches(value: bytes) -> bool:
        return fullmatch(value) is not None

    return matches
