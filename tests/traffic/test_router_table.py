"""The routing table on its own: exact weights, matchers, sticky buckets, mirror sampling."""

from __future__ import annotations

import collections

import pytest

from changeover.spec import models
from changeover.traffic.builtin import table


@pytest.mark.parametrize(
    "weights", [{1: 90, 2: 10}, {1: 33, 2: 67}, {1: 1, 2: 99}, {1: 50, 2: 25, 3: 25}]
)
def test_every_100_slots_carry_the_exact_weights(weights: dict[int, int]) -> None:
    wheel = table.build_wheel(weights)
    assert collections.Counter(wheel) == weights
    # Spread out: no window of 10 consecutive slots strays more than a slot or two.
    for start in range(0, 100, 10):
        window = collections.Counter(wheel[start : start + 10])
        for rev, w in weights.items():
            assert abs(window[rev] - w / 10) <= 1.5


def test_zero_weights_leave_the_wheel_empty() -> None:
    assert table.build_wheel({1: 0}) == ()
    assert table.RoutingTable().with_weights({1: 100, 2: 0}).weights == ((1, 100),)


def test_routes_come_before_sticky_before_weights() -> None:
    exact = models.RouteMatch(header_name="X-A", header_value=models.StringMatch(exact="1"))
    t = table.RoutingTable().with_weights({1: 100})
    t = t.replace(
        header_routes=(table.HeaderRoute("a", 3, table.compile_matchers([exact])),),
        sticky=table.StickySplit(revision=2, header=b"x-user", cookie=None, weight=100),
    )
    assert t.needs_headers and not t.needs_cookies
    assert t.match({b"x-a": b"1", b"x-user": b"u"}, {}) == 3
    assert t.match({b"x-user": b"u"}, {}) == 2
    assert t.match({}, {}) is None  # the proxy then reads the wheel


def test_mirror_sampling_is_exact() -> None:
    route = table.MirrorRoute(name="m", revision=2, percentage=30, matchers=())
    assert sum(route.sample() for _ in range(1000)) == 300
    assert [route.sample() for _ in range(4)].count(True) >= 1


def test_buckets_are_stable_and_spread() -> None:
    assert table.bucket(b"user-1") == table.bucket(b"user-1")
    counts = collections.Counter(table.bucket(b"user-%d" % i) < 20 for i in range(5000))
    assert 0.17 <= counts[True] / 5000 <= 0.23


def test_cookie_parsing() -> None:
    assert table.parse_cookies(b'a=1; b="two" ;c=3; a=9') == {b"a": b"1", b"b": b"two", b"c": b"3"}
    assert table.parse_cookies(None) == {}
