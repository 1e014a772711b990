"""Request bodies and query parameters of the control API, read defensively.

A body is a JSON object of bounded depth and integer size (``body_of``); anything else is
a 400 that says what is wrong, before a handler or the service sees it.
"""

from __future__ import annotations

import json
from typing import Any

from changeover import errors, json_limits
from changeover.http_server import http

# Deeper than any spec needs; a deeper body is refused before it reaches the service (whose
# recursive walks would otherwise run out of stack on it).
MAX_JSON_DEPTH = 64
EVENTS_LIMIT = 10_000


def _bad_request(path: str, message: str) -> errors.SpecError:
    return errors.SpecError.single(file="", path=path, message=message)


def body_of(request: http.Request) -> dict[str, Any]:
    """The JSON object in the request body ({} when empty), or a 400."""
    if not request.body.strip():
        return {}
    try:
        doc = json.loads(request.body, parse_int=json_limits.bounded_int)
    except RecursionError:
        raise _bad_request("", f"request body nests more than {MAX_JSON_DEPTH} deep") from None
    except UnicodeDecodeError:
        raise _bad_request("", "request body is not valid JSON: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _bad_request("", f"request body is not valid JSON: {exc}") from None
    except ValueError as exc:  # an integer of more than MAX_INT_DIGITS digits
        raise _bad_request("", f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _bad_request("", "request body must be a JSON object")
    if json_limits.deeper_than(doc, MAX_JSON_DEPTH):
        raise _bad_request("", f"request body nests more than {MAX_JSON_DEPTH} deep")
    return doc


def count(raw: str, name: str) -> int:
    """A query parameter that is a count: ASCII digits only (``isdigit`` takes '٣' and '²',
    which ``int`` then refuses)."""
    if not (raw.isascii() and raw.isdigit()):
        raise _bad_request(name, f"expected a non-negative integer, got {raw[:40]!r}")
    digits = raw.lstrip("0") or "0"
    return EVENTS_LIMIT if len(digits) > 9 else int(digits)


def query_int(request: http.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name, [None])[-1]
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise errors.SpecError.single(
            file="", path=name, message=f"expected a non-negative integer, got {raw[:50]!r}"
        )
    return int(raw)
