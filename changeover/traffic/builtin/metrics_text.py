"""The builtin router's metrics as Prometheus text (exposition format 0.0.4): ``/metrics``.

Reads a ``metrics.Registry`` as it is; only a scrape pays for this, never a request.
Label values that come from a spec (rollout, flag and variant names) are escaped.

    >>> registry = Registry()
    >>> registry.rollout("web").revision(2).record(200, 0.012)
    >>> 'changeover_requests_total{rollout="web",revision="2",code="2xx"} 1' in render(registry)
    True
"""

from __future__ import annotations

from typing import Any

from changeover.traffic.builtin.metrics import (
    CODE_CLASSES,
    Histogram,
    Registry,
    RevisionMetrics,
    VariantMetrics,
)

_COUNTERS: tuple[tuple[str, str, str], ...] = (
    # (metric name, RevisionMetrics attribute, help)
    ("changeover_upstream_connect_errors_total", "connect_errors", "Failed upstream connects."),
    ("changeover_upstream_retries_total", "retries", "Requests retried on another endpoint."),
    ("changeover_upstream_timeouts_total", "timeouts", "Requests answered 504."),
    ("changeover_upstream_bad_responses_total", "bad_responses", "Requests answered 502."),
    ("changeover_no_backend_total", "no_backend", "Requests answered 503: no endpoint."),
    ("changeover_client_aborts_total", "client_aborts", "Clients gone before the response."),
    ("changeover_mirror_sent_total", "mirror_sent", "Mirrored copies answered by the shadow."),
    ("changeover_mirror_dropped_total", "mirror_dropped", "Mirror copies dropped (queue full)."),
    ("changeover_mirror_failed_total", "mirror_failed", "Mirror copies that failed."),
    ("changeover_streams_total", "streams", "Streamed responses (SSE, JSON lines) ended."),
    ("changeover_streams_cut_total", "streams_cut", "Streams cut before their end."),
    ("changeover_output_tokens_total", "output_tokens", "Output tokens of streamed responses."),
    ("changeover_upgraded_connections_total", "upgraded", "Upgraded (WebSocket) connections."),
    (
        "changeover_upgraded_connections_drained_total",
        "upgraded_drained",
        "Upgraded connections closed by the router after the drain grace period.",
    ),
    (
        "changeover_upgraded_connections_idle_closed_total",
        "upgraded_idle",
        "Upgraded connections closed by the router after its idle timeout.",
    ),
)


def render(registry: Registry) -> str:
    """Every metric of ``registry`` in the Prometheus text exposition format (0.0.4)."""
    out: list[str] = []
    rows = [
        (f'rollout="{_escape(ro.name)}",revision="{rev}"', m)
        for ro in sorted(registry.rollouts.values(), key=lambda r: r.name)
        for rev, m in sorted(ro.revisions.items())
    ]

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("changeover_requests_total", "counter", "Proxied requests by status class.")
    for labels, m in rows:
        for cls, n in zip(CODE_CLASSES, m.codes[1:], strict=True):
            out.append(f'changeover_requests_total{{{labels},code="{cls}"}} {n}')
    family("changeover_requests_in_flight", "gauge", "Requests being proxied now.")
    for labels, m in rows:
        out.append(f"changeover_requests_in_flight{{{labels}}} {m.in_flight}")
    _histogram(
        out, family, "changeover_request_duration_seconds", "Request latency.", rows, "latency"
    )
    _histogram(
        out,
        family,
        "changeover_time_to_first_byte_seconds",
        "Time to response head.",
        rows,
        "ttfb",
    )
    _histogram(
        out,
        family,
        "changeover_time_to_first_token_seconds",
        "Time from request to the first token event of a stream.",
        rows,
        "ttft",
    )
    _histogram(
        out,
        family,
        "changeover_inter_token_latency_seconds",
        "Gap between consecutive token events of a stream.",
        rows,
        "itl",
    )
    _histogram(
        out,
        family,
        "changeover_stream_output_tokens",
        "Output tokens per streamed response.",
        rows,
        "tokens_per_response",
    )
    for name, attr, help_text in _COUNTERS:
        family(name, "counter", help_text)
        for labels, m in rows:
            out.append(f"{name}{{{labels}}} {getattr(m, attr)}")
    family("changeover_stream_seconds_total", "counter", "Summed duration of streams.")
    for labels, m in rows:
        out.append(f"changeover_stream_seconds_total{{{labels}}} {m.stream_seconds!r}")
    family("changeover_mirror_responses_total", "counter", "Shadow answers by status class.")
    for labels, m in rows:
        for cls, n in zip(CODE_CLASSES, m.mirror_codes[1:], strict=True):
            out.append(f'changeover_mirror_responses_total{{{labels},code="{cls}"}} {n}')
    _histogram(
        out,
        family,
        "changeover_mirror_duration_seconds",
        "Shadow latency.",
        rows,
        "mirror_latency",
    )
    _shadow_families(out, family, rows)
    _variant_families(out, family, rows)
    family("changeover_upgraded_connections_open", "gauge", "Upgraded connections open now.")
    for labels, m in rows:
        out.append(f"changeover_upgraded_connections_open{{{labels}}} {m.upgraded_open}")
    _histogram(
        out,
        family,
        "changeover_upgraded_connection_duration_seconds",
        "How long upgraded connections stayed open.",
        rows,
        "upgraded_seconds",
    )
    family("changeover_bad_requests_total", "counter", "Malformed requests answered 400.")
    for ro in sorted(registry.rollouts.values(), key=lambda r: r.name):
        out.append(
            f'changeover_bad_requests_total{{rollout="{_escape(ro.name)}"}} ' + str(ro.bad_requests)
        )
    family("changeover_maintenance_responses_total", "counter", "Maintenance-page answers.")
    for ro in sorted(registry.rollouts.values(), key=lambda r: r.name):
        out.append(
            f'changeover_maintenance_responses_total{{rollout="{_escape(ro.name)}"}} '
            + str(ro.maintenance)
        )
    return "\n".join(out) + "\n"


def _shadow_families(out: list[str], family: Any, rows: list[tuple[str, RevisionMetrics]]) -> None:
    """A shadow revision's comparisons with its primary (``comparison.stats.ShadowStats``):
    rows only for revisions compared as a shadow."""
    shadows = [(labels, m.shadow) for labels, m in rows if m.shadow is not None]
    for name, attr, help_text in (
        ("changeover_shadow_compared_total", "compared", "Shadow answers compared."),
        ("changeover_shadow_matched_total", "matched", "Compared shadow answers that matched."),
        ("changeover_shadow_errors_total", "shadow_errors", "Compared shadow answers 5xx or none."),
    ):
        family(name, "counter", help_text)
        for labels, found in shadows:
            out.append(f"{name}{{{labels}}} {int(getattr(found, attr))}")
    for name, attr, label, help_text in (
        (
            "changeover_shadow_mismatched_total",
            "mismatched",
            "kind",
            "Compared shadow answers that differ, by kind (a pair may differ in several).",
        ),
        (
            "changeover_shadow_not_compared_total",
            "not_compared",
            "reason",
            "Mirrored requests not compared, by reason.",
        ),
    ):
        family(name, "counter", help_text)
        for labels, found in shadows:
            for key, n in sorted(getattr(found, attr).items()):
                out.append(f'{name}{{{labels},{label}="{_escape(str(key))}"}} {int(n)}')


def _variant_families(out: list[str], family: Any, rows: list[tuple[str, RevisionMetrics]]) -> None:
    """Per flag the router evaluates and variant it passed (names escaped: they come from
    a spec)."""
    variants = [
        (f'{labels},flag="{_escape(flag)}",variant="{_escape(variant)}"', m)
        for labels, rm in rows
        for flag, per_flag in sorted(rm.variants.items())
        for variant, m in sorted(per_flag.items())
    ]
    name = "changeover_variant_requests_total"
    family(name, "counter", "Proxied requests by flag variant and status class.")
    for labels, m in variants:
        for cls, n in zip(CODE_CLASSES, m.codes[1:], strict=True):
            out.append(f'{name}{{{labels},code="{cls}"}} {n}')
    _histogram(
        out,
        family,
        "changeover_variant_request_duration_seconds",
        "Request latency by flag variant.",
        variants,
        "latency",
    )


def _histogram(
    out: list[str],
    family: Any,
    name: str,
    help_text: str,
    rows: list[tuple[str, RevisionMetrics]] | list[tuple[str, VariantMetrics]],
    attr: str,
) -> None:
    family(name, "histogram", help_text)
    for labels, m in rows:
        h: Histogram = getattr(m, attr)
        for bound, n in zip([*map(_le, h.bounds), "+Inf"], h.cumulative(), strict=True):
            out.append(f'{name}_bucket{{{labels},le="{bound}"}} {n}')
        out.append(f"{name}_sum{{{labels}}} {h.sum!r}")
        out.append(f"{name}_count{{{labels}}} {h.count}")


def _le(bound: float) -> str:
    return repr(bound)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
