"""Browser sessions for the dashboard: the API token entered once, then a cookie.

``POST /api/v1/session`` with the token answers with a session cookie (``HttpOnly``, so no
script reads it; ``SameSite=Strict``, so no other site's page sends it) and a CSRF token the
page keeps in memory. An action then needs all three: the cookie, the CSRF token in the
``X-CSRF-Token`` header (a header another origin cannot set without a CORS preflight this
server never grants), and an ``Origin``/``Sec-Fetch-Site`` naming this server when the
browser sends them. Reads need the cookie only (and on loopback nothing at all).

Sessions live in serve's memory: a restarted serve asks for the token again. At most
``MAX_SESSIONS`` are kept (the oldest is dropped first), each for ``LIFETIME`` seconds.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from changeover.http_server import http

COOKIE = "changeover_session"
CSRF_HEADER = "x-csrf-token"
LIFETIME = 12 * 3600.0
MAX_SESSIONS = 256


@dataclass(frozen=True)
class Session:
    csrf: str
    expires: float


def _cookie(request: http.Request, name: str) -> str | None:
    for part in request.headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def same_origin(request: http.Request) -> bool:
    """Whether the browser says the request comes from a page of this server (a client
    that is not a browser sends neither header and is judged by its token alone)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return bool(host) and origin in (f"http://{host}", f"https://{host}")


class Sessions:
    def __init__(self) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self) -> tuple[str, Session]:
        """A new session: its id (the cookie's value) and its CSRF token."""
        now = time.monotonic()
        self._expire(now)
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(32), expires=now + LIFETIME)
        self._sessions[sid] = session
        return sid, session

    def find(self, request: http.Request) -> Session | None:
        """The live session the request's cookie names, if any."""
        sid = _cookie(request, COOKIE)
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None or session.expires < time.monotonic():
            return None
        return session

    def close(self, request: http.Request) -> None:
        sid = _cookie(request, COOKIE)
        if sid:
            self._sessions.pop(sid, None)

    def allows(self, request: http.Request, *, mutating: bool) -> bool:
        """A read with a live session cookie; an action with the cookie, the matching CSRF
        header, and no sign of another origin."""
        session = self.find(request)
        if session is None:
            return False
        if not mutating:
            return True
        given = request.headers.get(CSRF_HEADER, "")
        return (
            bool(given)
            and hmac.compare_digest(given.encode(), session.csrf.encode())
            and same_origin(request)
        )

    def _expire(self, now: float) -> None:
        for sid in [k for k, s in self._sessions.items() if s.expires < now]:
            del self._sessions[sid]


def set_cookie(sid: str) -> str:
    return f"{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={int(LIFETIME)}"


def clear_cookie() -> str:
    return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
