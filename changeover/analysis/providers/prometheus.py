"""The ``prometheus`` metric provider: instant and range PromQL queries over the HTTP API.

The analysis runner calls ``PrometheusProvider.measure`` with the block under
``provider.prometheus`` (Argo Rollouts' field names, ``{{args.x}}`` already substituted);
the judges (``judges.mann_whitney``, ``judges.ab_significance``) reuse ``PrometheusClient``
to fetch sample series. Results are shaped for conditions the way Argo users expect:

    scalar                          → 0.97
    instant vector                  → [0.97, 0.91]   (one float per series; ``result[0]``)
    range query, one series         → [0.97, 0.96, 0.99]   (one float per step)
    range query, several series     → [[...], [...]]

A failed query (connection refused, timeout, HTTP 4xx/5xx, Prometheus' own error such as a
PromQL parse error) raises ``ProviderError`` carrying Prometheus' error text.

    provider:
      prometheus:
        address: http://127.0.0.1:9090
        query: sum(rate(changeover_requests_total{code="5xx"}[1m]))
        timeout: 10                      # seconds, or 10s
        headers: [{key: X-Scope-OrgID, value: tenant_a}]
        authentication:
          bearer: {token: "{{args.token}}"}          # or
          basicAuth: {username: u, password: p}                     # or
          oauth2: {tokenUrl: ..., clientId: ..., clientSecret: ..., scopes: [...]}
        insecure: false                  # skip TLS verification
        caCert: "-----BEGIN CERTIFICATE-----..."  # trust this CA (PEM) instead
        rangeQuery: {start: "now() - 5m", end: "now()", step: 15s}
        maxResponseBytes: 1048576        # a larger answer is an Error measurement (1 MiB)
"""

from __future__ import annotations

import datetime
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from changeover.analysis.providers import base, capped
from changeover.spec import models

DEFAULT_TIMEOUT = 30.0

Shaped = float | str | list[float] | list[list[float]]


@dataclass(frozen=True, kw_only=True)
class RangeSpec:
    start: str
    end: str = "now()"
    step: float = 60.0


@dataclass(frozen=True, kw_only=True)
class OAuth2:
    """Client-credentials flow (RFC 6749 §4.4): a token per measurement, sent as Bearer."""

    token_url: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PrometheusConfig:
    address: str
    query: str = ""
    timeout: float = DEFAULT_TIMEOUT
    headers: Mapping[str, str] = field(default_factory=dict)
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    oauth2: OAuth2 | None = None
    insecure: bool = False
    ca_cert: str | None = None
    range: RangeSpec | None = None
    max_response_bytes: int = capped.MAX_RESPONSE_BYTES


def parse_config(config: Mapping[str, Any], *, need_query: bool = True) -> PrometheusConfig:
    """Read ``provider.prometheus``; a ``ValueError`` names the offending field.

    >>> parse_config({"address": "http://p:9090/", "query": "up", "timeout": "5s"}).timeout
    5.0
    """
    address = config.get("address")
    if not isinstance(address, str) or not address.startswith(("http://", "https://")):
        raise ValueError(f"address: expected an http(s) URL, got {address!r}")
    query = config.get("query", "")
    if not isinstance(query, str) or (need_query and not query.strip()):
        raise ValueError("query: expected a PromQL expression")
    timeout = _field(models.parse_duration, config.get("timeout", DEFAULT_TIMEOUT), "timeout")
    if timeout <= 0:
        raise ValueError("timeout: expected a positive number of seconds")
    headers: dict[str, str] = {}
    for i, item in enumerate(config.get("headers") or []):
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            raise ValueError(f"headers[{i}]: expected {{key: NAME, value: TEXT}}")
        headers[item["key"]] = str(item.get("value", ""))
    auth = config.get("authentication") or {}
    if not isinstance(auth, Mapping):
        raise ValueError("authentication: expected a mapping")
    bearer = auth.get("bearer")
    token = bearer.get("token") if isinstance(bearer, Mapping) else bearer
    basic = auth.get("basicAuth") or auth.get("basic")
    basic_pair = None
    if basic is not None:
        if not isinstance(basic, Mapping) or "username" not in basic:
            raise ValueError("authentication.basicAuth: expected {username: ..., password: ...}")
        basic_pair = (str(basic["username"]), str(basic.get("password", "")))
    if token is not None and not isinstance(token, str):
        raise ValueError("authentication.bearer.token: expected a string")
    if "sigv4" in auth:
        raise ValueError("authentication.sigv4: not supported; use bearer, basicAuth or oauth2")
    oauth2 = _oauth2(auth.get("oauth2"))
    rng = config.get("rangeQuery")
    range_spec = None
    if rng is not None:
        if not isinstance(rng, Mapping) or "start" not in rng:
            raise ValueError("rangeQuery: expected {start: ..., end: ..., step: ...}")
        step = _field(models.parse_duration, rng.get("step", 60), "rangeQuery.step")
        if step <= 0:
            raise ValueError("rangeQuery.step: expected a positive duration")
        range_spec = RangeSpec(start=str(rng["start"]), end=str(rng.get("end", "now()")), step=step)
        for name in ("start", "end"):
            parse_time(getattr(range_spec, name), now=0.0, field_name=f"rangeQuery.{name}")
    return PrometheusConfig(
        address=address.rstrip("/"),
        query=query,
        timeout=timeout,
        headers=headers,
        bearer_token=token or None,
        basic_auth=basic_pair,
        oauth2=oauth2,
        insecure=bool(config.get("insecure", False)),
        ca_cert=str(config["caCert"]) if config.get("caCert") else None,
        range=range_spec,
        max_response_bytes=capped.read_limit(config),
    )


def _oauth2(block: Any) -> OAuth2 | None:
    if block is None:
        return None
    fields = ("tokenUrl", "clientId", "clientSecret")
    if not isinstance(block, Mapping) or not all(isinstance(block.get(f), str) for f in fields):
        raise ValueError("authentication.oauth2: expected tokenUrl, clientId and clientSecret")
    scopes = block.get("scopes") or []
    if not isinstance(scopes, list):
        raise ValueError("authentication.oauth2.scopes: expected a list")
    return OAuth2(
        token_url=block["tokenUrl"],
        client_id=block["clientId"],
        client_secret=block["clientSecret"],
        scopes=tuple(str(x) for x in scopes),
    )


def problems(config: Mapping[str, Any]) -> list[str]:
    """What ``lint`` reports for a ``provider.prometheus`` block (empty when valid)."""
    try:
        parse_config(config)
    except ValueError as exc:
        return [str(exc)]
    return []


_NOW = re.compile(
    r"""^\s*now\(\)\s*(?:-\s*(?:duration\(\s*["']([^"']+)["']\s*\)|([0-9.]+\s*[a-z]*)))?\s*$"""
)


def parse_time(expr: str, *, now: float, field_name: str = "time") -> float:
    """Unix seconds from Argo's range-query times: ``now()``, ``now() - 5m``,
    ``now() - duration("5m")``, a Unix timestamp, or RFC 3339.

    >>> parse_time('now() - duration("5m")', now=1000.0), parse_time("now()", now=1000.0)
    (700.0, 1000.0)
    >>> parse_time("2024-01-01T00:00:00Z", now=0.0)
    1704067200.0
    """
    match = _NOW.match(expr)
    if match:
        ago = match.group(1) or match.group(2)
        return now - (_field(models.parse_duration, ago, field_name) if ago else 0.0)
    try:
        return float(expr)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(expr.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(
            f"{field_name}: expected now(), now() - 5m, a Unix time or RFC 3339, got {expr!r}"
        ) from None


def _field(parse: Any, value: object, name: str) -> float:
    try:
        return float(parse(value))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    values: list[float]  # one for a vector sample, one per step for a matrix


@dataclass(frozen=True)
class QueryResult:
    result_type: str  # "scalar" | "string" | "vector" | "matrix"
    series: list[Series]
    scalar: float | str | None = None
    warnings: tuple[str, ...] = ()

    def shaped(self) -> Shaped:
        """The value conditions see as ``result`` (see the module docstring)."""
        if self.result_type in ("scalar", "string"):
            assert self.scalar is not None
            return self.scalar
        if self.result_type == "vector":
            return [s.values[0] for s in self.series]
        if len(self.series) == 1:
            return list(self.series[0].values)
        return [list(s.values) for s in self.series]


class PrometheusClient:
    """One Prometheus server's query API (a fresh ``httpx.AsyncClient`` per call)."""

    def __init__(
        self, config: PrometheusConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ):
        self.config = config
        self._transport = transport

    async def query(self, query: str) -> QueryResult:
        """An instant query at the server's now."""
        return await self._get("/api/v1/query", {"query": query})

    async def query_range(
        self, query: str, *, start: float, end: float, step: float
    ) -> QueryResult:
        return await self._get(
            "/api/v1/query_range",
            {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )

    async def run(self, query: str | None = None) -> QueryResult:
        """The configured query: a range query when ``rangeQuery`` is set, else instant.

        Prometheus lives in real time, so ranges are anchored at ``time.time()``, not at
        the controller's clock (a ``FakeClock`` in tests would ask for 1970)."""
        q = query if query is not None else self.config.query
        rng = self.config.range
        if rng is None:
            return await self.query(q)
        now = time.time()
        return await self.query_range(
            q,
            start=parse_time(rng.start, now=now, field_name="rangeQuery.start"),
            end=parse_time(rng.end, now=now, field_name="rangeQuery.end"),
            step=rng.step,
        )

    async def _get(self, path: str, params: dict[str, str]) -> QueryResult:
        cfg = self.config
        # Ask the server to give up too, so a slow query does not keep running there.
        params = {**params, "timeout": f"{cfg.timeout:g}s"}
        auth = httpx.BasicAuth(*cfg.basic_auth) if cfg.basic_auth else None
        headers = dict(cfg.headers)
        if cfg.bearer_token:
            headers["Authorization"] = f"Bearer {cfg.bearer_token}"
        url = cfg.address + path
        verify: bool | ssl.SSLContext = not cfg.insecure
        if cfg.ca_cert and not cfg.insecure:
            try:
                verify = ssl.create_default_context(cadata=cfg.ca_cert)
            except ssl.SSLError as exc:
                raise base.ProviderError(
                    f"prometheus caCert: not a PEM certificate: {exc}"
                ) from exc
        try:
            async with httpx.AsyncClient(
                timeout=cfg.timeout,
                verify=verify,
                transport=self._transport,
                auth=auth,
                headers=headers,
            ) as client:
                if cfg.oauth2 is not None:
                    token = await _oauth2_token(client, cfg.oauth2)
                    client.headers["Authorization"] = f"Bearer {token}"
                response = await capped.request(
                    client, "GET", url, limit=cfg.max_response_bytes, params=params
                )
        except capped.TooLarge as exc:
            raise base.ProviderError(f"prometheus {cfg.address}: {exc} ({capped.FIELD})") from None
        except httpx.TimeoutException as exc:
            raise base.ProviderError(
                f"prometheus {cfg.address}: no answer within {cfg.timeout:g}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise base.ProviderError(
                f"prometheus {cfg.address}: {exc or type(exc).__name__}"
            ) from exc
        return _decode(response, cfg.address)


async def _oauth2_token(client: httpx.AsyncClient, oauth: OAuth2) -> str:
    form = {"grant_type": "client_credentials"}
    if oauth.scopes:
        form["scope"] = " ".join(oauth.scopes)
    response = await capped.request(
        client,
        "POST",
        oauth.token_url,
        limit=capped.MAX_RESPONSE_BYTES,
        data=form,
        auth=httpx.BasicAuth(oauth.client_id, oauth.client_secret),
    )
    try:
        token = response.json()["access_token"] if response.is_success else None
    except (ValueError, KeyError, TypeError):
        token = None
    if not isinstance(token, str):
        raise base.ProviderError(
            f"oauth2 token from {oauth.token_url}: HTTP {response.status_code}, no access_token"
        )
    return token


def _decode(response: capped.Answer, address: str) -> QueryResult:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip()[:200]
        raise base.ProviderError(
            f"prometheus {address}: HTTP {response.status_code}, not a Prometheus answer: {text!r}"
        )
    if body.get("status") != "success":
        kind = body.get("errorType", f"HTTP {response.status_code}")
        raise base.ProviderError(f"prometheus {address}: {kind}: {body.get('error', 'failed')}")
    data = body.get("data") or {}
    result_type = data.get("resultType")
    raw: Any = data.get("result")
    warnings = tuple(str(w) for w in body.get("warnings") or ())
    try:
        if result_type == "scalar":
            return QueryResult("scalar", [], _number(raw[1]), warnings)
        if result_type == "string":
            return QueryResult("string", [], str(raw[1]), warnings)
        if result_type == "vector":
            series = [Series(s.get("metric", {}), [_number(s["value"][1])]) for s in raw]
            return QueryResult("vector", series, None, warnings)
        if result_type == "matrix":
            series = [
                Series(s.get("metric", {}), [_number(v[1]) for v in s["values"]]) for s in raw
            ]
            return QueryResult("matrix", series, None, warnings)
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise base.ProviderError(f"prometheus {address}: malformed {result_type} result") from exc
    raise base.ProviderError(f"prometheus {address}: unknown result type {result_type!r}")


def _number(text: object) -> float:
    # Prometheus sends sample values as strings, including "NaN", "+Inf" and "-Inf",
    # which float() reads as they are.
    return float(str(text))


class PrometheusProvider:
    name = "prometheus"

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport

    async def measure(
        self,
        config: Mapping[str, Any],
        *,
        args: Mapping[str, str],
        context: base.MeasureContext,
    ) -> base.ProviderResult:
        try:
            cfg = parse_config(config)
        except ValueError as exc:
            raise base.ProviderError(f"provider.prometheus.{exc}") from None
        result = await PrometheusClient(cfg, transport=self._transport).run()
        message = "; ".join(result.warnings)
        return base.ProviderResult(value=result.shaped(), message=message)


base.register("prometheus", PrometheusProvider)
