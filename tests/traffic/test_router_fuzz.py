"""Differential HTTP fuzzing: the builtin router against nginx (``http_fuzz``), and
generated upstream responses through the router (``response_fuzz``).

``make test`` runs a few hundred generated cases; ``make fuzz`` runs 10,000 or more
(``CHANGEOVER_FUZZ_CASES``). Every desync found became a fixed bug with its own
regression test (tests/traffic/test_router_smuggling.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import http_fuzz
import pytest
import response_fuzz
from hypothesis import HealthCheck, given, settings

from changeover.endpoints import Endpoint
from changeover.traffic.builtin import BuiltinRouter, Registry, Settings

pytestmark = pytest.mark.skipif(
    not os.access(http_fuzz.NGINX, os.X_OK), reason="needs nginx (make deps-nginx)"
)

CASES = int(os.environ.get("CHANGEOVER_FUZZ_CASES", "200"))
# make test runs the same cases every time (a CI run never fails on a case nobody saw
# before); make fuzz (CHANGEOVER_FUZZ_CASES set) draws new ones on every run.
FIXED = "CHANGEOVER_FUZZ_CASES" not in os.environ
STATS = {"cases": 0, "diverged": 0}


@pytest.fixture(scope="module")
def proxies() -> Iterator[http_fuzz.Proxies]:
    workdir = tempfile.mkdtemp(prefix="co-fuzz-")
    try:
        with http_fuzz.running(Path(workdir)) as running:
            yield running
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nhttp fuzz: {STATS['cases']} cases, {STATS['diverged']} accepted differently")


@settings(
    max_examples=CASES,
    deadline=None,
    database=None,
    derandomize=FIXED,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=http_fuzz.stream())
def test_the_router_never_frames_differently_from_nginx(
    proxies: http_fuzz.Proxies, data: bytes
) -> None:
    STATS["cases"] += 1
    for recorder in (proxies.behind_router, proxies.behind_nginx):
        recorder.reset()
    http_fuzz.exchange(proxies.router_port, data)
    nginx_answer = http_fuzz.exchange(proxies.nginx_port, data)
    http_fuzz.settle(proxies.behind_router, proxies.behind_nginx)
    outcome = http_fuzz.compare(
        data,
        list(proxies.behind_router.seen),
        list(proxies.behind_router.problems),
        list(proxies.behind_nginx.seen),
        nginx_answer,
    )
    STATS["diverged"] += outcome.diverged
    assert outcome.desync is None, f"{outcome.desync}\nsent: {data!r}"


def test_a_request_without_host_is_refused_as_nginx_refuses_it(
    proxies: http_fuzz.Proxies,
) -> None:
    """An HTTP/1.1 request without Host was forwarded by the router and refused by nginx,
    a difference the fuzzer counted; now both answer 400 and forward nothing after it."""
    for data in (
        b"GET /first HTTP/1.1\r\nhost: fuzz\r\n\r\n"
        b"POST /x HTTP/1.1\r\ncontent-length: 1\r\n\r\nx" + http_fuzz.END,
        b"GET /x HTTP/1.1\r\n\r\n" + http_fuzz.END,
    ):
        for recorder in (proxies.behind_router, proxies.behind_nginx):
            recorder.reset()
        router_answer = http_fuzz.exchange(proxies.router_port, data)
        nginx_answer = http_fuzz.exchange(proxies.nginx_port, data)
        http_fuzz.settle(proxies.behind_router, proxies.behind_nginx)
        router_seen = list(proxies.behind_router.seen)
        outcome = http_fuzz.compare(
            data,
            router_seen,
            list(proxies.behind_router.problems),
            list(proxies.behind_nginx.seen),
            nginx_answer,
        )
        assert b" 400 " in router_answer and b" 400 " in nginx_answer, (router_answer, data)
        assert outcome.desync is None and not outcome.diverged, (outcome, router_seen, data)


@pytest.fixture(scope="module")
def response_router() -> Iterator[tuple[int, response_fuzz.ResponseUpstream]]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    up = response_fuzz.ResponseUpstream()
    router = BuiltinRouter("rfuzz", port=0, metrics=Registry(), settings=Settings(drain_grace=0.5))

    async def start() -> None:
        await up.start()
        await router.start()
        await router.set_backends(1, [Endpoint("127.0.0.1", up.port)])
        await router.set_weight({1: 100})

    async def stop() -> None:
        await router.close()
        await up.stop()

    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield router.port, up
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@settings(
    max_examples=max(50, CASES // 2),
    deadline=None,
    database=None,
    derandomize=FIXED,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=response_fuzz.response())
def test_responses_reach_the_client_framed_and_in_step(
    response_router: tuple[int, response_fuzz.ResponseUpstream], case: tuple[bytes, bool]
) -> None:
    port, up = response_router
    up.response, up.close_after = case
    answer = http_fuzz.exchange(
        port,
        b"GET /first HTTP/1.1\r\nhost: x\r\n\r\n"
        b"GET /second HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    got, unread = response_fuzz.client_responses(answer)
    assert unread == b"", f"the client cannot frame {unread!r} from {case}"
    assert len(got) <= 2, (got, case)
    if len(got) == 2:
        assert got[1].body == b"second", (got, case)
    llhttp = response_fuzz.llhttp_reading(case[0], eof=case[1])
    if got and got[0].status != 502 and llhttp is not None and llhttp.complete:
        assert got[0].status == llhttp.status
        assert got[0].body == llhttp.body, (got, llhttp, case)
