"""Flagger's analysis metrics → changeover metrics written inline in the Rollout's analysis.

Flagger checks every metric once per ``analysis.interval`` and rolls back after
``threshold`` failed checks. A metric is either built in (``request-success-rate``,
``request-duration``: Prometheus queries Flagger picks by mesh provider, against its
``-metrics-server``, default ``http://prometheus:9090``) or names a ``MetricTemplate``
(``templateRef``) whose query holds ``{{ namespace }}``, ``{{ target }}``,
``{{ interval }}`` and ``{{ variables.x }}``. Both become Prometheus metrics here with
those placeholders filled in from the Canary, so each check means what it meant:

    - name: request-success-rate          →  - name: request-success-rate
      thresholdRange: {min: 99}                 interval: 15s        # analysis.interval
      interval: 1m                              failureLimit: 4      # threshold - 1
                                                successCondition: result >= 99
                                                provider: {prometheus: {address, query}}

``metric.interval`` is the query's range (``[1m]``), not how often it runs. Called by
``importers.flagger`` only.
"""

from __future__ import annotations

import re
from typing import Any

from changeover.spec.importers.report import Notes

JSON = dict[str, Any]
DEFAULT_ADDRESS = "http://prometheus:9090"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}")

# Flagger's built-in checks per provider family (its metrics observers), as PromQL with
# Flagger's placeholders. Success rate is a percentage; duration is P99 in milliseconds.
_ISTIO = (
    'sum(rate(istio_requests_total{{reporter="destination",'
    'destination_workload_namespace="{{{{ namespace }}}}",'
    'destination_workload=~"{{{{ target }}}}"{extra}}}[{{{{ interval }}}}]))'
)
_ENVOY = (
    "sum(rate(envoy_cluster_upstream_rq{{envoy_cluster_name=~"
    '"{{{{ namespace }}}}_{{{{ target }}}}-canary_[0-9a-zA-Z-]+"{extra}}}[{{{{ interval }}}}]))'
)
_NGINX = (
    'sum(rate(nginx_ingress_controller_requests{{namespace="{{{{ namespace }}}}",'
    'ingress="{{{{ ingress }}}}",canary!=""{extra}}}[{{{{ interval }}}}]))'
)
_HTTP = (
    'sum(rate(http_request_duration_seconds_count{{kubernetes_namespace="{{{{ namespace }}}}",'
    'kubernetes_pod_name=~"{{{{ target }}}}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"{extra}}}'
    "[{{{{ interval }}}}]))"
)


def _rate(counter: str, status: str) -> str:
    ok = counter.format(extra=f',{status}!~"5.*"')
    return f"{ok} / {counter.format(extra='')} * 100"


BUILTIN: dict[str, dict[str, str]] = {
    "istio": {
        "request-success-rate": _rate(_ISTIO, "response_code"),
        "request-duration": (
            "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{"
            'reporter="destination",destination_workload_namespace="{{ namespace }}",'
            'destination_workload=~"{{ target }}"}[{{ interval }}])) by (le))'
        ),
    },
    "envoy": {
        "request-success-rate": _rate(_ENVOY, "envoy_response_code"),
        "request-duration": (
            "histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{"
            'envoy_cluster_name=~"{{ namespace }}_{{ target }}-canary_[0-9a-zA-Z-]+"}'
            "[{{ interval }}])) by (le))"
        ),
    },
    "nginx": {
        "request-success-rate": _rate(_NGINX, "status"),
        "request-duration": (
            "sum(rate(nginx_ingress_controller_response_duration_seconds_sum{"
            'namespace="{{ namespace }}",ingress="{{ ingress }}",canary!=""}'
            "[{{ interval }}])) / sum(rate(nginx_ingress_controller_response_duration_seconds_"
            'count{namespace="{{ namespace }}",ingress="{{ ingress }}",canary!=""}'
            "[{{ interval }}])) * 1000"
        ),
    },
    "http": {
        "request-success-rate": _rate(_HTTP, "status"),
        "request-duration": (
            "histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{"
            'kubernetes_namespace="{{ namespace }}",kubernetes_pod_name=~'
            '"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[{{ interval }}])) by (le)) * 1000'
        ),
    },
}
_FAMILY = {"istio": "istio", "gatewayapi": "envoy", "contour": "envoy", "gloo": "envoy"}
_FAMILY |= {"nginx": "nginx"}


def family(provider: str) -> str:
    """Which built-in queries a Flagger provider uses (``http``: the app's own metrics)."""
    return _FAMILY.get(provider.split(":")[0], "http")


def fill(query: str, values: dict[str, str]) -> tuple[str, list[str]]:
    """Flagger's placeholders filled in; the names of those left unknown."""
    unknown: list[str] = []

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        unknown.append(key)
        return match.group(0)

    return _PLACEHOLDER.sub(one, query), unknown


def condition(threshold: JSON) -> str | None:
    """``thresholdRange: {min: 99}`` → ``result >= 99``; both bounds → both tests."""
    parts = []
    if threshold.get("min") is not None:
        parts.append(f"result >= {threshold['min']}")
    if threshold.get("max") is not None:
        parts.append(f"result <= {threshold['max']}")
    return " && ".join(parts) or None


_METRIC_KEYS = {"name", "interval", "thresholdRange", "templateRef", "templateVariables", "query"}


def convert(
    metric: JSON,
    path: str,
    notes: Notes,
    *,
    values: dict[str, str],
    provider: str,
    templates: dict[str, JSON],
) -> JSON | None:
    """One Flagger metric as a changeover metric without interval/count/failureLimit (the
    caller adds those); None (with a note) when it cannot run here."""
    name = str(metric.get("name") or "metric")
    query, address = _source(metric, path, notes, provider=provider, templates=templates)
    if query is None:
        return None
    mine = dict(values, interval=str(metric.get("interval") or "1m"))
    for key, value in (metric.get("templateVariables") or {}).items():
        mine[f"variables.{key}"] = str(value)
    query, unknown = fill(query, mine)
    for key in unknown:
        notes.change(f"{path}", f"{{{{ {key} }}}} in the query is not known here: left as is")
    out: JSON = {"name": name, "provider": {"prometheus": {"address": address, "query": query}}}
    success = condition(metric.get("thresholdRange") or {})
    if success is not None:
        out["successCondition"] = success
    else:
        notes.change(f"{path}.thresholdRange", "absent: every measurement is Inconclusive")
    notes.rest(metric, path, _METRIC_KEYS)
    return out


def _source(
    metric: JSON, path: str, notes: Notes, *, provider: str, templates: dict[str, JSON]
) -> tuple[str | None, str]:
    """(PromQL with Flagger's placeholders, Prometheus address) of one metric."""
    name = str(metric.get("name"))
    ref = metric.get("templateRef")
    if ref:
        template = templates.get(str(ref.get("name")))
        if template is None:
            notes.drop(
                path,
                f"MetricTemplate {ref.get('name')!r} is not among the imported documents: "
                "import it together with the Canary (same file or directory)",
            )
            return None, ""
        spec = template.get("spec") or {}
        kind = str((spec.get("provider") or {}).get("type") or "prometheus")
        if kind != "prometheus":
            notes.drop(path, f"MetricTemplate provider {kind} is not available (have: prometheus)")
            return None, ""
        address = str((spec.get("provider") or {}).get("address") or DEFAULT_ADDRESS)
        return str(spec.get("query") or ""), address
    if metric.get("query"):
        notes.change(f"{path}.query", f"runs against Flagger's default {DEFAULT_ADDRESS}")
        return str(metric["query"]), DEFAULT_ADDRESS
    builtin = BUILTIN[family(provider)].get(name)
    if builtin is None:
        notes.drop(path, f"{name!r} is neither a built-in Flagger metric nor a templateRef")
        return None, ""
    notes.change(
        path,
        f"Flagger's built-in {name} check, as its {family(provider)} Prometheus query against "
        f"{DEFAULT_ADDRESS} (Flagger's default -metrics-server: change the address if yours "
        "differs)",
    )
    return builtin, DEFAULT_ADDRESS
