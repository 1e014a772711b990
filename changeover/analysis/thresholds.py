"""The number a condition compares a measurement with, when it is that simple.

A dashboard or a Grafana panel draws a measurement next to its threshold; a condition such
as ``result <= 0.05`` (or ``0.05 >= result``) has one, ``result.p99 < 0.5 && ...`` does not
(``None``: the condition is shown as text instead).

>>> threshold("result <= 0.05")
('<=', 0.05)
>>> threshold("0.99 <= result[0]")
('>=', 0.99)
>>> threshold("result.p99 < 0.5 && result.errorRate < 0.2") is None
True
"""

from __future__ import annotations

import math
import re

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RESULT = r"result(?:\[0\])?"
_OPERATOR = r"<=|>=|==|<|>"
_LEFT = re.compile(rf"^\s*{_RESULT}\s*({_OPERATOR})\s*({_NUMBER})\s*$")
_RIGHT = re.compile(rf"^\s*({_NUMBER})\s*({_OPERATOR})\s*{_RESULT}\s*$")
_MIRROR = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "=="}
_MAX_CONDITION = 1000  # longer conditions are never this simple


def threshold(condition: str | None) -> tuple[str, float] | None:
    """``(operator, value)`` with the result on the left, or None when the condition is
    absent, compound, or compares with a value that is not a finite number."""
    if not condition or len(condition) > _MAX_CONDITION:
        return None
    left = _LEFT.match(condition)
    if left is not None:
        operator, raw = left.group(1), left.group(2)
    else:
        right = _RIGHT.match(condition)
        if right is None:
            return None
        operator, raw = _MIRROR[right.group(2)], right.group(1)
    value = float(raw)
    return (operator, value) if math.isfinite(value) else None
