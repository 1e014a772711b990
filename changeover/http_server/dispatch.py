"""Method + path → handler, with the API's two cross-cutting rules: auth and error mapping.

``api.server`` registers its handlers here; ``Router.dispatch`` is the ``App`` the HTTP
protocol calls. Paths are patterns with ``{name}`` segments::

    router.add("GET", "/api/v1/rollouts/{name}", status_handler)
    router.add("POST", "/api/v1/rollouts/{name}/promote", promote_handler, mutating=True)

Errors from ``changeover.errors`` become JSON with the status code the CLI maps back to an
exit code: SpecError → 400 (with every problem), NotFound → 404, StateError → 409,
Forbidden (a cluster's RBAC) → 403, any other ChangeoverError → 500 with its message.
Anything else is logged with its traceback on the server and answered with a plain 500
that names nothing internal: neither a traceback nor the exception's text leaves the
process.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel

from changeover import errors
from changeover.http_server import http
from changeover.http_server.sessions import Sessions

log = logging.getLogger(__name__)

Handler = Callable[[http.Request, dict[str, str]], Awaitable[http.Response]]

_SEGMENT = re.compile(r"\{(\w+)\}")
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    mutating: bool
    # A route with a token of its own (OFREP's evaluation token) takes that token only.
    token: bytes | None = None
    # What ``api.openapi`` documents: the path template, a one-line summary, the request
    # body's model, the answer's model (or a media type for non-JSON answers), and the
    # query parameters with their descriptions.
    template: str = ""
    summary: str = ""
    body: type[BaseModel] | None = None
    answer: type[BaseModel] | str | None = None
    query: tuple[tuple[str, str], ...] = ()
    documented: bool = True
    # Answered without a token even beyond loopback: the dashboard's page and the session
    # endpoints that check the token themselves (a browser must reach them to sign in).
    public: bool = False


def _compile(template: str) -> re.Pattern[str]:
    parts = _SEGMENT.split(template)
    # split() alternates literal text and parameter names: "/a/{name}/b" → ["/a/", "name", "/b"]
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(f"^{regex}$")


def error_response(exc: errors.ChangeoverError) -> http.Response:
    """The JSON form of one of our errors (also used by handlers that validate bodies)."""
    kind = type(exc).__name__
    if isinstance(exc, errors.SpecError):
        problems = [{"file": p.file, "path": p.path, "message": p.message} for p in exc.problems]
        return http.Response.error(400, str(exc) or "invalid input", type=kind, problems=problems)
    if isinstance(exc, errors.NotFound):
        return http.Response.error(404, str(exc), type=kind)
    if isinstance(exc, errors.StateError):
        return http.Response.error(409, str(exc), type=kind)
    if isinstance(exc, errors.Forbidden):
        return http.Response.error(403, str(exc), type=kind)
    return http.Response.error(500, str(exc) or kind, type=kind)


class Router:
    """Routes plus the policy: mutations need the bearer token; reads need it only when
    the API listens beyond loopback (``open_reads=False``)."""

    def __init__(
        self,
        *,
        token: str,
        open_reads: bool,
        check_host: bool,
        sessions: Sessions | None = None,
    ) -> None:
        self._routes: list[Route] = []
        self._token = token.encode()
        # The dashboard's cookie sessions (``sessions``): the token's stand-in in a browser.
        self._sessions = sessions
        self._open_reads = open_reads
        # On loopback, refuse Host headers naming other machines: a web page that
        # DNS-rebinds its own name to 127.0.0.1 could otherwise read the API.
        self._check_host = check_host

    def add(
        self,
        method: str,
        template: str,
        handler: Handler,
        *,
        mutating: bool = False,
        summary: str = "",
        body: type[BaseModel] | None = None,
        answer: type[BaseModel] | str | None = None,
        query: tuple[tuple[str, str], ...] = (),
        documented: bool = True,
        token: str | None = None,
        public: bool = False,
    ) -> None:
        self._routes.append(
            Route(
                method,
                _compile(template),
                handler,
                mutating,
                template=template,
                summary=summary,
                body=body,
                answer=answer,
                query=query,
                documented=documented,
                token=token.encode() if token is not None else None,
                public=public,
            )
        )

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is the API token (in constant time)."""
        return hmac.compare_digest(given.strip().encode(), self._token)

    def _authorized(self, request: http.Request, token: bytes | None = None) -> bool:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(given.strip().encode(), token or self._token)

    def _allowed(self, request: http.Request, route: Route) -> bool:
        if route.token is not None:  # a route with a token of its own takes only that one
            return self._authorized(request, route.token)
        if self._authorized(request):
            return True
        sessions = self._sessions
        return sessions is not None and sessions.allows(request, mutating=route.mutating)

    def _host_allowed(self, request: http.Request) -> bool:
        host = request.headers.get("host", "")
        if not host:
            return True
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.lower() in _LOOPBACK_HOSTS

    async def dispatch(self, request: http.Request) -> http.Response:
        if self._check_host and not self._host_allowed(request):
            return http.Response.error(421, "this API answers only to loopback host names")
        method = "GET" if request.method == "HEAD" else request.method
        allowed: list[str] = []
        for route in self._routes:
            match = route.pattern.match(request.path)
            if match is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            needed = route.token is not None or route.mutating or not self._open_reads
            needed = needed and not route.public
            if needed and not self._allowed(request, route):
                return http.Response.error(
                    401,
                    "missing or wrong API token (Authorization: Bearer <token>, or the "
                    "dashboard's session with its CSRF token)",
                    headers={"WWW-Authenticate": 'Bearer realm="changeover"'},
                )
            return await self._call(route, request, match.groupdict())
        if allowed:
            return http.Response.error(
                405,
                f"{request.method} is not allowed on {request.path}",
                headers={"Allow": ", ".join(sorted(set(allowed)))},
            )
        return http.Response.error(404, f"no such endpoint: {request.method} {request.path}")

    async def _call(
        self, route: Route, request: http.Request, params: dict[str, str]
    ) -> http.Response:
        try:
            return await route.handler(request, params)
        except errors.ChangeoverError as exc:
            if not isinstance(
                exc, errors.SpecError | errors.NotFound | errors.StateError | errors.Forbidden
            ):
                log.warning("%s %s failed: %s", request.method, request.path, exc)
            return error_response(exc)
        except Exception:
            # The exception's text may carry internals (paths, values, code): it goes to
            # the server's log only.
            log.exception("internal error in %s %s", request.method, request.path)
            return http.Response.error(
                500, "internal error; the server's log has the details", type="InternalError"
            )
