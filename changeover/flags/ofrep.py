"""The OpenFeature Remote Evaluation Protocol (OFREP) core, without the HTTP server.

``changeover serve`` answers (``api.server`` wires these to its routes)::

    POST /ofrep/v1/evaluate/flags/{key}   {"context": {...}} → one evaluation
    POST /ofrep/v1/evaluate/flags         {"context": {...}} → {"flags": [...]}, ETag

as in OFREP's OpenAPI description (open-feature/protocol, service/openapi.yaml): success
``{"key", "value", "reason", "variant", "metadata"}``; 400 ``PARSE_ERROR`` or
``INVALID_CONTEXT``; 404 ``FLAG_NOT_FOUND``; the bulk answer carries an ``ETag`` of its
body and is 304 when the request's ``If-None-Match`` names it. Both take the request body
as bytes and never raise: the body is a client's, hostile until parsed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from changeover import json_limits
from changeover.flags import evaluate

JSON = dict[str, Any]
PATH = "/ofrep/v1/evaluate/flags"
MAX_DEPTH = 32  # an evaluation context is a flat map in practice


class _BadRequest(Exception):
    def __init__(self, code: str, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _context(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        doc = json.loads(body, parse_int=json_limits.bounded_int)
    except RecursionError:
        raise _BadRequest("PARSE_ERROR", "the request body nests too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadRequest("PARSE_ERROR", f"the request body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _BadRequest("PARSE_ERROR", "the request body must be a JSON object")
    context = doc.get("context", {})
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise _BadRequest("INVALID_CONTEXT", "context must be a JSON object")
    if json_limits.deeper_than(context, MAX_DEPTH):
        raise _BadRequest("INVALID_CONTEXT", f"context nests more than {MAX_DEPTH} deep")
    return context


def _success(key: str, resolution: evaluate.Resolution) -> JSON:
    return {
        "key": key,
        "value": resolution.value,
        "reason": resolution.reason,
        "variant": resolution.variant,
        "metadata": {},
    }


def evaluate_flag(
    flags: Mapping[str, evaluate.CompiledFlag], key: str, body: bytes
) -> tuple[int, JSON]:
    """One flag: (HTTP status, JSON document)."""
    try:
        context = _context(body)
    except _BadRequest as exc:
        return 400, {"key": key, "errorCode": exc.code, "errorDetails": exc.details}
    flag = flags.get(key)
    if flag is None:
        return 404, {
            "key": key,
            "errorCode": "FLAG_NOT_FOUND",
            "errorDetails": f"no flag named {key[:100]!r}",
        }
    return 200, {**_success(key, flag.evaluate(context)), "cacheable": False}


def evaluate_flags(
    flags: Mapping[str, evaluate.CompiledFlag], body: bytes, if_none_match: str | None
) -> tuple[int, bytes, dict[str, str]]:
    """Every flag: (HTTP status, body bytes, headers); 304 with no body when the client's
    ``If-None-Match`` already names this answer's ETag."""
    try:
        context = _context(body)
    except _BadRequest as exc:
        doc: JSON = {"errorCode": exc.code, "errorDetails": exc.details}
        return 400, json.dumps(doc).encode(), {}
    answers = [_success(key, flags[key].evaluate(context)) for key in sorted(flags)]
    text = json.dumps({"flags": answers}, separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(text).hexdigest()[:32] + '"'
    if if_none_match is not None and etag in (t.strip() for t in if_none_match.split(",")):
        return 304, b"", {"ETag": etag}
    return 200, text, {"ETag": etag}
