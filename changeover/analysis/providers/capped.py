"""HTTP answers read with a size cap, for the ``web`` and ``prometheus`` providers and for
webhooks: an endpoint that answers with gigabytes (or never stops) costs at most
``limit`` bytes of memory and ends as an error that says so.

    answer = await capped.request(client, "GET", url, limit=capped.MAX_RESPONSE_BYTES)
    answer.status_code, answer.text, answer.json()

``read_limit`` reads a provider's ``maxResponseBytes`` field (default ``MAX_RESPONSE_BYTES``);
``parse_json`` turns hostile JSON (nested thousands deep, integers of thousands of digits)
into a ``ValueError`` with a plain reason instead of a ``RecursionError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

MAX_RESPONSE_BYTES = 1 << 20  # 1 MiB: the default cap of a response body
FIELD = "maxResponseBytes"


class TooLarge(Exception):
    """The answer's body is larger than the cap; ``str()`` says so."""

    def __init__(self, limit: int, status_code: int) -> None:
        super().__init__(f"response larger than {limit} bytes")
        self.limit = limit
        self.status_code = status_code


@dataclass(frozen=True)
class Answer:
    """A finished HTTP answer with its (capped) body."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return parse_json(self.content)


async def request(
    client: httpx.AsyncClient, method: str, url: str, *, limit: int, **kwargs: Any
) -> Answer:
    """Send a request and read at most ``limit`` bytes of the (decoded) body.

    Raises ``TooLarge`` as soon as the declared length or the bytes read pass the cap, and
    whatever ``httpx`` raises for the request itself.
    """
    async with client.stream(method, url, **kwargs) as response:
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise TooLarge(limit, response.status_code)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise TooLarge(limit, response.status_code)
            chunks.append(chunk)
        return Answer(response.status_code, response.headers, b"".join(chunks))


def parse_json(data: bytes | str) -> Any:
    """``json.loads`` whose every failure is a ``ValueError`` with a short reason."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValueError(exc.msg) from None
    except ValueError as exc:  # an integer beyond Python's 4,300-digit conversion limit
        raise ValueError(str(exc).split(";")[0]) from None


def read_limit(config: Mapping[str, Any]) -> int:
    """A provider block's ``maxResponseBytes``; ``ValueError`` names the field."""
    value = config.get(FIELD, MAX_RESPONSE_BYTES)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{FIELD}: expected a positive whole number of bytes, got {value!r}")
    return value
