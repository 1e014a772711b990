"""The tokenizer of ``analysis.conditions`` and its syntax error (which draws a caret).

Tokens are numbers, quoted strings (``"ok"`` or ``'ok'``, with ``\\n \\t \\\\ \\" \\'``
escapes), names and operators; whitespace separates them. Anything else is an error at its
column. Numbers longer than 40 characters are refused, so no literal is ever huge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from changeover.analysis import conditions_eval

_MAX_NUMBER_DIGITS = 40


class ConditionSyntaxError(conditions_eval.ConditionError):
    """Bad syntax at ``position`` (0-based) in ``expression``; ``str()`` shows a caret."""

    def __init__(self, message: str, expression: str, position: int) -> None:
        self.reason = message
        self.expression = expression
        self.position = max(0, min(position, len(expression)))
        super().__init__(self.render())

    def render(self) -> str:
        """``unexpected ')' at column 13`` with the expression and a caret under it.

        >>> print(ConditionSyntaxError("unexpected ')'", "result[0] >= )", 13))
        unexpected ')' at column 14
          result[0] >= )
                       ^
        """
        shown = self.expression.replace("\n", " ").replace("\t", " ")
        if len(shown) > 120:  # keep the caret line readable for long expressions
            start = max(0, self.position - 60)
            shown, offset = shown[start : start + 120], self.position - start
        else:
            offset = self.position
        return f"{self.reason} at column {self.position + 1}\n  {shown}\n  {' ' * offset}^"


# --- tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # "num", "str", "name", "op", "end"
    text: str
    pos: int
    value: Any = None


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>\*\*|==|!=|<=|>=|&&|\|\||[-+*/%^<>!()\[\].,?:{}\#])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``; ConditionSyntaxError on a character that starts none."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            char = text[pos]
            hint = " (use == to compare)" if char == "=" else ""
            raise ConditionSyntaxError(f"unexpected character {char!r}{hint}", text, pos)
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "num":
            tokens.append(Token("num", raw, pos, _number(raw, text, pos)))
        elif kind == "str":
            tokens.append(Token("str", raw, pos, _unquote(raw, text, pos)))
        elif kind in ("name", "op"):
            tokens.append(Token(kind, raw, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _number(raw: str, text: str, pos: int) -> int | float:
    if len(raw) > _MAX_NUMBER_DIGITS:
        raise ConditionSyntaxError("number too long", text, pos)
    if any(c in raw for c in ".eE"):
        value = float(raw)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConditionSyntaxError("number out of range", text, pos)
        return value
    return int(raw)


def _unquote(raw: str, text: str, pos: int) -> str:
    out: list[str] = []
    body = raw[1:-1]
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise ConditionSyntaxError(f"unknown escape \\{nxt}", text, pos + i + 1)
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)
