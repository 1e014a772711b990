"""A flag in the builtin router's table: the header line it writes per request, and its
place in the routing state a router process keeps (``dataplane.codec``)."""

from __future__ import annotations

from changeover.dataplane import codec
from changeover.traffic.builtin import router, table

SPEC = {
    "type": "boolean",
    "variants": {"on": True, "off": False},
    "defaultVariant": "off",
    "rules": [{"when": [{"attribute": "plan", "in": ["beta"]}], "variant": "on"}],
    "split": [{"variant": "on", "weight": 20}],
    "requestContext": {"targetingKey": {"header": "X-User"}, "plan": {"cookie": "plan"}},
    "router": {"rollout": "web", "header": "X-Flag-Checkout"},
}


def test_the_line_comes_from_the_request_headers_and_cookies() -> None:
    route = router._flag_route("checkout", SPEC)
    assert route.header == b"x-flag-checkout"
    tbl = table.RoutingTable().replace(flags=(route,))
    assert tbl.flag_headers == frozenset({b"x-flag-checkout"})
    assert tbl.needs_headers and tbl.needs_cookies
    # trent is in bucket 18 (on at 20%), judy in 99
    assert route.line({b"x-user": b"trent"}, {}) == b"x-flag-checkout: on\r\n"
    assert route.line({b"x-user": b"judy"}, {}) == b"x-flag-checkout: off\r\n"
    assert route.line({b"x-user": b"judy"}, {b"plan": b"beta"}) == b"x-flag-checkout: on\r\n"
    assert route.line({}, {}) == b"x-flag-checkout: off\r\n"
    assert b"x\\-user" in tbl.request_fields.pattern  # the context header is read


def test_a_router_process_keeps_the_last_flag_call_per_flag() -> None:
    routing = codec.Routing()
    args = codec.encode_args("set_flag", "checkout", SPEC)
    assert codec.decode_args("set_flag", args) == ("checkout", SPEC)
    routing.record("set_flag", args)
    routing.record("set_flag", codec.encode_args("set_flag", "other", SPEC))
    assert [a[0] for m, a in routing.calls.values() if m == "set_flag"] == ["checkout", "other"]
    routing.record("set_flag", codec.encode_args("set_flag", "checkout", None))
    assert [a[0] for m, a in routing.calls.values() if m == "set_flag"] == ["other"]
