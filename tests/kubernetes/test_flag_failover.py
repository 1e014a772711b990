"""An operator failing over in the middle of a Flag's progressive rollout: the walk goes on
from the Flag's status to the same end, with every step taken once, one analysis run per
step and each event recorded once.

Each analysis step's measurement is held by a web server on this machine's loopback until
the test lets it answer, so the failover happens while a run is in flight, whatever the
machine's load. The first leader stops cleanly while it writes a step's walk (the look in
progress finishes, then the Lease is released: the standby takes over at once); the second
is stopped as a crash would stop it while a run is in flight (the Lease is not released:
the third operator waits for it to expire, 15 s, and measures the run again).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from conftest import helper_operator
from k8s_flags import flag, flag_status, walked, web_template
from k8s_helpers import Kube, eventually, json_server, rollout

from changeover.kube import client as kube
from changeover.operator.flag_commands import KubeFlags
from changeover.operator.runtime import Operator
from changeover.platforms.kubernetes.events import list_events

JSON = dict[str, Any]
T = TypeVar("T")
LEASE = "changeover-operator"


class HeldAnswers:
    """A web-provider target whose answer to ``/NAME`` waits until ``release("NAME")``;
    ``asked[NAME]`` counts the measurements that reached it."""

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}
        self.gates: dict[str, threading.Event] = {}
        self.url = ""

    def _gate(self, name: str) -> threading.Event:
        return self.gates.setdefault(name, threading.Event())

    def answer(self, path: str) -> JSON:
        """Called on the server's thread for each request."""
        name = path.strip("/")
        self.asked[name] = self.asked.get(name, 0) + 1
        self._gate(name).wait(120)
        return {"ok": True}

    def release(self, name: str) -> None:
        self._gate(name).set()

    async def reached(self, name: str, times: int) -> None:
        await eventually(
            _value(lambda: self.asked.get(name, 0)),
            lambda n: n >= times,
            what=f"{times} measurement(s) of /{name}",
        )


def _value(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """``read`` as the coroutine function ``eventually`` polls."""

    async def probe() -> T:
        return read()

    return probe


@pytest.fixture
def held() -> Iterator[HeldAnswers]:
    h = HeldAnswers()
    with json_server(h.answer) as h.url:
        try:
            yield h
        finally:
            for gate in h.gates.values():
                gate.set()


class Standby:
    """An operator started beside the leader: it waits for the Lease, then leads."""

    def __init__(self, k: Kube, identity: str) -> None:
        self.op: Operator | None = None
        self.started = asyncio.Event()
        self.task = asyncio.create_task(self._run(k, identity))

    async def _run(self, k: Kube, identity: str) -> None:
        async with helper_operator(k, identity=identity, wait_ready=False) as op:
            self.op = op
            self.started.set()
            await asyncio.Event().wait()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def crash(self) -> None:
        """Stop without releasing the Lease, as a killed process leaves it."""
        await self.started.wait()
        assert self.op is not None and self.op.elector is not None

        async def kept() -> None:
            return None

        self.op.elector.release = kept  # type: ignore[method-assign]
        await self.stop()


@contextlib.asynccontextmanager
async def standby(k: Kube, identity: str) -> AsyncIterator[Standby]:
    s = Standby(k, identity)
    try:
        yield s
    finally:
        await s.stop()


async def holder(k: Kube) -> str:
    lease = await k.client.get(kube.LEASES, LEASE, namespace=k.namespace)
    return str(lease["spec"].get("holderIdentity") or "")


async def _events(k: Kube, name: str) -> list[tuple[str, str]]:
    items = await list_events(k.client, namespace=k.namespace, name=name, kind="Flag")
    return [(str(e["reason"]), str(e["message"])) for e in items]


async def _in_flight(k: Kube, step: int) -> JSON:
    return await eventually(
        lambda: flag_status(k, "checkout"),
        lambda s: walked(s)[1] == step and bool((s.get("rollout") or {}).get("run")),
        within=60,
        what=f"the analysis of step {step + 1} in flight",
    )


def hold_status_writes(op: Operator, step: int) -> tuple[asyncio.Event, asyncio.Event]:
    """Make ``op``'s Flag status write that walks to step index ``step`` wait: the first
    event is set when it is waiting, it goes on once the second is set."""
    waiting, go = asyncio.Event(), asyncio.Event()
    real = op.client.replace_status

    async def held(res: kube.Resource, obj: JSON, status: JSON) -> JSON:
        if res is kube.FLAGS and (status.get("rollout") or {}).get("stepIndex") == step:
            waiting.set()
            await go.wait()
        return await real(res, obj, status)

    op.client.replace_status = held  # type: ignore[method-assign]
    return waiting, go


async def test_flag_walk_carries_on_across_operator_failovers(
    kube_: Kube, held: HeldAnswers
) -> None:
    k = kube_
    await web_template(k, "first", f"{held.url}/first", count=1, timeout_seconds=120)
    await web_template(k, "second", f"{held.url}/second", count=1, timeout_seconds=120)
    steps: list[JSON] = [
        {"setWeight": 20},
        {"analysis": {"templates": [{"templateName": "first"}]}},
        {"setWeight": 50},
        {"pause": {}},
        {"analysis": {"templates": [{"templateName": "second"}]}},
        {"pause": {}},
    ]
    flags = KubeFlags(k.client, namespace=k.namespace)
    first = helper_operator(k, identity="op-a")
    op_a = await first.__aenter__()
    first_running = True
    try:
        async with standby(k, "op-b") as op_b:
            await k.apply_rollout(rollout("web", replicas=1))
            await k.create(kube.FLAGS, flag("checkout", steps, target="web"))
            run_1 = (await _in_flight(k, 1))["rollout"]["run"]
            await held.reached("first", 1)
            assert await holder(k) == "op-a"

            # A clean stop (a rolling update) while op-a writes the walk past the passed
            # analysis: the look in progress finishes before the Lease is released, so
            # op-b does not measure the step again.
            waiting, go = hold_status_writes(op_a, 3)
            held.release("first")
            await asyncio.wait_for(waiting.wait(), 60)
            first_running = False
            stopping = asyncio.create_task(first.__aexit__(None, None, None))
            await eventually(_value(lambda: not op_a.ready.is_set()), what="op-a stopping")
            go.set()
            await stopping
            await eventually(lambda: holder(k), lambda h: h == "op-b", what="op-b leads")
            await eventually(
                lambda: flag_status(k, "checkout"),
                lambda s: walked(s) == ("Paused", 3, 50),
                within=60,
                what="paused at 50%",
            )
            await flags.promote("checkout")
            run_2 = (await _in_flight(k, 4))["rollout"]["run"]
            await held.reached("second", 1)

            # A crash while a run is in flight: the Lease is not released; op-c leads once
            # it expires and measures the run again, under the same run id.
            async with standby(k, "op-c"):
                await op_b.crash()
                assert await holder(k) == "op-b"
                await eventually(
                    lambda: holder(k), lambda h: h == "op-c", within=90, what="op-c leads"
                )
                await held.reached("second", 2)
                assert (await flag_status(k, "checkout"))["rollout"]["run"] == run_2
                held.release("second")
                await eventually(
                    lambda: flag_status(k, "checkout"),
                    lambda s: walked(s) == ("Paused", 5, 50),
                    within=60,
                    what="paused at the last step",
                )
                await flags.promote("checkout")
                done = await eventually(
                    lambda: flag_status(k, "checkout"),
                    lambda s: s.get("phase") == "Healthy",
                    within=60,
                    what="the rollout complete",
                )
                events = await eventually(
                    lambda: _events(k, "checkout"),
                    lambda e: "Completed" in [r for r, _ in e],
                    what="the Completed event",
                )
    finally:
        if first_running:
            await first.__aexit__(None, None, None)
    assert done["rollout"]["weight"] == 100 and done["rollout"]["lastRun"] == run_2
    assert events == [
        ("SetWeight", "new at 20%"),
        ("AnalysisStarted", f"step 2: analysis run {run_1}"),
        ("AnalysisPassed", "step 2: analysis passed"),
        ("SetWeight", "new at 50%"),
        ("Promoted", "promoted by the user"),
        ("AnalysisStarted", f"step 5: analysis run {run_2}"),
        ("AnalysisPassed", "step 5: analysis passed"),
        ("Promoted", "promoted by the user"),
        ("Completed", "rollout of new complete"),
    ]
    # The first run measured once (its verdict written before op-a let go); the second by
    # the leader that crashed and again by its successor.
    assert held.asked == {"first": 1, "second": 2}
