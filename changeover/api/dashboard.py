"""The dashboard's server side: its built page and assets under ``/dashboard/``, and the
session endpoints that turn the API token into a cookie (``http_server.sessions``).

The page is built from ``dashboard/`` (package.json: its charting library comes from the
npm registry at build time) by ``make dashboard`` into ``ASSETS``, which is not in git. A
serve without the build answers ``/dashboard/`` with a 503 that says how to build it.

Every page answer forbids framing (a page of another site cannot overlay our buttons) and
limits scripts, styles and connections to this server (nothing is loaded from elsewhere).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from changeover import errors
from changeover.api import bodies, wire_models
from changeover.http_server import dispatch, http, sessions

ASSETS = Path(__file__).resolve().parent / "dashboard_assets"
_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
NOT_BUILT = "the dashboard is not built: run `make dashboard` (npm ci && esbuild) and restart"


def built() -> bool:
    return (ASSETS / "index.html").is_file()


class DashboardHandlers:
    def __init__(self, store: sessions.Sessions, token_matches: Callable[[str], bool]) -> None:
        self.sessions = store
        self._token_matches = token_matches

    async def redirect(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return http.Response(status=308, headers={"Location": "/dashboard/"})

    async def index(self, request: http.Request, params: dict[str, str]) -> http.Response:
        return self._file("index.html")

    async def asset(self, request: http.Request, params: dict[str, str]) -> http.Response:
        name = params["asset"]
        if not _ASSET_NAME.match(name) or ".." in name:
            raise errors.NotFound(f"no such dashboard file: {name[:100]!r}")
        return self._file(name)

    def _file(self, name: str) -> http.Response:
        if not built():
            return http.Response.error(503, NOT_BUILT)
        path = ASSETS / name
        kind = _TYPES.get(path.suffix)
        if kind is None or not path.is_file():
            raise errors.NotFound(f"no such dashboard file: {name!r}")
        return http.Response(
            status=200, body=path.read_bytes(), content_type=kind, headers=dict(PAGE_HEADERS)
        )

    # --- sessions ------------------------------------------------------------------------

    async def session(self, request: http.Request, params: dict[str, str]) -> http.Response:
        found = self.sessions.find(request)
        doc = wire_models.Session(
            authenticated=found is not None, csrf=found.csrf if found else None
        )
        return http.Response.json(200, doc.model_dump())

    async def login(self, request: http.Request, params: dict[str, str]) -> http.Response:
        if not sessions.same_origin(request):
            return http.Response.error(403, "a session is opened from this server's own page")
        given = wire_models.validate(wire_models.SessionRequest, bodies.body_of(request))
        if not self._token_matches(given.token):
            return http.Response.error(401, "wrong API token")
        sid, session = self.sessions.open()
        doc = wire_models.Session(authenticated=True, csrf=session.csrf)
        return http.Response.json(
            200, doc.model_dump(), headers={"Set-Cookie": sessions.set_cookie(sid)}
        )

    async def logout(self, request: http.Request, params: dict[str, str]) -> http.Response:
        if not sessions.same_origin(request):
            return http.Response.error(403, "a session is closed from this server's own page")
        self.sessions.close(request)
        doc = wire_models.Session(authenticated=False)
        return http.Response.json(
            200, doc.model_dump(), headers={"Set-Cookie": sessions.clear_cookie()}
        )


def add_routes(r: dispatch.Router, store: sessions.Sessions) -> None:
    """The page and the session endpoints, on ``r``. All are public (answered without a
    token even beyond loopback): a browser must reach them to sign in, and the session
    endpoints check the token themselves."""
    d = DashboardHandlers(store, r.token_matches)
    session = "/api/v1/session"
    r.add(
        "GET",
        session,
        d.session,
        summary="The dashboard session",
        answer=wire_models.Session,
        public=True,
    )
    r.add(
        "POST",
        session,
        d.login,
        summary="Open a dashboard session with the token (sets an HttpOnly cookie)",
        body=wire_models.SessionRequest,
        answer=wire_models.Session,
        public=True,
    )
    r.add(
        "DELETE",
        session,
        d.logout,
        summary="Close the dashboard session",
        answer=wire_models.Session,
        public=True,
    )
    for path, handler in (
        ("/", d.redirect),  # someone who opens the API's address in a browser
        ("/dashboard", d.redirect),
        ("/dashboard/", d.index),
        ("/dashboard/{asset}", d.asset),
    ):
        r.add("GET", path, handler, documented=False, public=True)
