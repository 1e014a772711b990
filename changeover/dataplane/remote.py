"""``RemoteRouter``: the ``TrafficRouter`` ``serve`` drives, backed by a router process.

``start()`` adopts the rollout's router process if one is running with the same
configuration (as the local platform re-adopts replicas), or starts one
(``dataplane.host``) and waits until it serves. Each setter is one request on the control
socket; it returns once the router process applied it (and stored it in its routing state).
A watch task notices a router process that died (it is restarted from its stored routing
state within a second) and copies the router's metrics into ``serve``'s registry once a
second, so ``/metrics`` and the analysis read them as before.

``detach()`` (``serve`` stopping) leaves the router process serving; ``close()`` (the
rollout deleted, ``changeover down``, ``serve --down-on-exit``) stops it: it stops
listening, finishes the requests in flight, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from changeover import aio, errors
from changeover.dataplane import codec, records
from changeover.endpoints import Endpoint
from changeover.platforms.local import process as process_mod
from changeover.spec import models
from changeover.traffic import base
from changeover.traffic.builtin import metrics as metrics_mod

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0
WATCH_SECONDS = 0.25
METRICS_EVERY = 4  # watch ticks: metrics once a second


async def request(socket: Path, message: dict[str, Any], *, within: float = CALL_TIMEOUT) -> Any:
    """One request on a router process's control socket; its ``value``.

    Raises ``TemporaryBackendError`` when the process cannot be reached, and the process's
    own error (``PermanentBackendError`` or ``TemporaryBackendError``) when it refused."""
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_unix_connection(str(socket), limit=codec.MAX_LINE)
            try:
                writer.write(codec.dumps(message))
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError, ValueError) as exc:
        raise errors.TemporaryBackendError(
            f"router process not reachable at {socket}: {exc}"
        ) from None
    try:
        answer = json.loads(line)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise errors.TemporaryBackendError(f"router process at {socket} did not answer")
    if not answer.get("ok"):
        if answer.get("permanent"):
            raise errors.PermanentBackendError(str(answer.get("error")))
        raise errors.TemporaryBackendError(str(answer.get("error")))
    return answer.get("value")


def adopt(paths: records.RouterPaths) -> tuple[process_mod.ProcessHandle, dict[str, Any]] | None:
    """The live router process recorded in ``paths`` (pid + create time), if any."""
    doc = records.read_json(paths.process)
    if not isinstance(doc, dict):
        return None
    pid, created = doc.get("pid"), doc.get("createTime")
    if not isinstance(pid, int) or not isinstance(created, (int, float)):
        return None
    handle = process_mod.ProcessHandle.adopt(pid, float(created))
    return None if handle is None else (handle, doc)


async def stop_process(
    paths: records.RouterPaths, handle: process_mod.ProcessHandle, *, grace: float = 15.0
) -> None:
    """Ask the router process to stop (requests in flight finish), then SIGTERM, SIGKILL."""
    with contextlib.suppress(errors.BackendError):
        await request(paths.socket, {"op": "stop"}, within=5)
    await handle.terminate(grace)
    doc = records.read_json(paths.process)
    if isinstance(doc, dict) and doc.get("pid") == handle.pid:
        paths.process.unlink(missing_ok=True)


class RemoteRouter:
    def __init__(
        self,
        rollout: str,
        *,
        router: str,
        state_dir: Path,
        kwargs: dict[str, Any],
        metrics: metrics_mod.Registry,
    ) -> None:
        self.rollout = rollout
        self.name = router
        self.capabilities: frozenset[base.Capability] = base.capabilities_of(router)
        self.paths = records.RouterPaths.of(state_dir, rollout)
        self.config: dict[str, Any] = {
            "rollout": rollout,
            "router": router,
            "kwargs": kwargs,
            "socket": str(self.paths.socket),
            "version": records.code_version(),
        }
        self.config["digest"] = records.digest(self.config)
        self.port = int(kwargs.get("port") or 0)
        self.metrics = metrics.rollout(rollout)
        self.handle: process_mod.ProcessHandle | None = None
        self.adopted = False
        self.restarts = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._closing = False
        # Totals of earlier router processes of this rollout: a restarted one counts from 0.
        self._base: dict[str, Any] | None = None
        self._last: dict[str, Any] | None = None

    @property
    def pid(self) -> int | None:
        return self.handle.pid if self.handle is not None else None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt the running router process, or start one; PermanentBackendError if it
        cannot serve (its port is taken, HAProxy is missing...)."""
        await asyncio.to_thread(self.paths.make)
        found = await asyncio.to_thread(adopt, self.paths)
        if found is not None:
            handle, doc = found
            if doc.get("digest") == self.config["digest"] and await self._answers():
                self.handle, self.adopted = handle, True
                self.port = int(doc.get("port") or self.port)
                log.info("adopted the router process of %s (pid %d)", self.rollout, handle.pid)
                # Its totals before the first plan: an analysis sampling the registry must
                # never see the counters jump from nothing to everything since it started.
                with contextlib.suppress(errors.BackendError):
                    await self.refresh_metrics()
                self._start_watch()
                return
            if self._can_take_over(handle):
                # A new version of the same router: it takes the listening sockets over.
                log.info("handing the router of %s (pid %d) over", self.rollout, handle.pid)
                with contextlib.suppress(errors.BackendError):  # its counts carry on
                    self._last = await request(self.paths.socket, {"op": "metrics"}, within=5)
                self._fold_metrics()
                await self._spawn(takeover=True)
                self._start_watch()
                return
            log.info("replacing the router process of %s (pid %d)", self.rollout, handle.pid)
            await stop_process(self.paths, handle)
        await self._spawn()
        self._start_watch()

    def _can_take_over(self, handle: process_mod.ProcessHandle) -> bool:
        """The running router process differs only by version (same router, same ports)."""
        old = records.read_json(self.paths.config)
        return (
            isinstance(old, dict)
            and old.get("router") == self.config["router"] == "builtin"
            and old.get("kwargs") == self.config["kwargs"]
            and old.get("version") != self.config["version"]
        )

    async def _answers(self) -> bool:
        try:
            await request(self.paths.socket, {"op": "info"}, within=5)
        except errors.BackendError:
            return False
        return True

    async def _spawn(self, *, takeover: bool = False) -> None:
        paths = self.paths
        await asyncio.to_thread(records.write_json, paths.config, self.config)
        if not takeover:
            paths.process.unlink(missing_ok=True)
        child = _popen(paths, takeover=takeover)
        self._child = child
        if not takeover:
            # Recorded at once, so a serve killed right now leaves no unrecorded router
            # process behind: the next one adopts it, or stops it if it never serves. (A
            # successor keeps its predecessor's record until it serves in its place.)
            await asyncio.to_thread(_record_starting, paths, child.pid, self.config)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while True:
            if child.poll() is not None:
                tail = process_mod.tail(paths.log, lines=1, max_chars=400)
                raise errors.PermanentBackendError(
                    f"the router process of {self.rollout!r} exited at start: {tail}"
                )
            doc = records.read_json(paths.process)
            if isinstance(doc, dict) and doc.get("pid") == child.pid and doc.get("ready"):
                handle = process_mod.ProcessHandle.adopt(child.pid, float(doc["createTime"]))
                if handle is not None:
                    self.handle, self.adopted = handle, False
                    self.port = int(doc.get("port") or self.port)
                    log.info("started the router process of %s (pid %d)", self.rollout, child.pid)
                    return
            if loop.time() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                raise errors.TemporaryBackendError(
                    f"the router process of {self.rollout!r} did not start within "
                    f"{START_TIMEOUT:g}s (see {paths.log})"
                )
            await asyncio.sleep(0.02)

    def _start_watch(self) -> None:
        self._watch = asyncio.get_running_loop().create_task(
            self._watching(), name=f"router watch {self.rollout}"
        )

    async def _watching(self) -> None:
        tick = 0
        while not self._closing:
            await asyncio.sleep(WATCH_SECONDS)
            tick += 1
            if self._child is not None and self._child.poll() is not None:
                self._child = None  # reaped
            if self.handle is None or not self.handle.alive():
                await self._restart()
                continue
            if tick % METRICS_EVERY == 0:
                with contextlib.suppress(errors.BackendError):
                    await self.refresh_metrics()

    async def _restart(self) -> None:
        log.warning(
            "the router process of %s (pid %s) is gone: restarting it from its stored routing",
            self.rollout,
            self.pid,
        )
        self._fold_metrics()
        self.handle = None
        try:
            await self._spawn()
            self.restarts += 1
        except errors.BackendError as exc:
            log.warning("restarting the router process of %s failed: %s", self.rollout, exc)
            await asyncio.sleep(1.0)

    async def detach(self) -> None:
        """Stop watching; the router process keeps serving (``serve`` is going away)."""
        self._closing = True
        await aio.stop_loop(self._watch)
        self._watch = None
        with contextlib.suppress(errors.BackendError):
            await self.refresh_metrics()

    async def close(self) -> None:
        """Stop the router process: it stops listening and in-flight requests finish."""
        await self.detach()
        if self.handle is not None:
            await stop_process(self.paths, self.handle)
            self.handle = None
        if self._child is not None:
            await asyncio.to_thread(self._child.wait)
            self._child = None

    async def forget(self) -> None:
        """``close()``, and remove the stored routing state (the rollout was deleted)."""
        await self.close()
        await asyncio.to_thread(shutil.rmtree, self.paths.root, True)

    # -- metrics ------------------------------------------------------------------------

    async def refresh_metrics(self) -> None:
        """Copy the router process's metrics into ``serve``'s registry now."""
        data = await request(self.paths.socket, {"op": "metrics"}, within=10)
        if not isinstance(data, dict):
            return
        self._last = data
        codec.apply_metrics(_sum(self._base, data), self.metrics)

    def _fold_metrics(self) -> None:
        if self._last is not None:
            self._base = _sum(self._base, self._last)
            self._last = None

    # -- TrafficRouter ------------------------------------------------------------------

    async def _call(self, method: str, *args: Any, within: float = CALL_TIMEOUT) -> Any:
        """The router's answer to ``method(*args)`` (None except for ``drain``)."""
        message = {"op": "call", "method": method, "args": codec.encode_args(method, *args)}
        return await request(self.paths.socket, message, within=within)

    async def set_weight(self, weights: Mapping[int, int]) -> None:
        if any(w < 0 for w in weights.values()) or sum(weights.values()) not in (0, 100):
            raise errors.PermanentBackendError(
                f"weights must be 0..100 and sum to 100, got {dict(weights)}"
            )
        await self._call("set_weight", dict(weights))

    async def verify_weight(self, weights: Mapping[int, int]) -> bool:
        message = {"op": "verify_weight", "args": codec.encode_args("set_weight", dict(weights))}
        return bool(await request(self.paths.socket, message))

    async def set_header_route(
        self, name: str, revision: int | None, match: Sequence[models.RouteMatch]
    ) -> None:
        await self._call("set_header_route", name, revision, list(match))

    async def set_sticky_split(
        self, revision: int | None, user_key: models.UserKey | None, weight: int
    ) -> None:
        await self._call("set_sticky_split", revision, user_key, weight)

    async def set_mirror_route(
        self,
        name: str,
        revision: int | None,
        percentage: int,
        match: Sequence[models.RouteMatch],
        compare: models.MirrorCompare | None = None,
    ) -> None:
        await self._call("set_mirror_route", name, revision, percentage, list(match), compare)

    async def set_preview(self, revision: int | None) -> None:
        await self._call("set_preview", revision)

    async def set_flag(self, name: str, spec: dict[str, Any] | None) -> None:
        await self._call("set_flag", name, spec)

    async def set_maintenance(self, enabled: bool, retry_after_seconds: int) -> None:
        await self._call("set_maintenance", enabled, retry_after_seconds)

    async def remove_managed_routes(self) -> None:
        await self._call("remove_managed_routes")

    async def set_backends(self, revision: int, endpoints: Sequence[Endpoint]) -> None:
        await self._call("set_backends", revision, list(endpoints))

    async def drain(self, endpoint: Endpoint, grace_seconds: float) -> int:
        left = await self._call(
            "drain", endpoint, grace_seconds, within=grace_seconds + CALL_TIMEOUT
        )
        return left if isinstance(left, int) and not isinstance(left, bool) else 0


def _record_starting(paths: records.RouterPaths, pid: int, config: dict[str, Any]) -> None:
    try:
        created = process_mod.start_stamp(pid)
    except psutil.Error:
        return  # already gone: _spawn reports it
    doc = records.read_json(paths.process)
    if isinstance(doc, dict) and doc.get("pid") == pid:
        return  # it was quicker (it takes half a second to import): its record stands
    records.write_json(
        paths.process,
        {"pid": pid, "createTime": created, "digest": config["digest"], "ready": False},
    )


def _popen(paths: records.RouterPaths, *, takeover: bool) -> subprocess.Popen[bytes]:
    """Start ``dataplane.host`` on ``paths`` in a session of its own (serve's Ctrl-C or
    death never reaches it); Popen returns once the child is exec'd."""
    env = {k: v for k, v in os.environ.items() if k != "CHANGEOVER_TOKEN"}
    argv = [sys.executable, "-m", "changeover.dataplane.host", str(paths.root)]
    if takeover:
        argv.append("--takeover")
    with open(paths.log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _sum(base: dict[str, Any] | None, data: dict[str, Any]) -> dict[str, Any]:
    """Encoded metrics ``base + data`` (counters add; the in-flight gauge is ``data``'s)."""
    if base is None:
        return data
    total = metrics_mod.RolloutMetrics("sum")
    codec.apply_metrics(base, total)
    now = metrics_mod.RolloutMetrics("now")
    codec.apply_metrics(data, now)
    for rev, m in now.revisions.items():
        had = total.revisions.get(rev)
        if had is None:
            total.revisions[rev] = m
        else:
            had.in_flight = 0
            had.add(m)
    for rev, m in total.revisions.items():
        if rev not in now.revisions:
            m.in_flight = 0
    total.bad_requests += now.bad_requests
    total.maintenance += now.maintenance
    total.unrouted += now.unrouted
    return codec.encode_metrics(total)
