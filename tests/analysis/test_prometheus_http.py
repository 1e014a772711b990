"""The ``prometheus`` provider's HTTP edges against a real local server playing Prometheus:
bearer tokens and custom headers on the wire, timeouts, non-Prometheus answers, NaN.

(Prometheus itself cannot check bearer tokens, and a real one is never slow on purpose;
``test_prometheus.py`` covers queries against the real thing.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from changeover.analysis.providers import base, prometheus

CTX = base.MeasureContext(
    rollout="web", namespace="default", stable_revision=1, canary_revision=2, now=0.0
)


@dataclass
class FakeProm:
    port: int = 0
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    status: int = 200
    body: bytes = b""
    delay: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, data: dict[str, Any], status: int = 200) -> None:
        self.status, self.body = status, json.dumps(data).encode()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = head.split("\r\n")
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
        }
        path = lines[0].split(" ")[1]
        self.seen.append((path, headers))
        self.bodies.append(await reader.readexactly(int(headers.get("content-length", "0"))))
        await asyncio.sleep(self.delay)
        status, body = self.status, self.body
        if path == "/token":  # an OAuth2 token endpoint
            status, body = 200, b'{"access_token": "tok-123", "token_type": "bearer"}'
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, len(body), body)
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeProm]:
    fp = FakeProm()
    server = await asyncio.start_server(fp.serve, "127.0.0.1", 0)
    fp.port = server.sockets[0].getsockname()[1]
    fp.answer({"status": "success", "data": {"resultType": "vector", "result": []}})
    yield fp
    server.close()


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {"i": str(i)}, "value": [1.0, v]} for i, v in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


async def measure(config: dict[str, Any]) -> base.ProviderResult:
    return await prometheus.PrometheusProvider().measure(config, args={}, context=CTX)


async def test_bearer_token_and_headers_are_sent(fake: FakeProm) -> None:
    fake.answer(vector("0.5"))
    result = await measure(
        {
            "address": fake.url,
            "query": 'up{job="x"}',
            "authentication": {"bearer": {"token": "s3cret"}},
            "headers": [{"key": "X-Scope-OrgID", "value": "tenant_a"}],
            "timeout": "7s",
        }
    )
    assert result.value == [0.5]
    path, headers = fake.seen[0]
    assert path.startswith("/api/v1/query?query=up%7Bjob%3D%22x%22%7D")
    assert "timeout=7s" in path  # the server is asked to give up too
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["x-scope-orgid"] == "tenant_a"


async def test_range_query_sends_start_end_step(fake: FakeProm) -> None:
    fake.answer(
        {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [{"metric": {}, "values": [[1, "1"], [2, "NaN"], [3, "+Inf"]]}],
            },
        }
    )
    result = await measure(
        {"address": fake.url, "query": "up", "rangeQuery": {"start": "now() - 1m", "step": "15s"}}
    )
    assert result.value[0] == 1.0 and result.value[1] != result.value[1]  # NaN
    assert result.value[2] == float("inf")
    path = fake.seen[0][0]
    assert path.startswith("/api/v1/query_range?") and "step=15" in path
    params = dict(p.split("=") for p in path.split("?")[1].split("&"))
    assert float(params["end"]) - float(params["start"]) == pytest.approx(60, abs=0.01)


async def test_slow_server_times_out_as_a_provider_error(fake: FakeProm) -> None:
    fake.delay = 2.0
    with pytest.raises(base.ProviderError, match=r"no answer within 0\.3s"):
        await measure({"address": fake.url, "query": "up", "timeout": 0.3})


async def test_prometheus_error_json_on_http_503(fake: FakeProm) -> None:
    fake.answer({"status": "error", "errorType": "timeout", "error": "query timed out"}, 503)
    with pytest.raises(base.ProviderError, match="timeout: query timed out"):
        await measure({"address": fake.url, "query": "up"})


async def test_a_proxy_page_is_not_mistaken_for_an_answer(fake: FakeProm) -> None:
    fake.status, fake.body = 502, b"<html>Bad Gateway</html>"
    with pytest.raises(base.ProviderError, match="HTTP 502, not a Prometheus answer"):
        await measure({"address": fake.url, "query": "up"})


async def test_malformed_result_is_a_provider_error(fake: FakeProm) -> None:
    fake.answer({"status": "success", "data": {"resultType": "vector", "result": [{}]}})
    with pytest.raises(base.ProviderError, match="malformed vector"):
        await measure({"address": fake.url, "query": "up"})


async def test_warnings_are_reported_in_the_message(fake: FakeProm) -> None:
    body = vector("1")
    body["warnings"] = ["partial response"]
    fake.answer(body)
    assert (await measure({"address": fake.url, "query": "up"})).message == "partial response"


def test_time_expressions() -> None:
    assert prometheus.parse_time("now() - 90s", now=1000.0) == 910.0
    assert prometheus.parse_time("1700000000", now=0.0) == 1_700_000_000.0
    with pytest.raises(ValueError, match=r"rangeQuery\.start"):
        prometheus.parse_time("now() + 5m", now=0.0, field_name="rangeQuery.start")


async def test_oauth2_client_credentials_token_is_sent_as_bearer(fake: FakeProm) -> None:
    fake.answer(vector("1"))
    oauth = {
        "tokenUrl": f"{fake.url}/token",
        "clientId": "rollouts",
        "clientSecret": "s3cret",
        "scopes": ["metrics.read"],
    }
    config = {"address": fake.url, "query": "up", "authentication": {"oauth2": oauth}}
    assert (await measure(config)).value == [1.0]
    (token_path, token_headers), (_, query_headers) = fake.seen
    assert token_path == "/token"
    assert token_headers["authorization"] == "Basic cm9sbG91dHM6czNjcmV0"  # rollouts:s3cret
    assert fake.bodies[0] == b"grant_type=client_credentials&scope=metrics.read"
    assert query_headers["authorization"] == "Bearer tok-123"


def test_unsupported_and_malformed_auth_is_named() -> None:
    base_cfg = {"address": "http://p", "query": "up"}
    assert prometheus.problems({**base_cfg, "authentication": {"sigv4": {"region": "x"}}}) == [
        "authentication.sigv4: not supported; use bearer, basicAuth or oauth2"
    ]
    assert (
        "tokenUrl"
        in prometheus.problems({**base_cfg, "authentication": {"oauth2": {"clientId": "x"}}})[0]
    )


async def test_a_bad_ca_cert_is_a_provider_error() -> None:
    with pytest.raises(base.ProviderError, match="caCert"):
        await measure({"address": "https://127.0.0.1:1", "query": "up", "caCert": "nonsense"})
