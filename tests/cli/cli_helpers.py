"""Types shared by the CLI tests and their fixtures (conftest.py builds them)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from typer.testing import CliRunner, Result

from changeover.api.server import ApiServer
from changeover.cli.main import app
from changeover.testing.fake_service import FakeService

TOKEN = "test-token-0123456789"


@dataclass
class LiveServer:
    """A real API server (``start_api`` over a ``FakeService``) on a loopback port."""

    service: FakeService
    api: ApiServer
    loop: asyncio.AbstractEventLoop
    token: str = TOKEN

    @property
    def url(self) -> str:
        return self.api.url

    def opts(self) -> list[str]:
        return ["--server", self.url, "--token", self.token]


class Cli:
    """``cli("get", "-o", "json")`` runs the changeover CLI in-process."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.runner.invoke(app, list(args), env=env)
