"""Server-sent events for the dashboard: the page is told when something changed instead
of asking every second.

``GET /api/v1/stream`` sends one ``event: <kind>`` per list (``rollouts`` today) whenever
that list's documents change. ``GET /api/v1/rollouts/{name}/stream`` sends ``status``,
``events``, ``analysis``, ``history`` and ``spec`` when they change, and ``traffic`` (the
router's cumulative per-revision counters and histograms, with the server's time, from
which the page charts rates and percentiles) every ``TRAFFIC_SECONDS``; ``problem`` when
reading fails (once per failure, not every tick); ``gone`` ends it when the
rollout is deleted. The server compares snapshots taken every tick
(``TICK_SECONDS`` unless the server asks for another) in memory: nothing crosses the
network unless it changed. Each document is read at most once per half tick for all open
pages, also when the service reads it from elsewhere (Kubernetes: the API server).

Extension point: another resource (flags) adds its list with ``Streams.add_list("flags",
service.list_flags)``; the page draws a section for every kind it knows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from changeover import errors
from changeover.rollout_service import RolloutService, settle

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5
TRAFFIC_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
STREAMED_RUNS = 20  # the newest analysis runs a page shows (GET .../analysis has them all)


async def _compact(read: Callable[[], Any]) -> str:
    return json.dumps(await settle(read()), separators=(",", ":"))


def event(kind: str, doc: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(doc, separators=(',', ':'))}\n\n".encode()


class Streams:
    def __init__(
        self, service: RolloutService, *, tick: float = TICK_SECONDS, rollouts: bool = True
    ) -> None:
        """``rollouts=False``: ``lists()`` sends only what is added (a cluster's namespaces)."""
        self.service = service
        self.tick = tick
        # kind → the document its event carries
        self._lists: dict[str, Callable[[], Any]] = {}
        if rollouts:
            self.add_list("rollouts", service.list_rollouts)
        # Every open page reads the same documents each tick: one read serves them all,
        # also while it is under way (a read from the Kubernetes API takes a while).
        self._memo: dict[str, tuple[float, asyncio.Future[str]]] = {}

    async def _text(self, key: str, read: Callable[[], Any]) -> str:
        """``read()`` as compact JSON, read at most once per half tick for all streams."""
        now = time.monotonic()
        found = self._memo.get(key)
        if found is None or now - found[0] >= self.tick / 2:
            if len(self._memo) > 1024:  # rollouts come and go: forget what nobody asked lately
                self._memo = {k: v for k, v in self._memo.items() if now - v[0] < 10}
            found = (now, asyncio.ensure_future(_compact(read)))
            self._memo[key] = found
        # Shielded: a page that goes away must not cancel the read the others wait for.
        return await asyncio.shield(found[1])

    def add_list(self, kind: str, read: Callable[[], Any]) -> None:
        """Stream ``{kind: read()}`` as ``event: kind`` on ``/api/v1/stream`` (e.g. flags)."""
        self._lists[kind] = _listing(kind, read)

    def add_document(self, kind: str, read: Callable[[], Any]) -> None:
        """Stream ``read()`` itself as ``event: kind`` (a cluster's namespaces)."""
        self._lists[kind] = read

    async def lists(self) -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        sent: dict[str, str] = {}
        quiet = time.monotonic()
        while True:
            for kind, read in list(self._lists.items()):
                try:
                    text = await self._text(f"list/{kind}", read)
                except errors.ChangeoverError as exc:
                    text = json.dumps({"error": str(exc)})
                if sent.get(kind) != text:
                    sent[kind] = text
                    quiet = time.monotonic()
                    yield f"event: {kind}\ndata: {text}\n\n".encode()
            if time.monotonic() - quiet > KEEPALIVE_SECONDS:
                quiet = time.monotonic()
                yield b": keep-alive\n\n"
            await asyncio.sleep(self.tick)

    async def rollout(self, name: str) -> AsyncIterator[bytes]:
        """The stream of one rollout (NotFound before the first byte if there is none)."""
        await settle(self.service.status(name))
        return self._rollout(name)

    async def _rollout(self, name: str) -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        service = self.service
        reads: dict[str, Callable[[], Any]] = {
            "status": lambda: service.status(name),
            "spec": lambda: service.spec(name),
            "history": lambda: _wrapped("revisions", service.history(name)),
            "events": lambda: _wrapped("events", service.events(name, limit=200)),
            "analysis": lambda: _wrapped("runs", service.analysis(name), last=STREAMED_RUNS),
        }
        sent: dict[str, str] = {}
        traffic_at = 0.0
        quiet = time.monotonic()
        problem = ""  # said once while it lasts (an API server down for a minute: one toast)
        while True:
            try:
                for kind, read in reads.items():
                    text = await self._text(f"rollout/{name}/{kind}", read)
                    if sent.get(kind) != text:
                        sent[kind] = text
                        quiet = time.monotonic()
                        yield f"event: {kind}\ndata: {text}\n\n".encode()
                if time.monotonic() - traffic_at >= TRAFFIC_SECONDS:
                    traffic_at = quiet = time.monotonic()
                    yield event("traffic", {"time": time.time(), **service.traffic(name)})
            except errors.NotFound:
                yield event("gone", {"name": name})
                return
            except errors.ChangeoverError as exc:
                if str(exc) != problem:
                    problem = str(exc)
                    quiet = time.monotonic()
                    yield event("problem", {"error": problem})
            else:
                problem = ""
            if time.monotonic() - quiet > KEEPALIVE_SECONDS:
                quiet = time.monotonic()
                yield b": keep-alive\n\n"
            await asyncio.sleep(self.tick)


async def _wrapped(key: str, answer: Any, *, last: int | None = None) -> dict[str, Any]:
    """``{key: items}`` of a list read (only the ``last`` newest when given)."""
    items: list[Any] = await settle(answer)
    return {key: items[-last:] if last is not None else items}


def _listing(kind: str, read: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: _wrapped(kind, read())
