"""The HTTP JSON API of ``changeover serve``: every endpoint, and ``start_api``.

``local_server`` calls ``await start_api(service, host=..., port=..., token=...)``
once the service is built, and ``await api.close()`` on shutdown. ``cli.api_client`` is the
other side. Handlers only translate HTTP ↔ ``RolloutService`` calls; auth, errors and the
wire live in ``http_server.dispatch`` and ``http_server.http``.

The route table is ``build_router``; each route names its body and answer models
(``api.wire_models``), from which ``api.openapi`` writes the document served at
``/api/openapi.json`` (docs: the API reference). The dashboard's page, its session
endpoints and its event streams (``api.dashboard``, ``http_server.sessions``, ``api.event_streams``)
share this port.

POST and DELETE need ``Authorization: Bearer <token>`` (or, from the dashboard, its session
cookie with the CSRF header).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import AsyncIterator

from changeover import errors
from changeover.api import (
    bodies,
    dashboard,
    event_streams,
    flag_routes,
    namespace_scope,
    openapi,
    rollout_metrics,
    wire_models,
)
from changeover.api.bodies import MAX_JSON_DEPTH as MAX_JSON_DEPTH  # tests read it here
from changeover.flags.flag_service import FlagService
from changeover.http_server import dispatch, http, sessions
from changeover.rollout_service import RolloutService, settle

PREFIX = "/api/v1"


class Handlers:
    """One method per endpoint, bound to a service."""

    def __init__(self, scopes: namespace_scope.Scopes) -> None:
        self.scopes = scopes
        self.service = scopes.service  # the local one, or the starting namespace's
        self.streams = scopes.streams

    def _service(self, params: dict[str, str]) -> RolloutService:
        return self.scopes.of(params)[0]

    async def healthz(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, {"ok": True})

    async def metrics(self, request: http.Request, params: dict[str, str]) -> http.Response:
        statuses = await settle(self.service.list_rollouts())
        runs = {doc["name"]: await settle(self.service.analysis(doc["name"])) for doc in statuses}
        text = self.service.metrics_text() + rollout_metrics.render(statuses, runs)
        return http.Response(
            status=200,
            body=text.encode(),
            content_type="text/plain; version=0.0.4; charset=utf-8",
        )

    async def list(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(
            200, {"rollouts": await settle(self._service(params).list_rollouts())}
        )

    async def status(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, await settle(self._service(params).status(params["name"])))

    async def events(self, request: http.Request, params: dict[str, str]) -> http.Response:
        limit = bodies.count(request.query.get("limit", ["50"])[-1], "limit")
        events = await settle(
            self._service(params).events(params["name"], limit=min(limit, bodies.EVENTS_LIMIT))
        )
        return http.Response.json(200, {"events": events})

    async def shadow(self, request: http.Request, params: dict[str, str]) -> http.Response:
        reader = getattr(self._service(params), "shadow", None)
        if reader is None:
            raise errors.StateError("this server compares no shadow answers")
        return http.Response.json(200, {"shadow": reader(params["name"])})

    async def history(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(
            200, {"revisions": await settle(self._service(params).history(params["name"]))}
        )

    async def analysis(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(
            200, {"runs": await settle(self._service(params).analysis(params["name"]))}
        )

    async def spec(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, await settle(self._service(params).spec(params["name"])))

    async def logs(self, request: http.Request, params: dict[str, str]) -> http.Response:
        reader = getattr(self._service(params), "logs", None)
        if reader is None:
            raise errors.StateError("this server keeps no logs: use the platform's own tools")
        revision = bodies.query_int(request, "revision", None)
        tail = min(bodies.query_int(request, "tail", 100) or 0, 100_000)
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

    async def stream(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return _event_stream(self.scopes.of(params)[1].lists())

    async def rollout_stream(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return _event_stream(await self.scopes.of(params)[1].rollout(params["name"]))

    async def namespaces(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, await self.scopes.listing())

    async def all_rollouts(self, request: http.Request, params: dict[str, str]) -> http.Response:
        assert self.scopes.namespaces is not None
        return http.Response.json(200, {"rollouts": await self.scopes.namespaces.all_rollouts()})

    async def stream_namespaces(
        self, request: http.Request, params: dict[str, str]
    ) -> http.Response:
        return _event_stream(self.scopes.namespace_stream.lists())

    async def apply(self, request: http.Request, params: dict[str, str]) -> http.Response:
        doc = bodies.body_of(request)
        named = doc.get("source")
        body = wire_models.validate(
            wire_models.ApplyRequest, doc, source=named if isinstance(named, str) else "<api>"
        )
        results = await self._service(params).apply(body.documents, source=body.source)
        return http.Response.json(200, {"results": results})

    async def promote(self, request: http.Request, params: dict[str, str]) -> http.Response:
        full = wire_models.validate(wire_models.PromoteRequest, bodies.body_of(request)).full
        return http.Response.json(
            200, await self._service(params).promote(params["name"], full=full)
        )

    async def abort(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, await self._service(params).abort(params["name"]))

    async def retry(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, await self._service(params).retry(params["name"]))

    async def pause(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, await self._service(params).pause(params["name"]))

    async def resume(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, await self._service(params).resume(params["name"]))

    async def undo(self, request: http.Request, params: dict[str, str]) -> http.Response:
        to = wire_models.validate(wire_models.UndoRequest, bodies.body_of(request)).to_revision
        return http.Response.json(
            200, await self._service(params).undo(params["name"], to_revision=to)
        )

    async def delete(self, request: http.Request, params: dict[str, str]) -> http.Response:
        await self._service(params).delete(params["name"])
        return http.Response.json(200, {"deleted": params["name"]})


def _event_stream(chunks: AsyncIterator[bytes]) -> http.Response:
    return http.Response(
        status=200,
        content_type="text/event-stream; charset=utf-8",
        headers={"X-Accel-Buffering": "no"},
        stream=chunks,
    )


EVENT_STREAM = "text/event-stream"
NAME = "{name}"


def build_router(
    service: RolloutService,
    *,
    token: str,
    loopback: bool,
    tick_seconds: float = event_streams.TICK_SECONDS,
    namespaces: namespace_scope.Namespaces | None = None,
) -> dispatch.Router:
    """The routes over ``service``; with ``namespaces`` (a cluster), every route that
    names rollouts sits under ``/api/v1/namespaces/{namespace}`` instead, ``service``
    being the starting namespace's (``/metrics``)."""
    h = Handlers(namespace_scope.Scopes(service, namespaces, tick=tick_seconds))
    store = sessions.Sessions()
    r = dispatch.Router(token=token, open_reads=loopback, check_host=loopback, sessions=store)
    scope = PREFIX if namespaces is None else PREFIX + "/namespaces/{namespace}"
    one = scope + "/rollouts/" + NAME
    get, post = "GET", "POST"
    if namespaces is not None:
        _add_namespace_routes(r, h)
    r.add(get, "/healthz", h.healthz, summary="Liveness", answer=wire_models.Health)
    r.add(get, "/metrics", h.metrics, summary="Prometheus metrics", answer="text/plain")
    r.add(
        get,
        "/api/openapi.json",
        _openapi(r),
        summary="This OpenAPI document",
        answer="application/json",
    )
    r.add(
        get,
        scope + "/rollouts",
        h.list,
        summary="Every rollout's status",
        answer=wire_models.RolloutList,
    )
    r.add(get, one, h.status, summary="A rollout's status", answer=wire_models.Status)
    r.add(
        get,
        one + "/events",
        h.events,
        summary="A rollout's events, newest last",
        answer=wire_models.EventList,
        query=(("limit", "How many (default 50, at most 10000)"),),
    )
    r.add(get, one + "/history", h.history, summary="Kept revisions", answer=wire_models.History)
    r.add(get, one + "/spec", h.spec, summary="The stored spec document", answer="application/json")
    r.add(
        get,
        one + "/analysis",
        h.analysis,
        summary="Analysis runs with measurements and thresholds",
        answer=wire_models.AnalysisList,
    )
    r.add(
        get,
        one + "/logs",
        h.logs,
        summary="Replica and hook output (local platform)",
        answer=wire_models.Logs,
        query=(
            ("revision", "Only this revision"),
            ("tail", "Lines per log (default 100)"),
            ("since", "ID:OFFSET, repeatable: only what follows"),
        ),
    )
    r.add(
        get,
        one + "/shadow",
        h.shadow,
        summary="A shadow's answers compared with production's: counts, recent differences",
        answer=wire_models.Shadow,
    )
    r.add(
        get,
        scope + "/stream",
        h.stream,
        summary="Live lists (server-sent events)",
        answer=EVENT_STREAM,
    )
    r.add(
        get,
        one + "/stream",
        h.rollout_stream,
        summary="One rollout, live (server-sent events)",
        answer=EVENT_STREAM,
    )
    r.add(
        post,
        scope + "/apply",
        h.apply,
        mutating=True,
        summary="Apply documents",
        body=wire_models.ApplyRequest,
        answer=wire_models.ApplyAnswer,
    )
    r.add(
        post,
        one + "/promote",
        h.promote,
        mutating=True,
        summary="Promote one step, or fully",
        body=wire_models.PromoteRequest,
        answer=wire_models.Status,
    )
    for action, handler, summary in (
        ("abort", h.abort, "Abort: all traffic back to stable"),
        ("retry", h.retry, "Retry an aborted rollout"),
        ("pause", h.pause, "Pause"),
        ("resume", h.resume, "Resume"),
    ):
        r.add(
            post,
            f"{one}/{action}",
            handler,
            mutating=True,
            summary=summary,
            answer=wire_models.Status,
        )
    r.add(
        post,
        one + "/undo",
        h.undo,
        mutating=True,
        summary="Roll back to an earlier revision",
        body=wire_models.UndoRequest,
        answer=wire_models.Status,
    )
    r.add(
        "DELETE",
        one,
        h.delete,
        mutating=True,
        summary="Delete a rollout",
        answer=wire_models.Deleted,
    )
    dashboard.add_routes(r, store)
    flags = getattr(service, "flags", None)
    # The local platform's service keeps flags (changeover.flags) and answers OFREP here;
    # on Kubernetes (the cluster dashboard) Flag resources are the operator's to serve.
    if isinstance(flags, FlagService):
        flag_routes.add_routes(
            r,
            flags,
            evaluation_token=flags.evaluation_token,
            body=bodies.body_of,
            count=bodies.count,
        )
    return r


def _add_namespace_routes(r: dispatch.Router, h: Handlers) -> None:
    """A cluster's: the namespaces to choose from, and (on ``/api/v1/stream``, where the
    local API streams its lists) the same list, live, for the page's selector."""
    r.add(
        "GET",
        PREFIX + "/namespaces",
        h.namespaces,
        summary="The namespaces to choose from (only the starting one when listing is forbidden)",
        answer=wire_models.NamespaceList,
    )
    r.add(
        "GET",
        PREFIX + "/stream",
        h.stream_namespaces,
        summary="The namespaces (with --all-namespaces: every namespace's rollouts), live",
        answer=EVENT_STREAM,
    )
    assert h.scopes.namespaces is not None
    if h.scopes.namespaces.everywhere:
        r.add(
            "GET",
            PREFIX + "/rollouts",
            h.all_rollouts,
            summary="Every namespace's rollouts (--all-namespaces), each with its namespace",
            answer="application/json",
        )


def _openapi(r: dispatch.Router) -> dispatch.Handler:
    async def handler(request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response.json(200, openapi.document(r.routes))

    return handler


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
    service: RolloutService,
    host: str = "127.0.0.1",
    port: int = 7070,
    token: str = "",
    *,
    tick_seconds: float = event_streams.TICK_SECONDS,
    namespaces: namespace_scope.Namespaces | None = None,
) -> ApiServer:
    """Listen on ``host:port`` and serve ``service``. ``token`` guards every mutation (and
    every read too when ``host`` is not loopback). ``tick_seconds``: how often the live
    pages' documents are read (once per tick for every open page); ``namespaces``: a
    cluster's (``build_router``). Raises ``BackendError`` if the address cannot be bound."""
    if not token:
        raise ValueError("start_api needs a non-empty token")
    app = build_router(
        service,
        token=token,
        loopback=is_loopback(host),
        tick_seconds=tick_seconds,
        namespaces=namespaces,
    )
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
