"""Readiness checks of one replica, Kubernetes-style: an HTTP GET or a TCP connect.

``local.replica`` calls ``check`` every ``periodSeconds``. The HTTP check is a hand-written
one-line request on a fresh connection rather than an HTTP client: it costs one connect, one
write and one read, and needs nothing beyond asyncio. Like the kubelet, any status from 200
to 399 passes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from changeover.spec import models

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str = ""  # why it failed: "HTTP 503", "connection refused", "timed out after 1s"


async def check(port: int, probe: models.ReadinessProbe | None) -> ProbeResult:
    """One readiness check of ``127.0.0.1:port``. Without ``httpGet`` (or without any
    probe) the replica is ready once its port accepts connections."""
    timeout = probe.timeout_seconds if probe is not None else 1.0
    path = probe.http_get.path if probe is not None and probe.http_get is not None else None
    try:
        return await asyncio.wait_for(_check(port, path), timeout=timeout)
    except TimeoutError:
        return ProbeResult(False, f"timed out after {timeout:g}s")
    except ConnectionRefusedError:
        return ProbeResult(False, "connection refused")
    except OSError as exc:
        return ProbeResult(False, exc.strerror or str(exc))
    except UnicodeEncodeError:  # lint refuses such a path; a stored older spec may have one
        return ProbeResult(False, f"the probe path {path!r} is not ASCII: percent-encode it")


async def _check(port: int, path: str | None) -> ProbeResult:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        if path is None:
            return ProbeResult(True)
        if not path.startswith("/"):
            path = "/" + path
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "User-Agent: changeover-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return ProbeResult(False, f"not an HTTP response: {status_line[:60]!r}")
        code = int(parts[1])
        if 200 <= code < 400:
            return ProbeResult(True)
        return ProbeResult(False, f"HTTP {code}")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
