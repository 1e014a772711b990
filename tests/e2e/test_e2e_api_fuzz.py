"""The control API of a real ``changeover serve`` fuzzed from its own OpenAPI document with
schemathesis: every documented operation (the event streams aside: they never end by
design) gets generated paths, queries and bodies, with the token, while a rollout exists;
no answer may be a 500, and every 200 must match its documented schema. serve must still
be healthy afterwards, its rollout untouched by anything refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from e2e_serve import Serve
from e2e_specs import example_rollout, write_rollout
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.slow


def test_fuzzed_requests_to_a_real_serve_never_get_a_500(serve: Serve, tmp_path: Path) -> None:
    doc = example_rollout("canary", name="fuzzed", version="v1", mark=serve.mark, replicas=1)
    assert serve.apply(write_rollout(tmp_path / "fuzzed.yaml", doc), "--wait").code == 0
    token = (serve.state_dir / "token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    schema = httpx.get(f"{serve.url}/api/openapi.json").json()
    # Not the streams (endless), not DELETE of a rollout (the one under test would go).
    api = schemathesis.openapi.from_dict(schema).exclude(path_regex="stream$")
    api = api.exclude(method="DELETE", path_regex=r"rollouts/\{name\}$")
    seen: list[str] = []
    for found in api.get_all_operations():
        operation = found.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def one(case: Any) -> None:
            response = case.call(base_url=serve.url, headers=auth, timeout=30)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}\n--- serve log ---\n{serve.log()}"
            )
            if response.status_code == 200:
                case.operation.validate_response(response)

        one()
        seen.append(f"{operation.method.upper()} {operation.path}")
    assert len(seen) >= 18, seen
    assert httpx.get(f"{serve.url}/healthz").status_code == 200
    assert "Traceback" not in serve.log()
