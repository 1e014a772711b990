"""Where the judges' samples come from: the builtin router's per-second series, or a
Prometheus range query per revision.

Used by the ``mannWhitney`` (``judges.mann_whitney``) and ``abSignificance``
(``judges.ab_significance``) providers. A metric names its source with one key:

    builtin: error-rate          # context.series(revision, "error-rate", window)
    builtin: latency             # per-request samples (also ttft, itl): 1% sketch
    prometheus:                  # merged over the provider's top-level ``prometheus:``
      query: sum(rate(changeover_requests_total{revision="{{revision}}",code="5xx"}[30s]))

A Prometheus query without ``rangeQuery`` is run over the judge's window at its ``step``;
``{{revision}}`` is replaced by the revision number being measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from changeover.analysis.providers import base
from changeover.analysis.providers import prometheus as prom
from changeover.spec import models


@dataclass(frozen=True, kw_only=True)
class Source:
    builtin: str | None = None  # a builtin series name
    prometheus: Mapping[str, Any] | None = None  # a full provider.prometheus block

    def describe(self) -> str:
        if self.builtin is not None:
            return f"builtin {self.builtin}"
        assert self.prometheus is not None
        return f"prometheus {self.prometheus.get('query', '')!r}"


def parse_source(
    item: Mapping[str, Any],
    *,
    where: str,
    defaults: Mapping[str, Any],
    window: float,
    step: float,
) -> Source:
    """Read the ``builtin:`` or ``prometheus:`` key of ``item``; ``ValueError`` names the
    field by ``where`` (``metrics[2]``)."""
    has_builtin, has_prom = "builtin" in item, "prometheus" in item
    if has_builtin == has_prom:
        raise ValueError(f"{where}: expected exactly one of builtin: NAME or prometheus: {{...}}")
    if has_builtin:
        name = item["builtin"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.builtin: expected a builtin metric name such as error-rate")
        return Source(builtin=name)
    block = item["prometheus"]
    if isinstance(block, str):  # shorthand: the query alone
        block = {"query": block}
    if not isinstance(block, Mapping):
        raise ValueError(f"{where}.prometheus: expected a mapping with a query")
    merged: dict[str, Any] = {**defaults, **block}
    merged.setdefault(
        "rangeQuery",
        {"start": f"now() - {window:g}s", "end": "now()", "step": f"{step:g}s"},
    )
    try:
        prom.parse_config(merged)
    except ValueError as exc:
        raise ValueError(f"{where}.prometheus.{exc}") from None
    return Source(prometheus=merged)


def parse_window(config: Mapping[str, Any], key: str, default: float) -> float:
    try:
        value = models.parse_duration(config.get(key, default))
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None
    if value <= 0:
        raise ValueError(f"{key}: expected a positive duration")
    return value


async def fetch(
    source: Source,
    *,
    revision: int,
    context: base.MeasureContext,
    window: float,
) -> list[float]:
    """The samples of one revision, oldest first (NaNs kept: the judge's NaN strategy
    decides). Raises ``ProviderError`` when the source cannot answer."""
    if source.builtin is not None:
        if context.series is None:
            raise base.ProviderError(
                f"builtin series {source.builtin!r}: this rollout has no builtin router metrics"
            )
        try:
            return list(context.series(revision, source.builtin, window))
        except (KeyError, ValueError) as exc:
            raise base.ProviderError(f"builtin series {source.builtin!r}: {exc}") from exc
    assert source.prometheus is not None
    block = dict(source.prometheus)
    block["query"] = str(block["query"]).replace("{{revision}}", str(revision))
    cfg = prom.parse_config(block)
    result = await prom.PrometheusClient(cfg).run()
    if result.result_type in ("scalar", "string"):
        return [float(result.scalar)] if isinstance(result.scalar, float) else []
    # Several series (e.g. one per replica) are pooled: each value is one more sample.
    return [v for series in result.series for v in series.values]
