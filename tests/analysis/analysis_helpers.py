"""Real endpoints for the analysis tests: a small asyncio HTTP/1.1 server whose answers the
test controls, used as the builtin router's upstream, as the ``web`` provider's endpoint and
as a webhook receiver (it records every request).

    server = await HttpServer(answer=lambda req: (200, {"data": {"ok": True}})).start()
    server.url("/health")      # http://127.0.0.1:<port>/health
    server.requests[-1].json   # what the last POST carried

``argo_templates`` and ``TemplateRunner`` run AnalysisTemplates written the way Argo
Rollouts users write them (imported as ``changeover import`` does) through the controller's
analysis runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


# request → (status, JSON body, or bytes sent as they are)
Answer = Callable[[Request], tuple[int, Any]]


@dataclass
class HttpServer:
    answer: Answer = lambda _req: (200, {"ok": True})
    delay: float = 0.0
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> HttpServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, headers, body)
                self.requests.append(request)
                if self.delay:
                    await asyncio.sleep(self.delay)
                status, payload = self.answer(request)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            return  # the test is over: its loop cancels what is left
        finally:
            self._writers.discard(writer)
            writer.close()


async def get(port: int, path: str = "/", count: int = 1) -> list[int]:
    """``count`` GETs over one keep-alive connection; their status codes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    codes = []
    try:
        for _ in range(count):
            writer.write(f"GET {path} HTTP/1.1\r\nhost: t\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            codes.append(int(head.split(b" ", 2)[1]))
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
    finally:
        writer.close()
    return codes


# --- Argo-shaped templates (tests/fixtures/argo_templates), run through the runner -------

ARGO_TEMPLATES = Path(__file__).resolve().parents[1] / "fixtures" / "argo_templates"


def argo_templates(name: str) -> list[dict[str, Any]]:
    """The AnalysisTemplates of fixture ``name`` as ``changeover import`` converts them."""
    from changeover import importers

    return [dict(doc) for doc in importers.import_path(str(ARGO_TEMPLATES / name)).documents]


class TemplateRunner:
    """An ``AnalysisRunner`` on a FakeClock that runs stored templates by name."""

    def __init__(self, path: Path) -> None:
        from changeover.clock import FakeClock
        from changeover.runners.analysis_runner import AnalysisRunner
        from changeover.runners.analysis_store import AnalysisStore

        self.clock = FakeClock(1000.0)
        self.store = AnalysisStore(path)
        self.woken = asyncio.Event()
        self.runner = AnalysisRunner(store=self.store, clock=self.clock, wake=self.woken.set)

    def put(self, doc: dict[str, Any]) -> str:
        from changeover.spec import analysis as spec

        template = spec.AnalysisTemplate.model_validate(doc)
        name = str(doc["metadata"]["name"])
        self.store.put_template(name, template.to_json_dict(), now=0.0)
        return name

    def start(self, run_id: str, template: str, args: dict[str, str]) -> None:
        from changeover.engine import actions
        from changeover.spec import analysis as spec
        from changeover.spec import models

        rollout = models.Rollout.model_validate(
            {
                "metadata": {"name": "web"},
                "spec": {
                    "template": {"command": ["app"]},
                    "service": {"port": 8080},
                    "strategy": {"canary": {}},
                },
            }
        )
        analysis = spec.RolloutAnalysis.model_validate(
            {
                "templates": [{"templateName": template}],
                "args": [{"name": k, "value": v} for k, v in args.items()],
            }
        )
        action = actions.StartAnalysis(
            run_id=run_id, kind="step", analysis=analysis, revision=2, stable_revision=1
        )
        self.runner.start(action, rollout=rollout)

    async def measure(self, seconds: float = 0.0) -> None:
        self.clock.advance(seconds)
        self.woken.clear()
        self.runner.step()
        await asyncio.wait_for(self.woken.wait(), 30)

    def seen(self, run_id: str) -> Any:
        seen = self.runner.observe(run_id)
        assert seen is not None
        return seen

    def metrics(self, run_id: str) -> dict[str, Any]:
        doc = self.store.run(run_id)
        assert doc is not None
        return {name: r["phase"] for name, r in doc["results"].items()}

    async def close(self) -> None:
        await self.runner.close()
        self.store.close()
