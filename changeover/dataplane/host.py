"""A router process: one rollout's data plane, in a process of its own that outlives ``serve``.

``python -m changeover.dataplane.host DIR`` (``DIR`` = ``records.RouterPaths.root``) reads
``config.json``, builds the router it names (``builtin`` or ``haproxy``, through the registry
in ``changeover.traffic``), replays ``routing.json`` onto it *before* it listens (so a
restarted router serves the last routing table from its first request), starts it, and
answers ``serve`` on its control socket (``codec`` says what is said there). Every routing
change is applied first, then written to ``routing.json`` (atomically).

It runs in a session of its own (``serve``'s Ctrl-C never reaches it) until told to stop
(``{"op": "stop"}``, or SIGTERM): then it stops listening, lets requests in flight finish,
and exits. A managed HAProxy is its child and dies with it (``PR_SET_PDEATHSIG``).

A new version replaces a running builtin router without refusing a connection
(``--takeover``): it asks its predecessor for its listening sockets (``{"op": "handover"}``
answered with the descriptors, ``SCM_RIGHTS``), serves on them, then says ``retire`` on the
same connection; the predecessor stops accepting, finishes its requests and exits. The
kernel's accept queue belongs to the socket, which both held: nothing queued is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from changeover import aio, errors, traffic
from changeover.dataplane import codec, records
from changeover.loop_watchdog import LoopWatchdog
from changeover.traffic import builtin
from changeover.traffic.base import TrafficRouter

log = logging.getLogger("changeover.dataplane.host")


class Host:
    def __init__(self, paths: records.RouterPaths, config: dict[str, Any]) -> None:
        self.paths = paths
        self.config = config
        self.rollout = str(config["rollout"])
        self.registry = builtin.Registry()
        factory = traffic.base.factory_of(str(config["router"]))
        self.router: TrafficRouter = factory(
            self.rollout, metrics=self.registry, **dict(config["kwargs"])
        )
        self.routing = codec.Routing()
        self.stopping = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._saving = asyncio.Lock()

    async def run(self, *, takeover: bool = False) -> None:
        predecessor = await asyncio.to_thread(self._take_over) if takeover else None
        await self._replay()
        start = getattr(self.router, "start", None)
        if start is not None:
            await start()
        await self._listen()
        self._write_process()
        log.info("router process for %s serving (pid %d)", self.rollout, os.getpid())
        if predecessor is not None:
            with contextlib.suppress(OSError):
                predecessor.sendall(codec.dumps({"op": "retire"}))
            predecessor.close()
        await self.stopping.wait()
        await self._shutdown()

    def _take_over(self) -> socket.socket | None:
        """Fetch the predecessor's listening sockets for the router (blocking; before this
        process listens). The connection stays open to tell it to retire later."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(10)
            conn.connect(str(self.paths.socket))
            conn.sendall(codec.dumps({"op": "handover"}))
            message, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            answer = json.loads(message)
            kinds = answer["value"]["kinds"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("no socket handover from the predecessor: %s", exc)
            conn.close()
            return None
        inherited = {str(k): socket.socket(fileno=fd) for k, fd in zip(kinds, fds, strict=False)}
        if hasattr(self.router, "inherited"):
            self.router.inherited = inherited
        log.info("took over listening sockets %s from the predecessor", sorted(inherited))
        return conn

    async def _replay(self) -> None:
        data = records.read_json(self.paths.routing)
        try:
            saved = codec.Routing.from_json(data or [])
        except (ValueError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", self.paths.routing, exc)
            saved = codec.Routing()
        for method, args in list(saved.calls.values()):
            try:
                await getattr(self.router, method)(*codec.decode_args(method, args))
            except Exception as exc:
                log.warning("could not restore %s%s: %s", method, args, exc)
                continue
            self.routing.record(method, args)

    async def _listen(self) -> None:
        sock = self.paths.socket
        sock.unlink(missing_ok=True)
        old = os.umask(0o177)  # the socket is created 0600: only this user may steer us
        try:
            self._server = await asyncio.start_unix_server(
                self._handle, path=str(sock), limit=codec.MAX_LINE
            )
        finally:
            os.umask(old)

    def _write_process(self) -> None:
        records.write_json(
            self.paths.process,
            {
                "pid": os.getpid(),
                "createTime": _create_time(),
                "socket": str(self.paths.socket),
                "digest": self.config.get("digest"),
                "port": getattr(self.router, "port", None),
                "previewPort": getattr(self.router, "preview_port", None),
                "ready": True,
            },
        )

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(Exception):
            await self.router.close()
        mine = records.read_json(self.paths.process)
        if isinstance(mine, dict) and mine.get("pid") == os.getpid():
            self.paths.process.unlink(missing_ok=True)
            self.paths.socket.unlink(missing_ok=True)
        log.info("router process for %s stopped", self.rollout)

    # -- the control channel ------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("expected an object")
                if request.get("op") == "handover":
                    await self._hand_over(reader, writer)
                    return
                answer: dict[str, Any] = {"ok": True, "value": await self._do(request)}
            except errors.PermanentBackendError as exc:
                answer = {"ok": False, "error": str(exc), "permanent": True}
            except (errors.ChangeoverError, OSError) as exc:
                answer = {"ok": False, "error": str(exc), "permanent": False}
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                answer = {"ok": False, "error": f"bad request: {exc}", "permanent": True}
            except Exception as exc:
                log.exception("control request failed")
                answer = {"ok": False, "error": f"internal error: {exc}", "permanent": False}
            writer.write(codec.dumps(answer))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _hand_over(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Send our listening sockets to a successor; retire when it says it serves."""
        fds: dict[str, int] = getattr(self.router, "listening_fds", dict)()
        raw = writer.get_extra_info("socket")
        # A second descriptor of the same connection, as a real socket for sendmsg; closing
        # it leaves the connection open.
        dup = socket.socket(fileno=os.dup(raw.fileno()))
        try:
            answer = codec.dumps({"ok": True, "value": {"kinds": list(fds)}})
            socket.send_fds(dup, [answer], list(fds.values()))
        finally:
            dup.close()
        line = await reader.readline()
        try:
            retire = json.loads(line).get("op") == "retire"
        except (ValueError, AttributeError):
            retire = False
        if retire:
            log.info("a successor serves on our sockets: retiring")
            self.stopping.set()
        else:
            log.warning("the successor went away before serving: still serving")

    async def _do(self, request: dict[str, Any]) -> Any:
        op = request["op"]
        if op == "call":
            method = str(request["method"])
            args = request["args"]
            value = await getattr(self.router, method)(*codec.decode_args(method, args))
            self.routing.record(method, args)
            async with self._saving:  # one write at a time, so the newest state is the last
                await asyncio.to_thread(
                    records.write_json, self.paths.routing, self.routing.to_json()
                )
            return value if method == "drain" else None  # drain: requests left in flight
        if op == "verify_weight":
            (weights,) = codec.decode_args("set_weight", request["args"])
            return await self.router.verify_weight(weights)
        if op == "metrics":
            collect = getattr(self.router, "collect_metrics", None)
            if collect is not None:
                await collect()
            return codec.encode_metrics(self.registry.rollout(self.rollout))
        if op == "info":
            return {"pid": os.getpid(), "digest": self.config.get("digest")}
        if op == "stop":
            self.stopping.set()
            return None
        raise ValueError(f"unknown op {op!r}")


def _create_time() -> float:
    from changeover.platforms.local import process  # psutil: only once we serve

    return process.start_stamp(os.getpid())


async def _main(root: Path, *, takeover: bool) -> int:
    config = records.read_json(root / "config.json")
    if not isinstance(config, dict):
        log.error("no readable config.json in %s", root)
        return 2
    paths = records.RouterPaths(root=root, socket=Path(str(config["socket"])))
    try:
        host = Host(paths, config)
    except (KeyError, TypeError, ValueError) as exc:
        log.error("cannot build the router of %s: %s", root, exc)
        return 2
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, host.stopping.set)
    try:
        with LoopWatchdog(name=f"router process {root.name}: event loop"):
            await host.run(takeover=takeover)
    except errors.ChangeoverError as exc:
        log.error("%s", exc)
        return 1
    return 0


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only serve (or `down`) stops us
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.Formatter.converter = time.gmtime
    root = Path(sys.argv[1])
    takeover = "--takeover" in sys.argv[2:]
    sys.exit(aio.run_fast(_main(root, takeover=takeover)))


if __name__ == "__main__":
    main()
