"""No action from another origin, in a real browser: chromium (Playwright, Debian's binary)
signs in on the dashboard, then opens a page of another origin on the same machine (same
site: 127.0.0.1 on another port, so the SameSite=Strict cookie alone would not stop it).
That page tries a plain fetch with credentials, a fetch that also reads the session's CSRF
token first, and a form POST; the service must record no command (the browser hides the
fetches' answers from that page; the form lands on the API's 401). Without the CSRF and
origin checks the plain fetch pauses the rollout."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_helpers import AUTH, ROLLOUT, TOKEN

from changeover.api.server import start_api
from changeover.testing.fake_service import FakeService
from tests import browser_helpers

pytestmark = pytest.mark.slow

ATTACKS = """async (api) => {
  const out = {};
  try {
    const r = await fetch(api + "/api/v1/rollouts/chat/pause",
      {method: "POST", credentials: "include"});
    out.plain = r.status;
  } catch (e) { out.plain = "blocked"; }
  try {
    const s = await fetch(api + "/api/v1/session", {credentials: "include"});
    const csrf = (await s.json()).csrf;
    const r = await fetch(api + "/api/v1/rollouts/chat/abort",
      {method: "POST", credentials: "include", headers: {"X-CSRF-Token": csrf}});
    out.withCsrf = r.status;
  } catch (e) { out.withCsrf = "blocked"; }
  return out;
}"""
FORM = """(api) => {
  const form = document.createElement("form");
  form.method = "POST";
  form.action = api + "/api/v1/rollouts/chat/pause";
  document.body.append(form);
  form.submit();
}"""


class _Blank(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>another site</title><body></body>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[str, str, FakeService]]:
    """The API (on a fake service holding rollout "chat") and another origin's page."""
    service = FakeService()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    api = asyncio.run_coroutine_threadsafe(start_api(service, "127.0.0.1", 0, TOKEN), loop)
    api_server = api.result(10)
    httpx.post(f"{api_server.url}/api/v1/apply", json={"documents": [ROLLOUT]}, headers=AUTH)
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Blank)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        yield api_server.url, f"http://127.0.0.1:{other.server_address[1]}", service
    finally:
        other.shutdown()
        asyncio.run_coroutine_threadsafe(api_server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_a_page_of_another_origin_cannot_act_with_the_session(
    servers: tuple[str, str, FakeService],
) -> None:
    api, other, service = servers
    with browser_helpers.page() as (page, _errors):
        page.goto(f"{api}/dashboard/")
        page.fill("#token", TOKEN)
        page.click("#sign-in")
        page.locator('[data-auth="in"]').wait_for()
        page.goto(f"{other}/")
        found = page.evaluate(ATTACKS, api)
        with page.expect_navigation():
            page.evaluate(FORM, api)
        assert "missing or wrong API token" in page.content()
    assert found == {"plain": "blocked", "withCsrf": "blocked"}, found  # answers unreadable
    commands = [c for c in service.calls if c[0] != "apply"]
    assert commands == [], commands
