"""The OpenAPI 3.1 document of the control API, written from the route table itself.

Each ``router.Route`` names its request body and answer models (``api.wire_models``); their
JSON schemas (pydantic's) go under ``components.schemas`` and every operation refers to
them, with the error answers the router gives every route (400 with the problems, 401,
404, 409, 500). A route added without models still appears, with a generic answer.

Why not a framework that does this: the API's HTTP layer (``http_server.http``) carries limits a
framework does not give us as-is (per-request head and body deadlines, pipelining
backpressure, a connection cap answered with 503); the schema only needs the routes and
the models, which are ours either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from changeover.api import wire_models
from changeover.http_server.dispatch import Route

VERSION = "1"
_PARAM = re.compile(r"\{(\w+)\}")
_ERRORS = {
    "400": "Bad input: every problem, each naming its field",
    "404": "No such rollout or endpoint",
    "409": "Not possible in the rollout's current state",
    "500": "The backend failed",
}


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    name = model.__name__
    if name not in schemas:
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        for sub, sub_schema in schema.pop("$defs", {}).items():
            schemas.setdefault(sub, sub_schema)
        schemas[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    answer = route.answer
    if isinstance(answer, type):
        content = {"application/json": {"schema": _ref(answer, schemas)}}
    elif answer is None or answer == "application/json":  # JSON without a model: any
        content = {"application/json": {"schema": {}}}
    else:
        content = {answer: {"schema": {"type": "string"}}}
    return {"description": route.summary or "OK", "content": content}


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    error = {"application/json": {"schema": _ref(wire_models.ErrorDocument, schemas)}}
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(route.template)
    ]
    params += [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
            "schema": {"type": "string"},
        }
        for name, text in route.query
    ]
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": _operation_id(route),
        "responses": {
            "200": _answer(route, schemas),
            **{code: {"description": text, "content": error} for code, text in _ERRORS.items()},
        },
    }
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _ref(route.body, schemas)}},
        }
    if route.mutating:
        op["security"] = [{"bearer": []}, {"session": [], "csrf": []}]
        op["responses"]["401"] = {"description": "Missing or wrong token", "content": error}
    return op


def _operation_id(route: Route) -> str:
    # "/api/v1/rollouts/{name}/events" -> "get_rollouts_by_name_events"
    path = _PARAM.sub(r"by_\1", route.template)
    words = [w for w in path.split("/") if w and w not in ("api", "v1")]
    joined = "_".join(w.replace(".", "_").replace("-", "_") for w in words) or "root"
    return f"{route.method.lower()}_{joined}"


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (the undocumented ones, such as the dashboard's
    page, left out)."""
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.documented:
            paths.setdefault(route.template, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "changeover control API",
            "version": VERSION,
            "description": (
                "Rollouts, their status, history, analysis and the commands that change them. "
                "Reads are open on loopback; every change needs the token as a bearer, or the "
                "dashboard's session cookie with its CSRF header."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "changeover_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
    }
