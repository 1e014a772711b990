"""What the router does with traffic mid-rollout, measured from the client's side.

- canary paused at setWeight 30: each revision's share of 2,000 requests is within 2
  percentage points of its weight (and the router's own counters agree);
- A/B: a user key always lands on the same variant, about ``weight`` percent of users land
  on B, a header match sends a request to B whoever the user is, and no key stays on A;
- shadow: clients only ever get stable's answers while the shadow revision receives about
  its percentage of copies (the router's mirror counters on /metrics).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Client, metric_sum, wait_until
from e2e_load import describe, run_load
from e2e_serve import Serve
from e2e_specs import example_rollout, with_version, write_rollout

pytestmark = pytest.mark.slow


def _roll_to_v2(
    serve: Serve, tmp_path: Path, strategy: str, name: str, **kwargs: Any
) -> dict[str, Any]:
    """Deploy v1, wait Healthy, apply v2; the status once v2 is waiting for a human."""
    v1 = example_rollout(strategy, name=name, version="v1", mark=serve.mark, **kwargs)
    spec = write_rollout(tmp_path / f"{name}.yaml", v1)
    assert serve.apply(spec).code == 0
    serve.wait_phase(name, "Healthy", stableRevision=1)
    write_rollout(spec, with_version(v1, "v2"))
    result = serve.apply(spec)
    assert result.code == 0, str(result)
    return serve.wait_status(
        name,
        lambda d: d["phase"] == "Paused" and d["canaryRevision"] == 2,
        what=f"{name} paused with revision 2 running",
    )


def test_canary_share_matches_the_set_weight(serve: Serve, tmp_path: Path) -> None:
    status = _roll_to_v2(
        serve,
        tmp_path,
        "canary",
        "split",
        replicas=2,
        strategy_patch={"steps": [{"setWeight": 30}, {"pause": {}}]},
    )
    assert status["weights"] == {"1": 70, "2": 30}
    before = serve.metrics()

    report = run_load(status["endpoint"], 2_000, rate=400)

    assert report.failures == 0, describe(report)
    assert set(report.by_revision) == {"1", "2"}, describe(report)
    assert abs(report.share("2") - 0.30) <= 0.02, describe(report)
    assert abs(report.share("1") - 0.70) <= 0.02, describe(report)

    # The router counted the same split. Its process reports to serve once a second.
    def counted_now() -> dict[str, float]:
        after = serve.metrics()
        return {
            rev: metric_sum(after, "changeover_requests_total", rollout="split", revision=rev)
            - metric_sum(before, "changeover_requests_total", rollout="split", revision=rev)
            for rev in ("1", "2")
        }

    wait_until(lambda: sum(counted_now().values()) >= 2_000, within=5, what="2,000 counted")
    counted = counted_now()
    assert sum(counted.values()) == 2_000, counted
    assert abs(counted["2"] / 2_000 - 0.30) <= 0.02, counted
    # Still paused at the step: measuring did not move the rollout.
    assert serve.status("split")["weights"] == {"1": 70, "2": 30}


def test_ab_test_is_sticky_per_user_and_honours_the_header_match(
    serve: Serve, tmp_path: Path
) -> None:
    # The example's A/B spec: x-variant: b → B; 50% of users by a hash of x-user-id.
    status = _roll_to_v2(
        serve, tmp_path, "abTest", "ab", replicas=2, strategy_patch={"duration": None}
    )
    url = status["endpoint"]
    # get and status show B's share of users (it showed `-` beside weights {1: 100}).
    assert status["sticky"] == {"revision": 2, "weight": 50}
    rows = serve.cli("get", "ab", check=True).stdout.splitlines()
    assert any(r.split()[:2] == ["2", "B"] and "50% of users" in r for r in rows), rows
    assert any(r.split()[:2] == ["1", "A"] and "50%" in r for r in rows), rows
    seen: dict[str, set[str]] = defaultdict(set)
    versions: dict[str, set[str]] = defaultdict(set)
    with Client(url) as client:
        for _round in range(5):
            for user in range(200):
                reply = client.get("/", {"x-user-id": f"user-{user}"})
                assert reply.status == 200, reply
                seen[f"user-{user}"].add(reply.headers["x-changeover-revision"])
                versions[f"user-{user}"].add(reply.json()["version"])

        # 200 users × 5 requests: each user saw exactly one variant, five times.
        flapping = {u: r for u, r in seen.items() if len(r) != 1}
        assert not flapping, flapping
        assert all(len(v) == 1 for v in versions.values())
        on_b = sorted(u for u, r in seen.items() if r == {"2"})
        assert all(versions[u] == {"v2"} for u in on_b)
        share_b = len(on_b) / 200
        assert abs(share_b - 0.50) <= 0.10, f"{share_b:.2%} of users on B"

        # A header match wins over the user's bucket: users of A who ask for B get B.
        users_on_a = [u for u, r in seen.items() if r == {"1"}][:20]
        assert users_on_a
        for user in users_on_a:
            reply = client.get("/", {"x-user-id": user, "x-variant": "b"})
            assert reply.headers["x-changeover-revision"] == "2"
            assert reply.json()["version"] == "v2"
            # ... and without the header they are back on A.
            assert client.get("/", {"x-user-id": user}).headers["x-changeover-revision"] == "1"

        # Neither a key nor a match: A.
        anonymous = {client.get("/").headers["x-changeover-revision"] for _ in range(50)}
        assert anonymous == {"1"}

    # The same assignment under concurrent load: the split per request tracks the users'.
    b_users = set(on_b)
    expected_b = sum(1 for i in range(2_000) if f"user-{i % 200}" in b_users)
    report = run_load(url, 2_000, rate=400, headers_fn=lambda i: {"x-user-id": f"user-{i % 200}"})
    assert report.failures == 0, describe(report)
    assert report.by_revision.get("2", 0) == expected_b, describe(report)


def test_shadow_clients_see_only_stable_while_the_shadow_gets_its_share(
    serve: Serve, tmp_path: Path
) -> None:
    status = _roll_to_v2(
        serve,
        tmp_path,
        "shadow",
        "shadow",
        replicas=2,
        strategy_patch={"percentage": 30, "replicas": 1},
    )
    assert status["weights"] == {"1": 100}
    url = status["endpoint"]
    before = serve.metrics()

    with Client(url) as client:
        bodies = [client.get("/") for _ in range(200)]
    assert {r.status for r in bodies} == {200}
    assert {r.json()["version"] for r in bodies} == {"v1"}
    assert {r.headers["x-changeover-revision"] for r in bodies} == {"1"}
    report = run_load(url, 2_000, rate=400)
    assert report.failures == 0, describe(report)
    assert report.by_revision == {"1": 2_000}, describe(report)

    total = 2_200
    previous: list[dict[str, float]] = []

    def mirrored() -> dict[str, float] | None:
        after = serve.metrics()

        def delta(name: str, **labels: str) -> float:
            return metric_sum(after, name, rollout="shadow", **labels) - metric_sum(
                before, name, rollout="shadow", **labels
            )

        counts = {
            "sent": delta("changeover_mirror_sent_total", revision="2"),
            "dropped": delta("changeover_mirror_dropped_total", revision="2"),
            "failed": delta("changeover_mirror_failed_total", revision="2"),
            "ok": delta("changeover_mirror_responses_total", revision="2", code="2xx"),
            "served_1": delta("changeover_requests_total", revision="1"),
            "served_2": delta("changeover_requests_total", revision="2"),
        }
        # /metrics is a copy of the router process's counters made once a second, and copies
        # are answered off the hot path: settled once every client request shows and two
        # reads more than a copy apart agree.
        settled = counts["served_1"] + counts["served_2"] >= total and previous[-1:] == [counts]
        previous.append(counts)
        return counts if settled else None

    counts = wait_until(
        mirrored, within=30, interval=1.2, what="the shadow's copies to be answered"
    )
    assert counts["served_1"] == total, counts
    assert counts["served_2"] == 0, counts  # no client request was served by the shadow
    sampled = counts["sent"] + counts["dropped"] + counts["failed"]
    assert abs(sampled / total - 0.30) <= 0.02, counts
    # The shadow itself received (and answered) about its percentage.
    assert abs(counts["ok"] / total - 0.30) <= 0.03, counts
    assert counts["failed"] == 0, counts
