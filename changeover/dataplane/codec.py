"""What ``serve`` and a router process say to each other: JSON lines over a Unix socket.

One request per connection: ``{"op": ..., ...}\\n`` answered by ``{"ok": true, "value": ...}``
or ``{"ok": false, "error": "...", "permanent": bool}``. JSON, not pickle: a router process
may outlive (and so be older or newer than) the ``serve`` that talks to it.

The ``TrafficRouter`` setters travel as ``{"op": "call", "method": name, "args": [...]}``
with their arguments in plain JSON (``encode_args``/``decode_args``); metrics as the
counters of ``builtin.metrics.RolloutMetrics`` (``encode_metrics``/``apply_metrics``).

``Routing`` is the routing state a router process keeps on disk: the last call per key
(weights, each header route, sticky split, each mirror, preview, maintenance, each
revision's backends, each flag), replayed in order onto a fresh router.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from changeover.endpoints import Endpoint
from changeover.spec import models
from changeover.traffic.builtin import metrics as metrics_mod
from changeover.traffic.comparison import stats as shadow_stats

METHODS = (
    "set_weight",
    "set_header_route",
    "set_sticky_split",
    "set_mirror_route",
    "set_preview",
    "set_maintenance",
    "remove_managed_routes",
    "set_backends",
    "drain",
    "set_flag",
)

MAX_LINE = 16 * 1024 * 1024  # a request or an answer (metrics of many revisions) fits


def _matches(value: Any) -> list[Any]:
    return [models.RouteMatch.model_validate(m) for m in value]


def _endpoint(value: Any) -> Endpoint:
    host, port = value
    return Endpoint(str(host), int(port))


def _user_key(value: Any) -> models.UserKey | None:
    return None if value is None else models.UserKey.model_validate(value)


def _compare(rest: list[Any]) -> tuple[models.MirrorCompare, ...]:
    """The optional fifth argument of ``set_mirror_route`` (absent from older callers)."""
    if not rest or rest[0] is None:
        return ()
    return (models.MirrorCompare.model_validate(rest[0]),)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


# method → (encode the Python arguments, decode them back)
_Codec = tuple[Callable[..., list[Any]], Callable[[list[Any]], tuple[Any, ...]]]
_CODECS: dict[str, _Codec] = {
    "set_weight": (
        lambda w: [{str(k): int(v) for k, v in w.items()}],
        lambda a: ({int(k): int(v) for k, v in a[0].items()},),
    ),
    "set_header_route": (
        lambda name, rev, match: [name, rev, [m.to_json_dict() for m in match]],
        lambda a: (str(a[0]), _opt_int(a[1]), _matches(a[2])),
    ),
    "set_sticky_split": (
        lambda rev, key, weight: [rev, None if key is None else key.to_json_dict(), weight],
        lambda a: (_opt_int(a[0]), _user_key(a[1]), int(a[2])),
    ),
    "set_mirror_route": (
        lambda name, rev, pct, match, compare=None: [
            name,
            rev,
            pct,
            [m.to_json_dict() for m in match],
            None if compare is None else compare.to_json_dict(),
        ],
        lambda a: (str(a[0]), _opt_int(a[1]), int(a[2]), _matches(a[3]), *_compare(a[4:])),
    ),
    "set_preview": (lambda rev: [rev], lambda a: (_opt_int(a[0]),)),
    "set_maintenance": (
        lambda on, retry: [bool(on), int(retry)],
        lambda a: (bool(a[0]), int(a[1])),
    ),
    "remove_managed_routes": (lambda: [], lambda a: ()),
    "set_backends": (
        lambda rev, eps: [rev, [[e.host, e.port] for e in eps]],
        lambda a: (int(a[0]), [_endpoint(e) for e in a[1]]),
    ),
    "drain": (
        lambda ep, grace: [[ep.host, ep.port], float(grace)],
        lambda a: (_endpoint(a[0]), float(a[1])),
    ),
    # A flag evaluated per request: its served spec (camelCase JSON), None to stop.
    "set_flag": (
        lambda name, spec: [name, spec],
        lambda a: (str(a[0]), None if a[1] is None else dict(a[1])),
    ),
}


def encode_args(method: str, *args: Any) -> list[Any]:
    return _CODECS[method][0](*args)


def decode_args(method: str, args: Any) -> tuple[Any, ...]:
    """The Python arguments of ``method`` from JSON; ValueError/KeyError/TypeError if bad."""
    if method not in _CODECS or not isinstance(args, list):
        raise ValueError(f"unknown router call {method!r}")
    return _CODECS[method][1](args)


def dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


# --- the routing state a router process keeps --------------------------------------------


class Routing:
    """The last call per key, in the order first made: enough to rebuild a router."""

    def __init__(self, calls: list[tuple[str, list[Any]]] | None = None) -> None:
        self.calls: dict[str, tuple[str, list[Any]]] = {}
        for method, args in calls or []:
            self.record(method, args)

    def record(self, method: str, args: list[Any]) -> None:
        """Remember the (encoded) call ``method(args)`` as the new state of its key."""
        if method == "remove_managed_routes":
            for key in [k for k in self.calls if k.split(":")[0] in ("header", "mirror")]:
                del self.calls[key]
            self.calls.pop("sticky", None)
            return
        if method == "drain":
            gone = args[0]
            for key, (m, a) in list(self.calls.items()):
                if m == "set_backends":
                    self.calls[key] = (m, [a[0], [e for e in a[1] if e != gone]])
            return
        key, removes = _key(method, args)
        if removes:
            self.calls.pop(key, None)
        else:
            self.calls[key] = (method, args)

    def to_json(self) -> list[list[Any]]:
        return [[m, a] for m, a in self.calls.values()]

    @classmethod
    def from_json(cls, data: Any) -> Routing:
        if not isinstance(data, list):
            raise ValueError("routing state: expected a list of calls")
        return cls([(str(m), list(a)) for m, a in data])


def _key(method: str, args: list[Any]) -> tuple[str, bool]:
    """(the key a call sets, whether it removes that key instead)."""
    if method == "set_header_route":
        return f"header:{args[0]}", args[1] is None or not args[2]
    if method == "set_mirror_route":
        return f"mirror:{args[0]}", args[1] is None or int(args[2]) <= 0
    if method == "set_sticky_split":
        return "sticky", args[0] is None or args[1] is None
    if method == "set_backends":
        return f"backends:{args[0]}", not args[1]
    if method == "set_flag":
        return f"flag:{args[0]}", args[1] is None
    return method, False


# --- metrics ---------------------------------------------------------------------------


def _hist(h: metrics_mod.Histogram) -> dict[str, Any]:
    out = {"counts": list(h.counts), "sum": h.sum, "count": h.count}
    if h.sketch is not None:
        out["sketch"] = [[k, n] for k, n in h.sketch.bins.items()]
    return out


def _set_hist(h: metrics_mod.Histogram, data: dict[str, Any]) -> None:
    counts = [int(c) for c in data["counts"]]
    if len(counts) == len(h.counts):
        h.counts = counts
        h.sum = float(data["sum"])
        h.count = int(data["count"])
    pairs = data.get("sketch")
    if h.sketch is not None and isinstance(pairs, list):
        h.sketch.set_bins(pairs)


_PLAIN = metrics_mod.PLAIN_COUNTERS


def encode_metrics(m: metrics_mod.RolloutMetrics) -> dict[str, Any]:
    revisions = {}
    for rev, r in m.revisions.items():
        revisions[str(rev)] = {
            **{name: getattr(r, name) for name in _PLAIN},
            "codes": list(r.codes),
            "mirror_codes": list(r.mirror_codes),
            "latency": _hist(r.latency),
            "ttfb": _hist(r.ttfb),
            "mirror_latency": _hist(r.mirror_latency),
            "shadow": None if r.shadow is None else r.shadow.to_json(),
            "ttft": _hist(r.ttft),
            "itl": _hist(r.itl),
            "tokens_per_response": _hist(r.tokens_per_response),
            "stream_seconds": r.stream_seconds,
            "upgraded_seconds": _hist(r.upgraded_seconds),
            "variants": {
                flag: {
                    v: {"codes": list(m.codes), "latency": _hist(m.latency)} for v, m in vs.items()
                }
                for flag, vs in r.variants.items()
            },
        }
    return {
        "revisions": revisions,
        "bad_requests": m.bad_requests,
        "maintenance": m.maintenance,
        "unrouted": m.unrouted,
    }


def _set_variants(r: metrics_mod.RevisionMetrics, data: object) -> None:
    """A router process's per-variant counters, kept within ``metrics_mod``'s bounds (its
    answer is checked, never trusted)."""
    if not isinstance(data, dict):
        return
    for flag, per_flag in data.items():
        if not isinstance(per_flag, dict):
            continue
        for variant, d in per_flag.items():
            m = metrics_mod.variant_metrics(r.variants, str(flag), str(variant))
            if m is None or not isinstance(d, dict):
                continue
            codes = [int(c) for c in d.get("codes", [])][:6]
            m.codes = [a + b for a, b in zip(m.codes, codes + [0] * (6 - len(codes)), strict=True)]
            if isinstance(d.get("latency"), dict):
                found = metrics_mod.VariantMetrics()
                _set_hist(found.latency, d["latency"])
                m.latency.add(found.latency)


def apply_metrics(data: dict[str, Any], into: metrics_mod.RolloutMetrics) -> None:
    """Replace ``into``'s counters with a router process's (its totals since it started)."""
    revisions: dict[int, metrics_mod.RevisionMetrics] = {}
    for rev, d in data["revisions"].items():
        r = metrics_mod.RevisionMetrics()
        for name in _PLAIN:
            # .get: a router process started by an older changeover lacks newer counters.
            setattr(r, name, int(d.get(name, 0)))
        r.codes = [int(c) for c in d["codes"]][:6] + [0] * max(0, 6 - len(d["codes"]))
        r.mirror_codes = [int(c) for c in d["mirror_codes"]][:6] + [0] * max(
            0, 6 - len(d["mirror_codes"])
        )
        _set_hist(r.latency, d["latency"])
        _set_hist(r.ttfb, d["ttfb"])
        _set_hist(r.mirror_latency, d["mirror_latency"])
        if isinstance(d.get("shadow"), dict):
            r.shadow = shadow_stats.ShadowStats.from_json(d["shadow"])
        _set_hist(r.ttft, d["ttft"])
        _set_hist(r.itl, d["itl"])
        _set_hist(r.tokens_per_response, d["tokens_per_response"])
        r.stream_seconds = float(d["stream_seconds"])
        if "upgraded_seconds" in d:
            _set_hist(r.upgraded_seconds, d["upgraded_seconds"])
        _set_variants(r, d.get("variants"))
        revisions[int(rev)] = r
    into.revisions.clear()
    into.revisions.update(revisions)
    into.bad_requests = int(data["bad_requests"])
    into.maintenance = int(data["maintenance"])
    into.unrouted = int(data["unrouted"])
