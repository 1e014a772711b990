"""The ``web`` metric provider: an HTTP request whose JSON answer is the measurement
(Argo Rollouts' web provider: same field names)::

    provider:
      web:
        url: http://127.0.0.1:9000/health?service={{args.service}}
        method: GET               # GET (default), POST or PUT
        headers:                  # Argo's list of {key, value}, or a plain mapping
          - {key: Authorization, value: "Bearer {{args.token}}"}
        body: '{"check": "deep"}' # or jsonBody: {check: deep}
        timeoutSeconds: 10        # default 10
        jsonPath: "{$.data.ok}"   # what ``result`` is; the whole document without it
        insecure: false           # skip TLS verification
        maxResponseBytes: 1048576 # a larger answer is an Error measurement (default 1 MiB)

A non-2xx answer, a timeout, a body that is not JSON (or nested too deeply), a body larger
than ``maxResponseBytes`` or a path that does not match raise ``ProviderError`` (an Error
measurement).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from changeover.analysis import jsonpath
from changeover.analysis.providers import base, capped

DEFAULT_TIMEOUT = 10.0
_KEYS = (
    "url",
    "method",
    "headers",
    "body",
    "jsonBody",
    "timeoutSeconds",
    "jsonPath",
    "insecure",
    capped.FIELD,
)


def _headers(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    if isinstance(raw, list) and all(isinstance(h, Mapping) and "key" in h for h in raw):
        return {str(h["key"]): str(h.get("value", "")) for h in raw}
    raise ValueError("headers: expected a list of {key, value} or a mapping")


def problems(config: Mapping[str, Any]) -> list[str]:
    out = [
        f"unknown field {key!r}; expected one of {', '.join(_KEYS)}"
        for key in config
        if key not in _KEYS
    ]
    url = config.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "{{")):
        out.append(f"url: expected an http:// or https:// URL, got {url!r}")
    if str(config.get("method", "GET")).upper() not in ("GET", "POST", "PUT"):
        out.append(f"method: expected GET, POST or PUT, got {config['method']!r}")
    if "body" in config and "jsonBody" in config:
        out.append("expected one of body, jsonBody")
    try:
        _headers(config.get("headers"))
    except ValueError as exc:
        out.append(str(exc))
    path = config.get("jsonPath")
    if path is not None:
        try:
            jsonpath.parse(str(path))
        except jsonpath.PathError as exc:
            out.append(f"jsonPath: {exc}")
    timeout = config.get("timeoutSeconds", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        out.append(f"timeoutSeconds: expected a positive number, got {timeout!r}")
    try:
        capped.read_limit(config)
    except ValueError as exc:
        out.append(str(exc))
    return out


class WebProvider:
    name = "web"

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport

    async def measure(
        self,
        config: Mapping[str, Any],
        *,
        args: Mapping[str, str],
        context: base.MeasureContext,
    ) -> base.ProviderResult:
        found = problems(config)
        if found:
            raise base.ProviderError(f"provider.web: {found[0]}")
        url = str(config["url"])
        method = str(config.get("method", "GET")).upper()
        headers = _headers(config.get("headers"))
        content: bytes | None = None
        if "jsonBody" in config:
            content = json.dumps(config["jsonBody"]).encode()
            headers.setdefault("Content-Type", "application/json")
        elif "body" in config:
            content = str(config["body"]).encode()
        timeout = float(config.get("timeoutSeconds", DEFAULT_TIMEOUT))
        limit = capped.read_limit(config)
        try:
            async with httpx.AsyncClient(
                timeout=timeout,
                verify=not config.get("insecure", False),
                transport=self._transport,
            ) as client:
                response = await capped.request(
                    client, method, url, limit=limit, headers=headers, content=content
                )
        except httpx.TimeoutException:
            raise base.ProviderError(f"{method} {url}: no answer within {timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise base.ProviderError(f"{method} {url}: {exc or type(exc).__name__}") from None
        except capped.TooLarge as exc:
            raise base.ProviderError(f"{method} {url}: {exc} ({capped.FIELD})") from None
        if not response.is_success:
            text = response.text[:200].strip()
            raise base.ProviderError(
                f"{method} {url}: HTTP {response.status_code}" + (f": {text}" if text else "")
            )
        try:
            document = response.json()
        except ValueError as exc:
            raise base.ProviderError(f"{method} {url}: the answer is not JSON ({exc})") from None
        path = config.get("jsonPath")
        if path is None:
            return base.ProviderResult(value=document)
        try:
            return base.ProviderResult(value=jsonpath.select(str(path), document))
        except jsonpath.PathError as exc:
            raise base.ProviderError(str(exc)) from None


base.register("web", WebProvider, problems=problems)
