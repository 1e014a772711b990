"""The haproxy router under load: changes without reload, replicas coming and going, drains,
metrics, restarts. Real HAProxy, real upstreams, a keep-alive client on loopback."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from haproxy_helpers import HAProxyFactory, UpstreamFactory, ep, failures, get, load, revisions

from changeover import aio
from changeover.spec import models
from changeover.traffic.builtin import metrics_text
from changeover.traffic.haproxy import HAProxyRouter
from changeover.traffic.haproxy import router as router_mod

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_weight_changes_under_load_need_no_reload_and_lose_nothing(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    router = await make_haproxy()
    await router.set_backends(1, [ep(await upstream("v1"))])
    await router.set_backends(2, [ep(await upstream("v2"))])
    await router.set_weight({1: 100})
    master, worker = router.process.pid if router.process else None, await router.worker_pid()
    changes = 0

    async def churn() -> None:
        nonlocal changes
        for i in range(60):
            w = (i * 7) % 101
            await router.set_weight({1: 100 - w, 2: w})
            changes += 1
            await asyncio.sleep(0.01)
        await router.set_weight({2: 100})

    replies, _ = await asyncio.gather(
        load(router.port, 4000, concurrency=16, path="/slow?delay=0.001"), churn()
    )
    assert failures(replies) == []
    assert changes == 60
    assert router.process is not None and router.process.pid == master
    assert await router.worker_pid() == worker  # the same HAProxy worker: no reload
    assert router.reloads == 0
    assert (await get(router.port)).headers["x-changeover-revision"] == "2"


async def test_replicas_added_and_removed_under_load_lose_nothing(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    a, b, c = await upstream("v1"), await upstream("v2"), await upstream("v2")
    router = await make_haproxy()
    await router.set_backends(1, [ep(a)])
    await router.set_weight({1: 100})

    async def rollout() -> None:
        await router.set_backends(2, [ep(b)])
        for w in (10, 25, 50, 75, 100):
            await asyncio.sleep(0.05)
            await router.set_weight({1: 100 - w, 2: w})
        # Replace revision 2's replica, then retire revision 1 the way the controller does.
        await router.set_backends(2, [ep(b), ep(c)])
        await asyncio.sleep(0.05)
        await router.drain(ep(b), 2)
        await router.set_backends(2, [ep(c)])
        await b.stop()
        await router.set_backends(1, [])
        await router.drain(ep(a), 2)
        await a.stop()

    replies, _ = await asyncio.gather(
        load(router.port, 3000, concurrency=16, path="/slow?delay=0.001"), rollout()
    )
    assert failures(replies) == []
    bodies = [r.body for r in replies if not isinstance(r, BaseException)]
    assert bodies[0] == b"v1" and bodies[-1] == b"v2"
    assert router.backends() == {2: [ep(c)]}
    assert router.reloads == 0


async def test_a_replica_that_dies_is_retried_on_another(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    a, b = await upstream("v1"), await upstream("v1")
    router = await make_haproxy()
    await router.set_backends(1, [ep(a), ep(b)])
    await router.set_weight({1: 100})
    await b.stop()  # gone without a drain: connects are refused
    replies = await load(router.port, 200, concurrency=4)
    assert failures(replies) == []


async def test_drain_waits_for_in_flight_requests(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    slow = await upstream("slow")
    router = await make_haproxy()
    await router.set_backends(1, [ep(slow)])
    await router.set_weight({1: 100})
    in_flight = asyncio.ensure_future(get(router.port, "/slow?delay=0.6"))
    await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await router.drain(ep(slow), 5)
    waited = loop.time() - started
    assert in_flight.done() and (await in_flight).status == 200
    assert 0.2 < waited < 3, waited
    # Drained: no new request goes there (and none is left to serve this revision).
    assert (await get(router.port)).status == 503


async def test_metrics_per_revision_come_from_haproxy(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    router = await make_haproxy()
    await router.set_backends(1, [ep(await upstream("v1"))])
    await router.set_backends(2, [ep(await upstream("v2"))])
    await router.set_weight({1: 90, 2: 10})
    replies = await load(router.port, 1000, concurrency=8)
    replies += await load(router.port, 10, concurrency=1, path="/status/503")
    seen = revisions(replies)

    def counted() -> bool:
        snap = router.metrics_registry.snapshot()["web"]["revisions"]
        ok = {rev: snap.get(rev, {}).get("requests", {}).get("2xx", 0) for rev in ("1", "2")}
        bad = sum(snap.get(rev, {}).get("requests", {}).get("5xx", 0) for rev in ("1", "2"))
        latency = sum(snap.get(rev, {}).get("latency", {}).get("count", 0) for rev in ("1", "2"))
        # (the latency count is a sampled estimate: it can pass 1,010 before the last
        # requests are in, so the 5xx are waited for too)
        return ok == {"1": 900, "2": 100} and bad == 10 and latency >= 1010

    for _ in range(100):  # the stats poll and the log socket catch up within a few polls
        if counted():
            break
        await asyncio.sleep(0.05)
    assert seen == {"1": 909, "2": 101}
    snap = router.metrics_registry.snapshot()["web"]["revisions"]
    assert snap["1"]["requests"]["2xx"] == 900 and snap["2"]["requests"]["2xx"] == 100
    assert snap["1"]["requests"]["5xx"] + snap["2"]["requests"]["5xx"] == 10
    # Histograms come from HAProxy's per-request log datagrams, which the kernel may drop
    # when the reader falls behind (never blocking HAProxy); counts come from its stats.
    # Past 200 requests a second one request in N is timed and counts N times: an
    # estimate, which can overshoot the 1,010 requests by a few sampling errors.
    timed = snap["1"]["latency"]["count"] + snap["2"]["latency"]["count"]
    assert 500 <= timed <= 1250, timed
    text = metrics_text.render(router.metrics_registry)
    assert 'changeover_requests_total{rollout="web",revision="2",code="2xx"} 100' in text


async def test_the_metrics_poll_asks_haproxy_for_no_server_rows(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    # HAProxy dumps stats on the thread that serves requests: the once-a-second poll asks
    # only for the frontend and backend rows it reads (16 server lines per backend here).
    router = await make_haproxy()
    await router.set_backends(1, [ep(await upstream("v1"))])
    assert router.process is not None
    every = await router.process.api.show_stat()
    polled = await router.process.api.show_stat(servers=False)
    kinds = {r["svname"] for r in polled}
    assert kinds <= {"FRONTEND", "BACKEND"} and {"FRONTEND", "BACKEND"} <= kinds
    assert len(polled) < len(every) and any(r["svname"] == "s0" for r in every)


async def test_a_reload_under_load_loses_nothing(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    """The rare reload (a route on a header name HAProxy has no rule for yet) hands the
    listening socket to the new worker; the old one finishes what it has."""
    router = await make_haproxy()
    await router.set_backends(1, [ep(await upstream("v1"))])
    await router.set_backends(2, [ep(await upstream("v2"))])
    await router.set_weight({1: 100})
    worker = await router.worker_pid()

    async def routes() -> None:
        for i in range(3):
            await asyncio.sleep(0.15)
            match = {"headerName": f"x-route-{i}", "headerValue": {"exact": "b"}}
            await router.set_header_route(f"r{i}", 2, [models.RouteMatch.model_validate(match)])

    replies, _ = await asyncio.gather(
        load(router.port, 3000, concurrency=16, path="/slow?delay=0.001"), routes()
    )
    assert router.reloads == 3 and await router.worker_pid() != worker
    assert failures(replies) == []


async def test_a_stale_haproxy_from_a_crashed_run_is_replaced(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory, tmp_path: object
) -> None:
    first = await make_haproxy()
    assert first.process is not None and first.process.pid is not None
    stale = first.process.pid
    # As if changeover had been SIGKILLed: nobody stops this HAProxy...
    first.process.proc = None
    # ...and a new run for the same service finds it through the pidfile and stops it.
    second = HAProxyRouter("web", port=first.port, state_dir=first.paths.root)
    await second.start()
    try:
        await second.set_backends(1, [ep(await upstream("v1"))])
        await second.set_weight({1: 100})
        assert (await get(second.port)).body == b"v1"
        for _ in range(100):
            if not alive(stale):
                break
            await asyncio.sleep(0.05)
        assert not alive(stale)
    finally:
        await second.close()
    assert second.process is None


async def test_close_is_bounded_when_the_metrics_poll_will_not_stop(
    make_haproxy: HAProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a poll that ignores its cancellation (as one did when Python 3.11's wait_for
    swallowed it), when the router closes, then it gives up on the poll after CLOSE_WAIT
    and stops HAProxy anyway."""
    monkeypatch.setattr(router_mod, "CLOSE_WAIT", 0.3)
    router = await make_haproxy()
    assert router.process is not None and router.process.pid is not None
    master = router.process.pid

    release = asyncio.Event()

    async def deaf() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if release.is_set():
                    raise

    assert router._poller is not None
    await aio.cancel_and_wait(router._poller)
    router._poller = rogue = asyncio.create_task(deaf())
    await asyncio.sleep(0.05)  # in its sleep
    try:
        async with asyncio.timeout(5):
            await router.close()
        assert router.process is None and not alive(master)
    finally:
        release.set()
        await aio.cancel_and_wait(rogue)


async def test_a_cancelled_close_stays_cancelled_and_still_stops_haproxy(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    router = await make_haproxy()
    await router.set_backends(1, [ep(await upstream("v1"))])
    await router.set_weight({1: 100})
    assert router.process is not None and router.process.pid is not None
    master = router.process.pid
    # A client holds a request open, so the soft stop has something to wait for.
    _, writer = await asyncio.open_connection("127.0.0.1", router.port)
    writer.write(b"GET /slow?delay=30 HTTP/1.1\r\nhost: test\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.2)
    closing = asyncio.create_task(router.close())
    await asyncio.sleep(0.5)  # in the soft stop's grace
    assert not closing.done()
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    writer.close()
    for _ in range(100):
        if not alive(master):
            break
        await asyncio.sleep(0.05)
    assert not alive(master)


async def test_requests_answered_by_the_fallback_do_not_hold_a_stop(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    """Given maintenance and no-weights answers (w's backup server, a connection from
    HAProxy to its own ``fallback`` frontend), the old worker of a reload and a close()
    finish within a second, not after the soft stop's whole grace."""
    router = await make_haproxy()
    await router.set_backends(1, [ep(await upstream("v1"))])
    assert (await get(router.port)).status == 503  # no weights yet
    await router.set_maintenance(True, 30)
    assert (await get(router.port)).status == 503
    old = await router.worker_pid()
    match = {"headerName": "x-new", "headerValue": {"exact": "b"}}
    await router.set_header_route("r", 1, [models.RouteMatch.model_validate(match)])
    assert router.reloads == 1
    for _ in range(40):
        if not alive(old):
            break
        await asyncio.sleep(0.05)
    assert not alive(old)
    assert (await get(router.port)).status == 503
    loop = asyncio.get_running_loop()
    started = loop.time()
    await router.close()
    assert loop.time() - started < 2.0


async def test_a_busy_service_has_a_sample_of_its_requests_timed(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    router = await make_haproxy(timed_per_second=100, sample_memory=1.0)
    await router.set_backends(1, [ep(await upstream("v1"))])
    await router.set_weight({1: 100})
    replies = await load(router.port, 4000, concurrency=16)
    assert failures(replies) == []
    assert router.desired.log_every > 1  # hundreds of requests a second: one in N is timed
    await router.refresh_metrics()
    rev = router.metrics.revision(1)
    # Each timed request counts N times: the histogram's count estimates the request count.
    assert rev.codes[2] == 4000
    assert 1000 <= rev.latency.count <= 12000, rev.latency.count
    # Quiet again: every request is timed.
    for _ in range(60):
        await asyncio.sleep(0.1)
        await router.refresh_metrics()
        if router.desired.log_every == 1:
            break
    assert router.desired.log_every == 1


async def test_a_pause_between_bursts_keeps_the_sample(
    make_haproxy: HAProxyFactory, upstream: UpstreamFactory
) -> None:
    # Dropping to "time every request" during a pause would have the next burst log (and
    # changeover parse) every request until the next poll.
    router = await make_haproxy(timed_per_second=100, sample_memory=30.0)
    await router.set_backends(1, [ep(await upstream("v1"))])
    await router.set_weight({1: 100})
    assert failures(await load(router.port, 4000, concurrency=16)) == []
    busy = router.desired.log_every
    assert busy > 1
    await asyncio.sleep(2.0)  # ten polls without a request
    assert router.desired.log_every >= busy  # (a poll may still see the burst's tail rise)


async def test_what_is_set_before_start_is_in_the_first_configuration(
    upstream: UpstreamFactory,
) -> None:
    router = HAProxyRouter("web", port=0, stats_interval=0.1)
    await router.set_backends(1, [ep(await upstream("v1"))])
    await router.set_backends(2, [ep(await upstream("v2"))])
    await router.set_weight({1: 100})
    match = {"headerName": "x-variant", "headerValue": {"exact": "b"}}
    await router.set_header_route("beta", 2, [models.RouteMatch.model_validate(match)])
    await router.start()
    try:
        worker = await router.worker_pid()
        assert (await get(router.port, headers={"x-variant": "b"})).body == b"v2"
        await router.set_weight({1: 90, 2: 10})  # runtime API from here on
        replies = await load(router.port, 500, concurrency=8)
        assert failures(replies) == []
        await asyncio.sleep(0.3)  # a few stats polls (which also adapt the log sampling)
        assert router.reloads == 0 and await router.worker_pid() == worker
    finally:
        await router.close()


async def test_haproxy_stops_when_changeover_is_killed(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a SIGKILLed changeover does not leave HAProxy holding the port."""
    script = (
        "import asyncio\n"
        "from changeover.traffic.haproxy import HAProxyRouter\n"
        "async def main():\n"
        f"    r = HAProxyRouter('web', port=0, state_dir={str(tmp_path)!r})\n"
        "    await r.start()\n"
        "    print(r.process.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    master = int(line)
    assert alive(master)
    proc.kill()
    await proc.wait()
    for _ in range(100):
        if not alive(master):
            break
        await asyncio.sleep(0.05)
    assert not alive(master)
