"""The haproxy router's pure parts: desired state → maps and slots, config, metrics, lint."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from pathlib import Path

import pytest

from changeover import errors, validation
from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic import base
from changeover.traffic.builtin.metrics import RolloutMetrics
from changeover.traffic.haproxy import (
    CAPABILITIES,
    config,
    desired,
    haproxy_process,
    metrics_feed,
    runtime_api,
)

LAYOUT = config.Layout(host="127.0.0.1", port=8080, slots=2, servers=2)


def ep(port: int) -> Endpoint:
    return Endpoint("127.0.0.1", port)


def header(name: str, **value: str) -> models.RouteMatch:
    return models.RouteMatch.model_validate({"headerName": name, "headerValue": value})


# --- capabilities and lint ---------------------------------------------------------------


def test_capabilities_are_everything_but_mirroring() -> None:
    assert base.Capability.MIRROR not in CAPABILITIES
    assert base.capabilities_of("haproxy") == CAPABILITIES
    assert {base.Capability.WEIGHTS, base.Capability.STICKY} <= CAPABILITIES


ROLLOUT = """
apiVersion: changeover.dev/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  template: {command: [python3, app.py]}
  service: {port: 18080}
  traffic: {haproxy: {}}
  strategy:
    canary:
      steps:
        - setWeight: 10
        - setHeaderRoute: {name: beta, match: [{headerName: x-variant, headerValue: {exact: b}}]}
        - setMirrorRoute: {name: shadow, percentage: 50}
"""


def test_lint_rejects_mirroring_on_haproxy(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(ROLLOUT)
    with pytest.raises(errors.SpecError) as caught:
        validation.read(path)
    problems = caught.value.problems
    assert len(problems) == 1, problems
    assert problems[0].path == "spec.strategy.canary.steps[2].setMirrorRoute"
    assert problems[0].message.startswith("setMirrorRoute needs a router with mirroring: builtin")
    assert problems[0].message.endswith("(this rollout uses 'haproxy')")


def test_lint_accepts_everything_else_on_haproxy(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(
        ROLLOUT.replace("        - setMirrorRoute: {name: shadow, percentage: 50}\n", "")
    )
    specs = validation.read(path)
    assert [r.spec.traffic.router for r in specs.rollouts] == ["haproxy"]


# --- desired state -------------------------------------------------------------------------


def test_weights_become_server_weights_in_the_weighted_backend() -> None:
    d = desired.Desired()
    d.backends = {1: [ep(9001)], 2: [ep(9002)]}
    d.weights = {1: 90, 2: 10}
    rt = d.plan(LAYOUT)
    assert rt.slot_of == {1: 0, 2: 1}
    assert rt.weights == ((90, 0), (10, 0))  # HAProxy's round-robin over w/b0s0, w/b1s0
    assert rt.maps["slots"] == (("b0", "1"), ("b1", "2"))
    # The revision header of weighted requests: server id → revision.
    assert rt.maps["servers"] == (("1", "1"), ("3", "2"))
    assert rt.servers[0][0] == desired.ServerSlot(ep(9001), "ready")
    assert rt.servers[1][1] == desired.ServerSlot()


def test_a_revisions_weight_is_split_over_its_ready_replicas() -> None:
    d = desired.Desired()
    d.backends = {1: [ep(9001), ep(9003)], 2: [ep(9002)]}
    d.weights = {1: 90, 2: 10}
    assert d.plan(LAYOUT).weights == ((45, 45), (10, 0))
    # A draining replica takes no new weighted requests: its revision's share stays whole.
    d.draining = {ep(9003)}
    assert d.plan(LAYOUT).weights == ((90, 0), (10, 0))
    # Maintenance: no weight anywhere (w's backup answers with the maintenance page).
    d.maintenance = 30
    assert d.plan(LAYOUT).weights == ((0, 0), (0, 0))


def test_slots_are_stable_and_the_least_recently_freed_is_reused() -> None:
    d = desired.Desired()
    d.backends = {1: [ep(9001)], 2: [ep(9002)]}
    d.plan(LAYOUT)
    del d.backends[1]  # revision 1 retires: slot 0 is freed
    d.backends[3] = [ep(9003)]
    assert d.plan(LAYOUT).slot_of == {2: 1, 3: 0}
    # A replica keeps its server line; a new one takes a line never used before.
    d.backends[2] = [ep(9002), ep(9004)]
    rt = d.plan(LAYOUT)
    assert rt.servers[1] == (
        desired.ServerSlot(ep(9002), "ready"),
        desired.ServerSlot(ep(9004), "ready"),
    )


def test_more_revisions_or_replicas_than_slots_grow_the_layout() -> None:
    d = desired.Desired()
    d.backends = {1: [ep(9001), ep(9002), ep(9003)], 2: [ep(9004)], 3: [ep(9005)]}
    grown = d.needed_layout(LAYOUT)
    assert (grown.slots, grown.servers) == (4, 4)
    assert d.needed_layout(grown) == grown


def test_routes_and_sticky_need_rules_in_the_layout() -> None:
    d = desired.Desired()
    d.backends = {1: [ep(9001)], 2: [ep(9002)]}
    d.routes = [desired.Route("beta", 2, (desired.compile_match(header("X-Variant", exact="b")),))]
    d.sticky = desired.Sticky(2, "hdr", "x-user-id", 30)
    layout = d.needed_layout(LAYOUT)
    assert layout.rules == (config.MatchRule("hdr", "x-variant", "str"),)
    assert layout.sticky == ("hdr", "x-user-id")
    rt = d.plan(layout)
    assert rt.maps["route-hdr-x-variant-str"] == (("b", "b1"),)
    assert rt.maps["sticky"] == tuple((str(b), "b1") for b in range(30))
    # Removing the routes keeps the rules (no reload) and empties their maps.
    d.routes, d.sticky = [], None
    assert d.needed_layout(layout) == layout
    rt = d.plan(layout)
    assert rt.maps["route-hdr-x-variant-str"] == () and rt.maps["sticky"] == ()


@pytest.mark.parametrize(
    ("value", "kind", "key"),
    [
        ({"exact": "b"}, "str", "b"),
        ({"prefix": "beta"}, "beg", "beta"),
        ({"regex": "b[0-9]+"}, "reg", "^(?:b[0-9]+)$"),
        ({"exact": "two words"}, "reg", r"^two\x20words$"),
        ({"prefix": "#x"}, "reg", r"^\#x"),
    ],
)
def test_matches_compile_to_map_keys(value: dict[str, str], kind: str, key: str) -> None:
    rule, got = desired.compile_match(header("X-V", **value))
    assert (rule.kind, got) == (kind, key)


# --- configuration -------------------------------------------------------------------------


def test_rendered_configuration_is_valid_haproxy(tmp_path: Path) -> None:
    paths = config.Paths(tmp_path)
    layout = config.Layout(
        host="127.0.0.1",
        port=18080,
        preview_port=18081,
        slots=2,
        servers=2,
        rules=(
            config.MatchRule("hdr", "x-variant", "str"),
            config.MatchRule("cook", "tier", "reg"),
        ),
        sticky=("cook", "uid"),
        nbthread=1,
    )
    for name in (*config.MAP_NAMES, *map(config.rule_map_name, layout.rules)):
        paths.map(name).write_text("")
    for name in config.ACL_NAMES:
        paths.acl(name).write_text("0:999\n")
    paths.maintenance_page.write_text(config.maintenance_http())
    text = config.render(layout, paths, servers=[[ep(9001), None], [None, None]])
    paths.config.write_text(text)
    done = subprocess.run(
        [haproxy_process.find_binary(), "-c", "-f", str(paths.config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "option http-no-delay" in text
    assert "server s0 127.0.0.1:9001\n" in text and "server s1 127.0.0.1:1 disabled" in text


def test_only_the_rules_a_rollout_uses_are_rendered(tmp_path: Path) -> None:
    paths = config.Paths(tmp_path)
    plain = config.Layout(host="127.0.0.1", port=18080, slots=2, servers=1)
    text = config.render(plain, paths, servers=[[ep(9001)], [None]], weights=[[100], [0]])
    frontend = text[text.index("frontend web") : text.index("frontend fallback")]
    # Weights only: no route or sticky lookup, HAProxy's round-robin over w.
    assert "use_backend" not in frontend and "default_backend w" in frontend
    assert "server b0s0 127.0.0.1:9001 id 1 weight 100\n" in text
    routed = dataclasses.replace(
        plain, rules=(config.MatchRule("hdr", "x-canary", "str"),), sticky=("hdr", "x-user-id")
    )
    text = config.render(routed, paths, servers=[[ep(9001)], [None]])
    frontend = text[text.index("frontend web") : text.index("frontend fallback")]
    lines = [ln.strip() for ln in frontend.splitlines() if ln.strip()]
    # The client's trust headers replaced, then the route (first match wins), then the
    # sticky split, each guarded by its header's presence, then the weights.
    assert lines[3:5] == [rule.strip() for rule in config.TRUST_RULES]
    assert lines[5:] == [
        "use_backend %[req.fhdr(x-canary,1),map_str("
        f"{paths.map('route-hdr-x-canary-str')})] if {{ req.hdr(x-canary) -m found }}",
        f"use_backend %[req.fhdr(x-user-id,1),crc32,mod(100),map({paths.map('sticky')})] "
        "if { req.hdr(x-user-id) -m found }",
        "default_backend w",
    ]


def test_the_log_sample_is_one_range_of_rand_1000() -> None:
    d = desired.Desired()
    layout = config.Layout(host="127.0.0.1", port=8080, slots=1, servers=1)
    assert d.plan(layout).acls == {"logsample": ("0:999",)}  # every request
    d.log_every = 200
    assert d.plan(layout).acls == {"logsample": ("0:4",)}  # 5 of 1,000


# --- metrics -------------------------------------------------------------------------------


def test_stats_growth_goes_to_the_slots_current_revision_and_survives_a_restart() -> None:
    rm = RolloutMetrics("web")
    tr = metrics_feed.StatsTranslator(rm)

    def row(px: str, ok: int, bad: int = 0) -> dict[str, str]:
        return {"pxname": px, "svname": "BACKEND", "hrsp_2xx": str(ok), "hrsp_5xx": str(bad)}

    tr.update([row("b0", 10, 1), row("b1", 5)], {"b0": 1, "b1": 2})
    tr.update([row("b0", 15, 1), row("b1", 5)], {"b0": 1, "b1": 2})
    assert (rm.revision(1).codes[2], rm.revision(1).codes[5], rm.revision(2).codes[2]) == (15, 1, 5)
    # A reload restarts HAProxy's counters: 3 is three new requests, not minus twelve.
    tr.update([row("b0", 3)], {"b0": 1})
    assert rm.revision(1).codes[2] == 18
    # Slot b1 now serves revision 3: what it serves from now on is revision 3's.
    tr.update([row("b0", 3), row("b1", 9)], {"b0": 1, "b1": 3})
    assert rm.revision(3).codes[2] == 4 and rm.revision(2).codes[2] == 5
    tr.update([{"pxname": "maintenance", "svname": "BACKEND", "hrsp_5xx": "2"}], {})
    assert rm.maintenance == 2


def test_weighted_requests_are_counted_on_the_weighted_backends_server_lines() -> None:
    rm = RolloutMetrics("web")
    tr = metrics_feed.StatsTranslator(rm)

    def row(px: str, sv: str, ok: int, scur: int = 0) -> dict[str, str]:
        return {"pxname": px, "svname": sv, "hrsp_2xx": str(ok), "scur": str(scur)}

    # Replicas 0 and 1 of slot b0 in w, plus the requests routed to b0 by a header.
    rows = [row("w", "b0s0", 40, 1), row("w", "b0s1", 50, 2), row("b0", "BACKEND", 7, 1)]
    rows += [row("w", "fallback", 3), row("w", "BACKEND", 100)]  # not a revision's
    tr.update(rows, {"b0": 4})
    assert rm.revision(4).codes[2] == 97 and rm.revision(4).in_flight == 4


def test_log_lines_fill_latency_histograms_weighted_by_the_sample() -> None:
    rm = RolloutMetrics("web")
    reader = metrics_feed.LogReader(Path("/nonexistent"), rm, {"b0": 7}.get, weight=10)
    reader.observe(b"b0 200 12 0 1 10\n")
    reader.observe(b"b9 200 12 0 1 10\n")  # a free slot: ignored
    assert rm.revision(7).latency.count == 10
    assert rm.revision(7).ttfb.count == 10
    assert rm.revision(7).latency.sum == pytest.approx(0.12)


# --- runtime API ---------------------------------------------------------------------------


async def test_a_poll_cancelled_just_as_haproxy_answers_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python 3.11's ``asyncio.wait_for`` hands back the answer to a task cancelled as the
    answer arrives, dropping the cancellation: the router's metrics poll polled on and its
    close() waited forever. Given a cancel landing with the answer, the poll stops."""
    api = runtime_api.RuntimeAPI(Path("/nonexistent.sock"))
    polls = 0

    async def exchange(data: bytes) -> str:
        if polls == 0:
            asyncio.get_running_loop().call_soon(poll.cancel)  # lands with the answer
        return ""

    monkeypatch.setattr(api, "_exchange", exchange)

    async def poll_forever() -> None:
        nonlocal polls
        while True:
            await api.command("show info")
            polls += 1
            await asyncio.sleep(0.01)

    poll = asyncio.create_task(poll_forever())
    try:
        await asyncio.wait({poll}, timeout=1.0)
        assert poll.cancelled() and polls == 1
    finally:
        poll.cancel()
