"""What serve and a router process say to each other, and the routing state a router
process keeps: the last call per key, replayed in order onto a fresh router."""

from __future__ import annotations

import asyncio

from changeover.dataplane import codec
from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic.builtin import BuiltinRouter
from changeover.traffic.builtin import metrics as metrics_mod

MATCH = [models.RouteMatch(header_name="x-canary", header_value=models.StringMatch(exact="1"))]


def _record(routing: codec.Routing, method: str, *args: object) -> None:
    routing.record(method, codec.encode_args(method, *args))


def test_every_setter_round_trips_through_json() -> None:
    calls: list[tuple[str, tuple[object, ...]]] = [
        ("set_weight", ({1: 70, 2: 30},)),
        ("set_header_route", ("canary", 2, MATCH)),
        ("set_sticky_split", (2, models.UserKey(header="x-user"), 10)),
        ("set_mirror_route", ("shadow", 3, 50, MATCH)),
        ("set_preview", (2,)),
        ("set_maintenance", (True, 5)),
        ("remove_managed_routes", ()),
        ("set_backends", (1, [Endpoint("127.0.0.1", 9001)])),
        ("drain", (Endpoint("127.0.0.1", 9001), 2.5)),
    ]
    for method, args in calls:
        encoded = codec.encode_args(method, *args)
        assert codec.decode_args(method, codec.json.loads(codec.json.dumps(encoded))) == args


def test_routing_keeps_the_last_state_per_key() -> None:
    routing = codec.Routing()
    _record(routing, "set_weight", {1: 100})
    _record(routing, "set_header_route", "a", 2, MATCH)
    _record(routing, "set_header_route", "b", 2, MATCH)
    _record(routing, "set_weight", {1: 50, 2: 50})
    _record(routing, "set_backends", 1, [Endpoint("127.0.0.1", 9001), Endpoint("127.0.0.1", 9002)])
    _record(routing, "drain", Endpoint("127.0.0.1", 9001), 1.0)
    _record(routing, "set_header_route", "a", None, [])
    assert [m for m, _ in routing.calls.values()] == [
        "set_weight",
        "set_header_route",
        "set_backends",
    ]
    assert routing.calls["set_weight"][1] == [{"1": 50, "2": 50}]
    assert routing.calls["backends:1"][1] == [1, [["127.0.0.1", 9002]]]
    _record(routing, "set_sticky_split", 2, models.UserKey(cookie="u"), 20)
    _record(routing, "remove_managed_routes")
    assert list(routing.calls) == ["set_weight", "backends:1"]
    again = codec.Routing.from_json(codec.json.loads(codec.json.dumps(routing.to_json())))
    assert again.calls == routing.calls


def test_a_replayed_routing_rebuilds_the_router_table() -> None:
    routing = codec.Routing()
    _record(routing, "set_backends", 2, [Endpoint("127.0.0.1", 9002)])
    _record(routing, "set_weight", {1: 60, 2: 40})
    _record(routing, "set_header_route", "canary", 2, MATCH)

    async def replay() -> BuiltinRouter:
        router = BuiltinRouter("web", port=0)
        for method, args in routing.calls.values():
            await getattr(router, method)(*codec.decode_args(method, args))
        return router

    router = asyncio.run(replay())
    assert router.weights() == {1: 60, 2: 40}
    assert router.backends() == {2: [Endpoint("127.0.0.1", 9002)]}
    assert [r.name for r in router.state.table.header_routes] == ["canary"]


def test_metrics_survive_the_trip() -> None:
    m = metrics_mod.RolloutMetrics("web")
    rev = m.revision(2)
    rev.record(200, 0.01)
    rev.record(503, 0.2)
    rev.retries = 3
    m.unrouted = 4
    into = metrics_mod.RolloutMetrics("web")
    codec.apply_metrics(codec.json.loads(codec.json.dumps(codec.encode_metrics(m))), into)
    assert into.snapshot() == m.snapshot()


def test_variant_metrics_survive_the_trip_within_their_bounds() -> None:
    m = metrics_mod.RolloutMetrics("web")
    rev = m.revision(2)
    on = metrics_mod.variant_metrics(rev.variants, "checkout", "on")
    assert on is not None
    on.record(200, 0.01)
    on.record(502, 0.3)
    into = metrics_mod.RolloutMetrics("web")
    codec.apply_metrics(codec.json.loads(codec.json.dumps(codec.encode_metrics(m))), into)
    assert into.snapshot() == m.snapshot()
    assert into.snapshot()["revisions"]["2"]["variants"]["checkout"]["on"]["requests"]["5xx"] == 1

    # a router process's answer is not trusted: 100 variant names become 15 and "other"
    data = codec.encode_metrics(m)
    one = data["revisions"]["2"]["variants"]["checkout"]["on"]
    data["revisions"]["2"]["variants"]["checkout"] = {f"v{i}": one for i in range(100)}
    codec.apply_metrics(data, into)
    shown = into.snapshot()["revisions"]["2"]["variants"]["checkout"]
    assert len(shown) == metrics_mod.MAX_VARIANTS and "v99" not in shown
    assert shown["other"]["requests"]["2xx"] == 100 - (metrics_mod.MAX_VARIANTS - 1)
