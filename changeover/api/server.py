"""The HTTP JSON API of ``changeover serve``: every endpoint, and ``start_api``.

``local_server`` calls ``await start_api(service, host=..., port=..., token=...)``
once the service is built, and ``await api.close()`` on shutdown. ``cli.client`` is the
other side. Handlers only translate HTTP ↔ ``RolloutService`` calls; auth, errors and the
wire live in ``api.router`` and ``api.http``.

    GET    /healthz                              {"ok": true}
    GET    /metrics                              Prometheus text
    GET    /api/v1/rollouts                      {"rollouts": [status, ...]}
    GET    /api/v1/rollouts/{name}               status document
    GET    /api/v1/rollouts/{name}/events        {"events": [...]}   (?limit=N, default 50)
    GET    /api/v1/rollouts/{name}/history       {"revisions": [...]}
    GET    /api/v1/rollouts/{name}/spec          the stored spec document
    GET    /api/v1/rollouts/{name}/logs          {"logs": [...]}  (?revision=N&tail=N
                                                 &since=ID:OFFSET..., local platform)
    POST   /api/v1/apply                         {"documents": [...], "source": "r.yaml"}
                                                 → {"results": [...]}
    POST   /api/v1/rollouts/{name}/promote       {"full": false} → status document
    POST   /api/v1/rollouts/{name}/abort|retry|pause|resume      → status document
    POST   /api/v1/rollouts/{name}/undo          {"toRevision": 2 | null} → status document
    DELETE /api/v1/rollouts/{name}               {"deleted": name}

POST and DELETE need ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from typing import Any

from changeover import errors
from changeover.api import flag_routes, http, router
from changeover.rollout_service import RolloutService

PREFIX = "/api/v1"


# Deeper than any spec needs; a deeper body is refused before it reaches the service (whose
# recursive walks would otherwise run out of stack on it).
MAX_JSON_DEPTH = 64
EVENTS_LIMIT = 10_000
MAX_INT_DIGITS = 40  # no spec needs more; Python refuses past 4,300


def _bad_request(path: str, message: str) -> errors.SpecError:
    return errors.SpecError.single(file="", path=path, message=message)


def _body(request: http.Request) -> dict[str, Any]:
    """The JSON object in the request body ({} when empty), or a 400."""
    if not request.body.strip():
        return {}
    try:
        doc = json.loads(request.body, parse_int=_bounded_int)
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
    if _deeper_than(doc, MAX_JSON_DEPTH):
        raise _bad_request("", f"request body nests more than {MAX_JSON_DEPTH} deep")
    return doc


def _bounded_int(text: str) -> int:
    """A JSON integer, refused past ``MAX_INT_DIGITS`` digits (as the YAML loader does)."""
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of more than {MAX_INT_DIGITS} digits")
    return int(text)


def _deeper_than(doc: Any, limit: int) -> bool:
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


def _count(raw: str, name: str) -> int:
    """A query parameter that is a count: ASCII digits only (``isdigit`` takes '٣' and '²',
    which ``int`` then refuses)."""
    if not (raw.isascii() and raw.isdigit()):
        raise _bad_request(name, f"expected a non-negative integer, got {raw[:40]!r}")
    digits = raw.lstrip("0") or "0"
    return EVENTS_LIMIT if len(digits) > 9 else int(digits)


def _field(doc: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = doc.get(name, default)
    # bool is an int in Python; a count given as true is a mistake, not 1.
    bad_bool = isinstance(value, bool) and kind is int
    if value is not default and (bad_bool or not isinstance(value, kind)):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise errors.SpecError.single(
            file="", path=name, message=f"expected {expected}, got {json.dumps(value)}"
        )
    return value


def _query_int(request: http.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name, [None])[-1]
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise errors.SpecError.single(
            file="", path=name, message=f"expected a non-negative integer, got {raw[:50]!r}"
        )
    return int(raw)


class Handlers:
    """One method per endpoint, bound to a service."""

    def __init__(self, service: RolloutService) -> None:
        self.service = service

    async def healthz(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, {"ok": True})

    async def metrics(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response(
            status=200,
            body=self.service.metrics_text().encode(),
            content_type="text/plain; version=0.0.4; charset=utf-8",
        )

    async def list(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, {"rollouts": self.service.list_rollouts()})

    async def status(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, self.service.status(params["name"]))

    async def events(self, request: http.Request, params: dict[str, str]) -> http.Response:
        limit = _count(request.query.get("limit", ["50"])[-1], "limit")
        events = self.service.events(params["name"], limit=min(limit, EVENTS_LIMIT))
        return http.Response.json(200, {"events": events})

    async def history(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, {"revisions": self.service.history(params["name"])})

    async def spec(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, self.service.spec(params["name"]))

    async def logs(self, request: http.Request, params: dict[str, str]) -> http.Response:
        reader = getattr(self.service, "logs", None)
        if reader is None:
            raise errors.StateError("this server keeps no logs: use the platform's own tools")
        revision = _query_int(request, "revision", None)
        tail = min(_query_int(request, "tail", 100) or 0, 100_000)
        since: dict[str, int] = {}
        for item in request.query.get("since", [])[:1000]:
            log_id, _, offset = item.rpartition(":")
            if not log_id or not offset.isdigit():
                raise errors.SpecError.single(
                    file="", path="since", message=f"expected ID:OFFSET, got {item[:100]!r}"
                )
            since[log_id] = int(offset)
        found = reader(params["name"], revision=revision, tail=tail, since=since)
        return http.Response.json(200, {"logs": found})

    async def apply(self, request: http.Request, params: dict[str, str]) -> http.Response:
        doc = _body(request)
        documents = _field(doc, "documents", list, None)
        if documents is None:
            raise errors.SpecError.single(
                file="", path="documents", message="expected a list of documents"
            )
        source = _field(doc, "source", str, "<api>")
        for i, item in enumerate(documents):
            if not isinstance(item, dict):
                raise errors.SpecError.single(
                    file=source, path=f"documents[{i}]", message="expected a mapping"
                )
        results = await self.service.apply(documents, source=source)
        return http.Response.json(200, {"results": results})

    async def promote(self, request: http.Request, params: dict[str, str]) -> http.Response:
        full = _field(_body(request), "full", bool, False)
        return http.Response.json(200, await self.service.promote(params["name"], full=full))

    async def abort(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, await self.service.abort(params["name"]))

    async def retry(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, await self.service.retry(params["name"]))

    async def pause(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, await self.service.pause(params["name"]))

    async def resume(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, await self.service.resume(params["name"]))

    async def undo(self, request: http.Request, params: dict[str, str]) -> http.Response:
        to = _field(_body(request), "toRevision", int, None)
        return http.Response.json(200, await self.service.undo(params["name"], to_revision=to))

    async def delete(self, request: http.Request, params: dict[str, str]) -> http.Response:
        await self.service.delete(params["name"])
        return http.Response.json(200, {"deleted": params["name"]})


def build_router(service: RolloutService, *, token: str, loopback: bool) -> router.Router:
    h = Handlers(service)
    r = router.Router(token=token, open_reads=loopback, check_host=loopback)
    one = PREFIX + "/rollouts/{name}"
    r.add("GET", "/healthz", h.healthz)
    r.add("GET", "/metrics", h.metrics)
    r.add("GET", PREFIX + "/rollouts", h.list)
    r.add("GET", one, h.status)
    r.add("GET", one + "/events", h.events)
    r.add("GET", one + "/history", h.history)
    r.add("GET", one + "/spec", h.spec)
    r.add("GET", one + "/logs", h.logs)
    r.add("POST", PREFIX + "/apply", h.apply, mutating=True)
    r.add("POST", one + "/promote", h.promote, mutating=True)
    r.add("POST", one + "/abort", h.abort, mutating=True)
    r.add("POST", one + "/retry", h.retry, mutating=True)
    r.add("POST", one + "/pause", h.pause, mutating=True)
    r.add("POST", one + "/resume", h.resume, mutating=True)
    r.add("POST", one + "/undo", h.undo, mutating=True)
    r.add("DELETE", one, h.delete, mutating=True)
    flags = getattr(service, "flags", None)
    if flags is not None:  # the local platform's service keeps flags (changeover.flags)
        flag_routes.add_routes(
            r, flags, evaluation_token=flags.evaluation_token, body=_body, count=_count
        )
    return r


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ApiServer:
    """A listening API. ``url`` is where clients reach it (the real port when 0 was asked)."""

    def __init__(
        self, server: asyncio.Server, connections: set[http.HttpProtocol], host: str
    ) -> None:
        self._server = server
        self._connections = connections
        sock = server.sockets[0].getsockname()
        self.host = host
        self.port = int(sock[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"

    async def close(self) -> None:
        """Stop listening, hang up on every client, and wait until the server is closed."""
        self._server.close()
        for conn in list(self._connections):
            conn.close()
        await self._server.wait_closed()


async def start_api(
    service: RolloutService, host: str = "127.0.0.1", port: int = 7070, token: str = ""
) -> ApiServer:
    """Listen on ``host:port`` and serve ``service``. ``token`` guards every mutation (and
    every read too when ``host`` is not loopback). Raises ``BackendError`` if the address
    cannot be bound."""
    if not token:
        raise ValueError("start_api needs a non-empty token")
    app = build_router(service, token=token, loopback=is_loopback(host))
    connections: set[http.HttpProtocol] = set()
    try:
        limits = http.limits_from_env(os.environ)  # CHANGEOVER_API_* (docs/reference/api.md)
    except ValueError as exc:
        raise errors.PermanentBackendError(str(exc)) from exc
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            lambda: http.HttpProtocol(app.dispatch, connections, limits), host, port
        )
    except OSError as exc:
        raise errors.PermanentBackendError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    return ApiServer(server, connections, host)
