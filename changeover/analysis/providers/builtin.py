"""The ``builtin`` metric provider: the builtin router's own numbers, with zero setup.

Per revision, over a window, from the controller's once-a-second sampler of the router's
counters (``analysis.sampler``); and per revision, from its replicas' processes (psutil on
the PIDs the local platform reports)::

    provider:
      builtin:
        metric: error-rate       # see METRICS; leave it out for all router numbers at once
        revision: canary         # canary (the new revision, default), stable, or a number
        window: 60s              # router metrics: how far back to look (default 60s)
        minRequests: 20          # fewer requests in the window is "no data": an Error
        aggregate: mean          # cpu/memory over replicas: mean (default), max or sum
        sample: 1s               # cpu: how long to watch the processes (default 1s)

``result`` is a number, except without ``metric``: then a mapping such as
``{"requests": 412, "errorRate": 0.02, "successRate": 0.98, "p50": 0.004, "p99": 0.031,
"requestRate": 6.9, ...}`` so ``result.p99 < 0.5 && result.errorRate < 0.05`` works.
Streamed responses (``text/event-stream``, JSON lines) add ``ttft-p95``, ``itl-p99``,
``tokens-per-second``, ``tokens-per-response``, ``stream-cut-rate`` and ``streams`` (and
``ttftP95``, ``tokensPerSecond``, ``streamCutRate``... in the mapping).
Latencies are in seconds; ``cpu`` is percent of one core per replica; ``memory`` is MiB of
resident memory per replica; ``restarts`` counts the revision's replica restarts.

A shadow (a revision mirrored to with a ``compare`` block) is judged on its answers as
compared with the primary's: ``shadow-match-rate``, ``shadow-error-rate`` (5xx or no
answer), ``shadow-{status,body,latency}-mismatch-rate``, ``shadow-latency-p50..p99``,
``shadow-latency-delta-p50/p99`` (shadow minus primary, same requests), and
``shadow-compared``; ``minRequests`` then counts compared answers. Without ``metric``, a
shadow that serves no traffic gets all of them (``result.matchRate``, ``result.errorRate``,
``result.latencyDeltaP99``...). See ``analysis.shadow_comparisons``.

A flag the router evaluates per request (``Flag.spec.router``) splits a revision's traffic
by variant; ``variant`` scopes the router metrics to one variant of one flag, and with
``against`` compares it with another variant of the same revision::

    variant: {flag: checkout, name: "on", against: "off"}

``result`` is then the named variant's number minus the ``against`` variant's (``metric:
error-rate``: how many more errors "on" makes than "off"), or without ``metric`` the
named variant's mapping with ``against`` holding the other's (``result.errorRate -
result.against.errorRate < 0.01``). ``minRequests`` applies to each variant.

Too few requests in the window raise ``ProviderError`` (an Error measurement): a canary
that served nothing has not shown that it is good, and ``consecutiveErrorLimit`` gives it
time to get traffic before the run errs.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any

import psutil

from changeover.analysis import sampler, shadow_comparisons
from changeover.analysis.providers import base
from changeover.spec import models

ROUTER_METRICS = ("requests", *sampler.SERIES)
PROCESS_METRICS = ("restarts", "cpu", "memory")
SHADOW_METRICS = shadow_comparisons.METRICS
METRICS = (*ROUTER_METRICS, *PROCESS_METRICS, *SHADOW_METRICS)
_KEYS = ("metric", "revision", "window", "minRequests", "aggregate", "sample", "variant")
_VARIANT_KEYS = ("flag", "name", "against")


def problems(config: Mapping[str, Any]) -> list[str]:
    """Lint: unknown keys and values, before any run."""
    out = [
        f"unknown field {key!r}; expected one of {', '.join(_KEYS)}"
        for key in config
        if key not in _KEYS
    ]
    metric = config.get("metric")
    if metric is not None and metric not in METRICS:
        out.append(f"metric: unknown {metric!r}; expected one of {', '.join(METRICS)}")
    revision = config.get("revision", "canary")
    if not (revision in ("canary", "stable") or _is_number(revision) or "{{" in str(revision)):
        out.append(f"revision: expected canary, stable or a number, got {revision!r}")
    for key in ("window", "sample"):
        if key in config and "{{" not in str(config[key]):
            try:
                models.parse_duration(config[key])
            except ValueError as exc:
                out.append(f"{key}: {exc}")
    if config.get("aggregate", "mean") not in ("mean", "max", "sum"):
        out.append(f"aggregate: expected mean, max or sum, got {config['aggregate']!r}")
    if "variant" in config:
        out += _variant_problems(config["variant"], metric)
    return out


def _variant_problems(scope: object, metric: object) -> list[str]:
    if not isinstance(scope, Mapping):
        return ["variant: expected a mapping such as {flag: checkout, name: on, against: off}"]
    out = [
        f"variant.{key}: unknown field; expected one of {', '.join(_VARIANT_KEYS)}"
        for key in scope
        if key not in _VARIANT_KEYS
    ]
    for key in _VARIANT_KEYS:
        value = scope.get(key)
        if (value is not None or key != "against") and not (isinstance(value, str) and value):
            out.append(f"variant.{key}: expected a {'flag' if key == 'flag' else 'variant'} name")
    if metric is not None and metric not in ROUTER_METRICS:
        out.append(f"variant: scopes the router's metrics only; {metric!r} is not one of them")
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int) or (isinstance(value, str) and value.isdigit())


class BuiltinProvider:
    name = "builtin"

    async def measure(
        self,
        config: Mapping[str, Any],
        *,
        args: Mapping[str, str],
        context: base.MeasureContext,
    ) -> base.ProviderResult:
        found = problems(config)
        if found:
            raise base.ProviderError(f"provider.builtin: {found[0]}")
        revision = _revision(config.get("revision", "canary"), context)
        metric = config.get("metric")
        if metric in PROCESS_METRICS:
            return await _process_metric(metric, revision, config, context)
        if context.window is None:
            raise base.ProviderError("the builtin router's metrics are not available here")
        window = models.parse_duration(config.get("window", "60s"))
        need = int(config.get("minRequests", 1))
        if "variant" in config:
            return _variant_result(revision, config["variant"], metric, window, need, context)
        compared = _shadow_data(revision, context)
        if metric in SHADOW_METRICS:
            return _shadow_result(revision, compared, metric, window, need)
        stats = context.window(revision, window)
        if metric is None and compared is not None and stats.requests == 0:
            # A shadow serves nobody: what it is judged on is how it answered.
            return _shadow_result(revision, compared, None, window, need)
        if stats.requests < max(1, need):
            raise base.ProviderError(
                f"revision {revision} served {stats.requests} request"
                f"{'s' if stats.requests != 1 else ''} in the last "
                f"{models.format_duration(round(stats.seconds, 1))}; need at least {max(1, need)}"
            )
        if metric in sampler.STREAM_SERIES and metric != "streams" and not stats.streams.count:
            raise base.ProviderError(
                f"revision {revision} finished no streamed response (text/event-stream or "
                f"JSON lines) in the last {models.format_duration(round(stats.seconds, 1))}; "
                f"{metric} needs one"
            )
        shown = f"revision {revision}, {stats.requests} requests in {stats.seconds:.0f}s"
        if metric is None:
            return base.ProviderResult(value=stats.summary(), message=shown)
        return base.ProviderResult(value=stats.value(metric), message=shown)


def _variant_result(
    revision: int,
    scope: Mapping[str, str],
    metric: str | None,
    window: float,
    need: int,
    context: base.MeasureContext,
) -> base.ProviderResult:
    if context.variant_window is None:
        raise base.ProviderError("the builtin router's per-variant metrics are not available here")
    flag, against = scope["flag"], scope.get("against")
    found = {}
    for variant in (scope["name"], *([against] if against else [])):
        stats = context.variant_window(revision, flag, variant, window)
        if stats.requests < max(1, need):
            raise base.ProviderError(
                f"variant {variant!r} of flag {flag!r} got {stats.requests} request"
                f"{'s' if stats.requests != 1 else ''} of revision {revision} in the last "
                f"{models.format_duration(round(stats.seconds, 1))}; need at least {max(1, need)}"
                " (does the router evaluate the flag: spec.router.rollout?)"
            )
        found[variant] = stats
    mine = found[scope["name"]]
    shown = f"revision {revision}, flag {flag}: {scope['name']} {mine.requests} requests"
    if against:
        shown += f", {against} {found[against].requests}"
    if metric is None:
        summary: dict[str, Any] = dict(mine.summary())
        if against:
            summary["against"] = found[against].summary()
        return base.ProviderResult(value=summary, message=shown)
    value = mine.value(metric)
    if against:
        value -= found[against].value(metric)
    return base.ProviderResult(value=value, message=shown)


def _shadow_data(
    revision: int, context: base.MeasureContext
) -> shadow_comparisons.ShadowData | None:
    return context.shadows().get(revision) if context.shadows is not None else None


def _shadow_result(
    revision: int,
    compared: shadow_comparisons.ShadowData | None,
    metric: str | None,
    window: float,
    need: int,
) -> base.ProviderResult:
    """The ``shadow-*`` metrics of ``revision``'s answers compared with the primary's."""
    if compared is None:
        raise base.ProviderError(
            f"revision {revision}: no answers compared with the primary's yet (a shadow "
            "needs a compare block: setMirrorRoute.compare or strategy.shadow.compare)"
        )
    stats = shadow_comparisons.window(compared.pairs, now=time.time(), seconds=window)
    if stats.compared < max(1, need):
        raise base.ProviderError(
            f"revision {revision}: {stats.compared} answer{'s' if stats.compared != 1 else ''} "
            f"compared with revision {compared.primary}'s in the last "
            f"{models.format_duration(round(window, 1))}; need at least {max(1, need)}"
        )
    shown = (
        f"shadow revision {revision}: {stats.compared} answers compared with revision "
        f"{compared.primary}'s"
    )
    value = stats.summary() if metric is None else stats.value(metric)
    return base.ProviderResult(value=value, message=shown)


def _revision(which: object, context: base.MeasureContext) -> int:
    if which == "stable":
        if context.stable_revision is None:
            raise base.ProviderError("revision: stable, but the rollout has no stable revision")
        return context.stable_revision
    if which == "canary":
        if context.canary_revision is None:
            raise base.ProviderError("revision: canary, but no revision is being rolled out")
        return context.canary_revision
    return int(str(which))


async def _process_metric(
    metric: str, revision: int, config: Mapping[str, Any], context: base.MeasureContext
) -> base.ProviderResult:
    if context.replicas is None:
        raise base.ProviderError("replica processes are not available on this platform")
    replicas = context.replicas(revision)
    if metric == "restarts":
        total = sum(r.restarts for r in replicas)
        return base.ProviderResult(
            value=total, message=f"revision {revision}: {len(replicas)} replicas"
        )
    pids = [r.pid for r in replicas if r.pid is not None]
    if not pids:
        raise base.ProviderError(f"revision {revision} has no running replica to measure")
    if metric == "memory":
        values = [v for v in map(_rss_mib, pids) if v is not None]
    else:
        seconds = models.parse_duration(config.get("sample", "1s"))
        values = await _cpu_percent(pids, max(0.05, min(seconds, 30.0)))
    if not values:
        raise base.ProviderError(f"revision {revision}: its replica processes are gone")
    how = config.get("aggregate", "mean")
    value = (
        max(values)
        if how == "max"
        else sum(values)
        if how == "sum"
        else (sum(values) / len(values))
    )
    return base.ProviderResult(
        value=value, message=f"revision {revision}: {how} over {len(values)} replicas"
    )


def _rss_mib(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)
    except (psutil.Error, OSError):
        return None


def _cpu_seconds(pid: int) -> float | None:
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.Error, OSError):
        return None
    return float(times.user + times.system)


async def _cpu_percent(pids: list[int], seconds: float) -> list[float]:
    """Percent of one core each process used while we watched it for ``seconds``."""
    before = {pid: _cpu_seconds(pid) for pid in pids}
    started = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    out = []
    for pid, first in before.items():
        last = _cpu_seconds(pid)
        if first is not None and last is not None and elapsed > 0:
            out.append(max(0.0, last - first) / elapsed * 100.0)
    return [v for v in out if math.isfinite(v)]


base.register("builtin", BuiltinProvider, problems=problems)
