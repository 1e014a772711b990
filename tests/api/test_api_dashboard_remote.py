"""The dashboard of a server that listens beyond loopback, in chromium (Playwright, Debian's
binary): reads need the token there, so the page must say so instead of waiting forever,
and signing in must bring the list up. The API is built as ``start_api`` builds it for a
non-loopback address, but served on 127.0.0.1 (tests never listen elsewhere)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from api_helpers import ROLLOUT, TOKEN

from changeover.api.server import build_router
from changeover.http_server import http
from changeover.testing.fake_service import FakeService
from tests import browser_helpers

pytestmark = pytest.mark.slow


@pytest.fixture
def remote_url() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    service = FakeService()
    routes = build_router(service, token=TOKEN, loopback=False)
    connections: set[http.HttpProtocol] = set()

    async def start() -> asyncio.Server:
        await service.apply([ROLLOUT], source="r.yaml")
        return await asyncio.get_running_loop().create_server(
            lambda: http.HttpProtocol(routes.dispatch, connections), "127.0.0.1", 0
        )

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:

        async def stop() -> None:
            server.close()
            for conn in list(connections):
                conn.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_beyond_loopback_the_page_asks_for_the_token_then_shows_the_list(
    remote_url: str,
) -> None:
    with browser_helpers.page() as (page, _errors):
        page.set_default_timeout(30_000)
        page.goto(f"{remote_url}/dashboard/")
        page.locator("#live", has_text="sign in to read").wait_for()
        page.locator("#toast div.bad", has_text="needs the API token").wait_for()
        assert page.locator('tr[data-rollout="chat"]').count() == 0
        page.fill("#token", TOKEN)
        page.click("#sign-in")
        page.locator('tr[data-rollout="chat"]').wait_for()
        page.locator("#live", has_text="live").wait_for()
