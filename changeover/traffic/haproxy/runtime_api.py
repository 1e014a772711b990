"""A client for HAProxy's runtime API (the stats socket, ``level admin``) over a Unix socket.

``HAProxyRouter`` changes everything during a rollout through this client: map contents
(routes, the sticky split, maintenance, preview), server weights, addresses and states, and
it reads ``show stat`` for metrics and drains. One connection per command, in the socket's
non-interactive mode: send one line, read until HAProxy closes. Commands that fail answer
with a message; callers say what a success looks like (``expect``) and anything else raises
``TemporaryBackendError`` (the controller retries on the next tick).

    api = RuntimeAPI(Path("/run/x/admin.sock"))
    await api.replace_map(Path("/run/x/slots.map"), [("b0", "1"), ("b1", "2")])
    rows = await api.show_stat()
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

from changeover import errors

_VERSION = re.compile(r"New version created: (\d+)")


class RuntimeAPI:
    def __init__(self, socket_path: Path, *, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    async def command(self, line: str, *, payload: str | None = None) -> str:
        """Send one command (with an optional ``<<`` payload); return HAProxy's answer.

        While HAProxy reloads its socket is briefly re-created, so a refused or missing
        socket is retried for up to ``timeout`` seconds before it is reported.
        """
        if "\n" in line or ";" in line:
            raise errors.PermanentBackendError(f"one runtime API command at a time: {line!r}")
        data = f"{line} <<\n{payload.rstrip(chr(10))}\n\n" if payload else f"{line}\n"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the answer
                # when the caller is cancelled just as it arrives, swallowing the
                # cancellation (a router's close() waited forever on its metrics poll).
                async with asyncio.timeout(self.timeout):
                    return await self._exchange(data.encode())
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if loop.time() >= deadline:
                    raise errors.TemporaryBackendError(
                        f"HAProxy runtime API at {self.socket_path} unavailable: {exc}"
                    ) from exc
                await asyncio.sleep(0.02)
            except (OSError, TimeoutError) as exc:
                raise errors.TemporaryBackendError(
                    f"HAProxy runtime API at {self.socket_path}: {line!r} failed: {exc}"
                ) from exc

    async def _exchange(self, data: bytes) -> str:
        reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        try:
            writer.write(data)
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # the master CLI answers only once the request has ended
            answer = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return answer.decode("utf-8", "replace")

    async def run(self, line: str, *, expect: str = "", payload: str | None = None) -> str:
        """``command``, raising unless the answer (stripped) matches the regex ``expect``
        (the default: an empty answer, which is how HAProxy says "done")."""
        answer = await self.command(line, payload=payload)
        if not re.fullmatch(expect, answer.strip(), re.DOTALL):
            raise errors.TemporaryBackendError(
                f"HAProxy runtime API: {line!r} answered {answer.strip()!r}"
            )
        return answer

    # -- maps ---------------------------------------------------------------------------

    async def replace_map(self, path: Path, entries: Sequence[tuple[str, str]]) -> None:
        """Replace a map's whole contents atomically: ``prepare``, ``add @ver``, ``commit``.

        Requests see either the old contents or the new ones, never a mix.
        """
        answer = await self.run(f"prepare map {path}", expect=r"New version created: \d+")
        found = _VERSION.search(answer)
        assert found is not None
        version = found.group(1)
        if entries:
            payload = "".join(f"{k} {v}\n" for k, v in entries)
            await self.run(f"add map @{version} {path}", payload=payload)
        await self.run(f"commit map @{version} {path}")

    async def replace_acl(self, path: Path, patterns: Sequence[str]) -> None:
        """Replace a pattern file's (``-f``) contents atomically, as ``replace_map``."""
        answer = await self.run(f"prepare acl {path}", expect=r"New version created: \d+")
        found = _VERSION.search(answer)
        assert found is not None
        version = found.group(1)
        for pattern in patterns:
            await self.run(f"add acl @{version} {path} {pattern}")
        await self.run(f"commit acl @{version} {path}")

    async def show_map(self, path: Path) -> list[tuple[str, str]]:
        """The map's entries in order, as (key, value)."""
        answer = await self.command(f"show map {path}")
        out: list[tuple[str, str]] = []
        for line in answer.splitlines():
            parts = line.split(" ", 2)  # "<ref> <key> <value>"
            if len(parts) == 3 and parts[0].startswith("0x"):
                out.append((parts[1], parts[2]))
        return out

    # -- servers ------------------------------------------------------------------------

    async def set_server_addr(self, backend: str, server: str, host: str, port: int) -> None:
        await self.run(
            f"set server {backend}/{server} addr {host} port {port}",
            expect=r".*(changed|no need to change).*",
        )

    async def set_server_state(self, backend: str, server: str, state: str) -> None:
        """``state``: ``ready``, ``drain`` or ``maint``."""
        await self.run(f"set server {backend}/{server} state {state}")

    async def set_server_weight(self, backend: str, server: str, weight: int) -> None:
        await self.run(f"set server {backend}/{server} weight {weight}")

    # -- stats --------------------------------------------------------------------------

    async def show_stat(
        self, *, servers: bool = True, proxy: str | None = None
    ) -> list[dict[str, str]]:
        """``show stat`` as rows keyed by HAProxy's CSV header (``pxname``, ``svname``...).

        ``servers=False`` asks for frontend and backend rows only (``-1 3 -1``), ``proxy``
        for the server rows of one backend only (``w 4 -1``): HAProxy dumps rows on its
        serving thread (measured: 3.7M instructions for the 74 rows of a default layout,
        0.6M for 10), so the metrics poll asks for what it reads."""
        if proxy is not None:
            line = f"show stat {proxy} 4 -1"
        else:
            line = "show stat" if servers else "show stat -1 3 -1"
        return parse_stat(await self.command(line))

    async def show_info(self) -> dict[str, str]:
        answer = await self.command("show info")
        out: dict[str, str] = {}
        for line in answer.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                out[key.strip()] = value.strip()
        return out


def parse_stat(text: str) -> list[dict[str, str]]:
    """Parse ``show stat`` CSV (its header line starts with ``# ``).

    >>> rows = parse_stat("# pxname,svname,scur,\\nb0,BACKEND,3,\\n")
    >>> rows[0]["pxname"], rows[0]["svname"], rows[0]["scur"]
    ('b0', 'BACKEND', '3')
    """
    text = text.lstrip()
    if text.startswith("# "):
        text = text[2:]
    return [dict(row) for row in csv.DictReader(io.StringIO(text)) if row.get("pxname")]
