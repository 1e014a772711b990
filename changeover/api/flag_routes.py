"""The flag endpoints of ``changeover serve``: management beside the rollouts', and OFREP.

    GET    /api/v1/flags                          {"flags": [status, ...]}
    GET    /api/v1/flags/{name}                   status document
    GET    /api/v1/flags/{name}/events|history|spec
    POST   /api/v1/flags/{name}/undo              {"toRevision": 2 | null}
    POST   /api/v1/flags/{name}/abort|retry|promote|pause|resume
    DELETE /api/v1/flags/{name}
    POST   /ofrep/v1/evaluate/flags/{key}         OFREP single evaluation
    POST   /ofrep/v1/evaluate/flags               OFREP bulk evaluation (ETag, 304)

Flags are applied through ``POST /api/v1/apply`` with the rollouts. Management takes the
API token as every other endpoint; OFREP takes only the evaluation token (``flags-token``
in the state directory), which an application can hold without being able to change
anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from changeover import errors
from changeover.flags import ofrep
from changeover.flags.flag_service import FlagService
from changeover.http_server import dispatch, http

PREFIX = "/api/v1/flags"
BodyReader = Callable[[http.Request], dict[str, Any]]
CountReader = Callable[[str, str], int]
OFREP = ofrep.PATH


class FlagHandlers:
    def __init__(self, flags: FlagService, body: BodyReader, count: CountReader) -> None:
        self.flags = flags
        self._body = body  # api.server's checked JSON body reader
        self._count = count

    async def list(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, {"flags": self.flags.list_flags()})

    async def status(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, self.flags.status(params["name"]))

    async def events(self, request: http.Request, params: dict[str, str]) -> http.Response:
        limit = self._count(request.query.get("limit", ["50"])[-1], "limit")
        events = self.flags.events(params["name"], limit=min(limit, 10_000))
        return http.Response.json(200, {"events": events})

    async def history(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, {"revisions": self.flags.history(params["name"])})

    async def spec(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, self.flags.spec(params["name"]))

    async def command(self, request: http.Request, params: dict[str, str]) -> http.Response:
        verb, name = params["verb"], params["name"]
        body = self._body(request)
        if verb == "undo":
            to = body.get("toRevision")
            if to is not None and (isinstance(to, bool) or not isinstance(to, int)):
                raise errors.SpecError.single(
                    file="", path="toRevision", message=f"expected int, got {to!r}"[:200]
                )
            return http.Response.json(200, self.flags.undo(name, to_revision=to))
        if verb == "promote":
            full = body.get("full", False)
            return http.Response.json(200, self.flags.promote(name, full=full is True))
        command = {
            "abort": self.flags.abort,
            "retry": self.flags.retry,
            "pause": self.flags.pause,
            "resume": self.flags.resume,
        }.get(verb)
        if command is None:
            return http.Response.error(404, f"no such endpoint: {request.method} {request.path}")
        return http.Response.json(200, command(name))

    async def delete(self, request: http.Request, params: dict[str, str]) -> http.Response:
        self.flags.delete(params["name"])
        return http.Response.json(200, {"deleted": params["name"]})

    async def evaluate_one(self, request: http.Request, params: dict[str, str]) -> http.Response:
        status, doc = ofrep.evaluate_flag(self.flags.snapshot(), params["key"], request.body)
        return http.Response.json(status, doc)

    async def evaluate_all(self, request: http.Request, params: dict[str, str]) -> http.Response:
        status, body, headers = ofrep.evaluate_flags(
            self.flags.snapshot(), request.body, request.headers.get("if-none-match")
        )
        return http.Response(status=status, body=body, headers=headers)


def add_routes(
    r: dispatch.Router,
    flags: FlagService,
    *,
    evaluation_token: str,
    body: BodyReader,
    count: CountReader,
) -> None:
    """Register the flag endpoints on ``r``; OFREP answers only ``evaluation_token``."""
    h = FlagHandlers(flags, body, count)
    one = PREFIX + "/{name}"
    r.add("GET", PREFIX, h.list)
    r.add("GET", one, h.status)
    r.add("GET", one + "/events", h.events)
    r.add("GET", one + "/history", h.history)
    r.add("GET", one + "/spec", h.spec)
    r.add("POST", one + "/{verb}", h.command, mutating=True)
    r.add("DELETE", one, h.delete, mutating=True)
    r.add("POST", OFREP + "/{key}", h.evaluate_one, token=evaluation_token)
    r.add("POST", OFREP, h.evaluate_all, token=evaluation_token)
