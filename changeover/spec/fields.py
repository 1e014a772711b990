"""The building blocks of every spec model: the ``Model`` base, durations, percentages,
ports and ``metadata``.

``Model`` gives camelCase aliases (``minReadySeconds`` in YAML, ``min_ready_seconds`` in
Python), frozen instances and rejects unknown fields, so a typo is an error, not a silent
no-op. The Rollout models (``spec.models``, ``spec.strategy``) and the analysis models
(``spec.analysis``) all build on this module, which imports none of them.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

API_VERSION: Literal["changeover.dev/v1alpha1"] = "changeover.dev/v1alpha1"

# ASCII digits only: \d also takes '١٠', which YAML and Kubernetes read as text.
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from ``30s``, ``5m``, ``1h``, ``250ms`` or a bare number of seconds.

    >>> parse_duration("30s"), parse_duration("5m"), parse_duration(12), parse_duration("1.5h")
    (30.0, 300.0, 12.0, 5400.0)
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("expected a non-negative duration")
        return _finite(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return _finite(float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {str(value)[:40]!r}")


def _finite(value: float) -> float:
    """Seconds as a float, refusing NaN, infinity and integers past a float's range (a
    10**400 raised OverflowError, which no field error caught)."""
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError("expected a finite duration such as 30s, 5m or 1h")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse of ``parse_duration`` for display: 30.0 → '30s', 300.0 → '5m'."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]

_PERCENT = re.compile(r"^([0-9]{1,3})%$")


def _int_or_percent(value: object) -> int | str:
    if isinstance(value, bool):
        raise ValueError("expected an integer or a percentage such as 25%")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("expected a non-negative integer or a percentage such as 25%")
        return value
    if isinstance(value, str):
        if value.isascii() and value.isdigit() and len(value) <= 18:
            return int(value)
        if _PERCENT.match(value):
            return value
    raise ValueError(f"expected an integer or a percentage such as 25%, got {str(value)[:40]!r}")


IntOrPercent = Annotated[int | str, BeforeValidator(_int_or_percent)]
Percent = Annotated[int, Field(ge=0, le=100)]
Port = Annotated[int, Field(ge=1, le=65535)]


def null_means_empty(value: object, keys: tuple[str, ...]) -> object:
    """Read ``recreate:`` or ``- pause:`` (YAML null) as ``{}``: the user named the thing
    and left it at its defaults; treating null as "absent" would report "got none"."""
    if isinstance(value, dict):
        return {k: ({} if k in keys and v is None else v) for k, v in value.items()}
    return value


class Model(BaseModel):
    """Base for every spec model: camelCase aliases, frozen, unknown fields rejected, and
    no NaN or infinity in a number (YAML's ``.nan``/``.inf`` would pass every bound)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )

    def to_json_dict(self) -> dict[str, Any]:
        """The user-facing form: camelCase keys, defaults left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- metadata -------------------------------------------------------------------------


class Metadata(Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
