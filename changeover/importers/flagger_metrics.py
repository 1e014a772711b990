"""Flagger's analysis metrics → changeover metrics written inline in ``spec.checks``.

Flagger checks every metric once per ``analysis.interval`` and rolls back after
``threshold`` failed checks (``importers.flagger`` writes that as ``spec.checks``). A
metric is either built in (``request-success-rate``, ``request-duration``: Prometheus
queries Flagger picks by mesh provider, against its ``-metrics-server``, default
``http://prometheus:9090``) or names a ``MetricTemplate`` (``templateRef``) whose query holds
``{{ namespace }}``, ``{{ target }}``, ``{{ interval }}`` and ``{{ variables.x }}``. Both
become Prometheus metrics here with those placeholders filled in from the Canary, so each
check means what it meant:

    - name: request-success-rate          →  - name: request-success-rate
      thresholdRange: {min: 99}                 successCondition: result[-1] >= 99
      interval: 1m                              provider: {prometheus: {address, query}}

Flagger reads an instant vector's samples and keeps the last one's value (no sample, or
NaN, fails the check); changeover's Prometheus provider gives a vector as a list of the
samples' values, so the condition reads ``result[-1]`` (an empty list is an Error: a
failed check, as in Flagger). ``metric.interval`` is the query's range (``[1m]``), not
how often it runs. A name changeover does not accept (``"error rate"``) is written as a
slug, with a note. Called by ``importers.flagger`` only.
"""

from __future__ import annotations

import re
from typing import Any

from changeover.importers.report import Notes

JSON = dict[str, Any]
DEFAULT_ADDRESS = "http://prometheus:9090"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}")

# Flagger's built-in checks per provider family (pkg/metrics/observers/*.go), as PromQL with
# Flagger's placeholders. Success rate is a percentage; duration is P99 in milliseconds (the
# http family's seconds are multiplied here, as Flagger's Go code does after the query).
_ISTIO = (
    'sum(rate(istio_requests_total{{reporter="destination",'
    'destination_workload_namespace="{{{{ namespace }}}}",'
    'destination_workload=~"{{{{ target }}}}"{extra}}}[{{{{ interval }}}}]))'
)
_CONTOUR = (
    "sum(rate(envoy_cluster_upstream_rq{{envoy_cluster_name=~"
    '"{{{{ namespace }}}}_{{{{ service }}}}-canary_[0-9a-zA-Z-]+"{extra}}}[{{{{ interval }}}}]))'
)
_GLOO = (
    "sum(rate(envoy_cluster_upstream_rq{{envoy_cluster_name=~"
    '"{{{{ namespace }}}}-{{{{ target }}}}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+"{extra}}}'
    "[{{{{ interval }}}}]))"
)
_LINKERD = (
    'sum(rate(response_total{{namespace="{{{{ namespace }}}}",deployment=~"{{{{ target }}}}",'
    'direction="inbound"{extra}}}[{{{{ interval }}}}]))'
)
_OSM = (
    'sum(rate(osm_request_total{{destination_namespace="{{{{ namespace }}}}",'
    'destination_kind="Deployment",destination_name="{{{{ target }}}}"{extra}}}'
    "[{{{{ interval }}}}]))"
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
    "contour": {
        "request-success-rate": _rate(_CONTOUR, "envoy_response_code"),
        "request-duration": (
            "histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{"
            'envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+"}'
            "[{{ interval }}])) by (le))"
        ),
    },
    "gloo": {
        "request-success-rate": _rate(_GLOO, "envoy_response_code"),
        "request-duration": (
            "histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{"
            'envoy_cluster_name=~"{{ namespace }}-{{ target }}-canaryupstream-[0-9a-zA-Z-]+'
            '_[0-9a-zA-Z-]+"}[{{ interval }}])) by (le))'
        ),
    },
    "linkerd": {
        "request-success-rate": (
            _LINKERD.format(extra=',classification!="failure"')
            + f" / {_LINKERD.format(extra='')} * 100"
        ),
        "request-duration": (
            "histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{"
            'namespace="{{ namespace }}",deployment=~"{{ target }}",direction="inbound"}'
            "[{{ interval }}])) by (le))"
        ),
    },
    "osm": {
        "request-success-rate": _rate(_OSM, "response_code"),
        "request-duration": (
            "histogram_quantile(0.99, sum(rate(osm_request_duration_ms_bucket{"
            'destination_namespace="{{ namespace }}",destination_kind="Deployment",'
            'destination_name="{{ target }}"}[{{ interval }}])) by (le))'
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
# Flagger's observer per provider (pkg/metrics/observers/factory.go): the kubernetes and
# Gateway API providers read the app's own metrics (``http``); any other, Istio's.
_FAMILY = {"kubernetes": "http", "gatewayapi": "http", "contour": "contour", "gloo": "gloo"}
_FAMILY |= {"nginx": "nginx", "linkerd": "linkerd", "osm": "osm"}


def family(provider: str) -> str:
    """Which built-in queries a Flagger provider uses (``http``: the app's own metrics)."""
    return _FAMILY.get(provider.split(":")[0], "istio")


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
    """``thresholdRange: {min: 99}`` → ``result[-1] >= 99`` (the last sample's value, as
    Flagger reads it); both bounds → both tests."""
    parts = []
    if threshold.get("min") is not None:
        parts.append(f"result[-1] >= {_number(threshold['min'])}")
    if threshold.get("max") is not None:
        parts.append(f"result[-1] <= {_number(threshold['max'])}")
    return " && ".join(parts) or None


def _number(value: Any) -> str:
    """A bound as a number in the condition (Flagger's CRD takes numbers only); anything
    else is a ValueError, which the importer reports naming the file and document."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"thresholdRange: expected a number, got {value!r}")
    return repr(value)


def slug(name: str) -> str:
    """A metric name changeover accepts: ``"error rate"`` → ``error-rate``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-_.")[:63] or "metric"


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
    """One Flagger metric as a changeover metric measured once per check (no interval,
    count or limits); None (with a note) when it cannot run here."""
    name = str(metric.get("name") or "metric")
    if slug(name) != name:
        notes.change(f"{path}.name", f"{name!r} is written {slug(name)!r}", loss=False)
    query, address = _source(metric, path, notes, provider=provider, templates=templates)
    if query is None:
        return None
    mine = dict(values, interval=str(metric.get("interval") or "1m"))
    for key, value in (metric.get("templateVariables") or {}).items():
        mine[f"variables.{key}"] = str(value)
    query, unknown = fill(query, mine)
    for key in unknown:
        notes.change(f"{path}", f"{{{{ {key} }}}} in the query is not known here: left as is")
    out: JSON = {
        "name": slug(name),
        "provider": {"prometheus": {"address": address, "query": query}},
    }
    success = condition(metric.get("thresholdRange") or {})
    if success is None:
        # Flagger only checks that the query gave a value (no sample or NaN fails): a
        # number equals itself, NaN does not, and an empty vector is an Error.
        success = "result[-1] == result[-1]"
        notes.change(
            f"{path}.thresholdRange",
            "absent: as in Flagger, any value passes (no value, or NaN, fails the check)",
            loss=False,
        )
    out["successCondition"] = success
    notes.rest(metric, path, _METRIC_KEYS)
    return out


def _provider_notes(block: JSON, path: str, template: str, notes: Notes) -> None:
    """What of a MetricTemplate's provider is not carried: its Secret (credentials are
    never copied into the spec) and TLS options."""
    secret = (block.get("secretRef") or {}).get("name")
    if secret:
        notes.drop(
            path,
            f"MetricTemplate {template!r} reads Prometheus credentials from Secret {secret!r}; "
            "they are not carried over (and must not be written into the spec): the query "
            "goes out without them, so a server that needs them fails the checks",
        )
    for key in block:
        if key not in ("type", "address", "secretRef"):
            notes.drop(f"{path}", f"MetricTemplate {template!r}: provider.{key} is not carried")


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
        provider_block = spec.get("provider") or {}
        address = str(provider_block.get("address") or DEFAULT_ADDRESS)
        _provider_notes(provider_block, f"{path}.templateRef", str(ref.get("name")), notes)
        return str(spec.get("query") or ""), address
    if metric.get("query"):
        notes.change(
            f"{path}.query", f"runs against Flagger's default {DEFAULT_ADDRESS}", loss=False
        )
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
        loss=False,
    )
    return builtin, DEFAULT_ADDRESS
