"""Safe conditions: ``successCondition`` / ``failureCondition`` parsed into an AST, never eval'd.

A metric's conditions are written the way Argo Rollouts users write them (the expr-lang
dialect), and see one name, ``result``: what the provider measured.

    >>> evaluate("result[0] >= 0.95 && result[1] < 500", [0.97, 120])
    True
    >>> evaluate("len(result) > 0 and result.p99 < 0.5", {"p99": 0.7})
    False
    >>> evaluate("all(result, {# < 0.05})", [0.01, 0.02])
    True
    >>> evaluate("max(map(result, {# * 1000})) < 500", [0.12, 0.31])
    True

The grammar is ours (``conditions_eval`` holds the evaluator and the function table)::

    expr     := or ('?' expr ':' expr)?
    or       := and (('||' | 'or') and)*
    and      := not (('&&' | 'and') not)*
    not      := 'not' not | cmp                     (``not`` binds loosely, as in Python)
    cmp      := sum (('=='|'!='|'<'|'<='|'>'|'>='|'in'|'not in') sum)*
    sum      := prod (('+'|'-') prod)*
    prod     := unary (('*'|'/'|'%') unary)*
    unary    := ('-'|'+'|'!') unary | power           (``!`` binds tightly, as in expr/JS)
    power    := postfix (('**'|'^') unary)?          (right-associative)
    postfix  := atom ('[' expr ']' | '.' NAME)*
    atom     := NUMBER | STRING | true | false | nil | result | '#' | '(' expr ')'
              | '[' (expr (',' expr)*)? ']' | FUNC '(' args ')' | '{' expr '}'

Why it is safe: the only name is ``result`` (and ``#``, the element inside ``all``/``any``
predicates); ``.name`` and ``[key]`` look a key up in a mapping or an index up in a list and
never reach a Python attribute; functions come from a fixed table; the text is at most
``MAX_LENGTH`` characters and nests at most ``MAX_DEPTH`` deep; ``**`` computes in floats
and refuses overflow. ``__import__``, ``().__class__``, ``9**9**9`` and a thousand ``(``
are all errors with the column they start at.

Who calls it: ``analysis.assess`` (evaluating measurements) and ``validation.analysis_checks``
(``lint``/``apply`` report bad syntax with a caret under the offending column).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from changeover.analysis import conditions_eval, conditions_lex

MAX_LENGTH = 2000
MAX_DEPTH = 32

Node = conditions_eval.Node


ConditionError = conditions_eval.ConditionError
ConditionSyntaxError = conditions_lex.ConditionSyntaxError
ConditionEvalError = conditions_eval.EvalError
Token = conditions_lex.Token
tokenize = conditions_lex.tokenize


# --- the parser ---------------------------------------------------------------------------

_KEYWORDS = {"true": True, "false": False, "nil": None, "null": None}
_RESERVED = ("and", "or", "not", "in")
_COMPARE = ("==", "!=", "<", "<=", ">", ">=", "in")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.in_predicate = False

    # -- plumbing --

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, *texts: str) -> bool:
        return self.tok.kind in ("op", "name") and self.tok.text in texts

    def expect(self, text: str, what: str) -> Token:
        if not self.at(text):
            raise self.error(f"expected {what}")
        return self.take()

    def error(self, message: str, tok: Token | None = None) -> ConditionSyntaxError:
        tok = tok or self.tok
        found = "the end" if tok.kind == "end" else repr(tok.text)
        return ConditionSyntaxError(f"{message}, found {found}", self.text, tok.pos)

    def nested(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionSyntaxError(f"nested more than {MAX_DEPTH} deep", self.text, tok.pos)

    # -- grammar --

    def parse(self) -> Node:
        node = self.expr()
        if self.tok.kind != "end":
            raise self.error("expected an operator or the end")
        return node

    def expr(self) -> Node:
        self.nested(self.tok)
        node = self.or_()
        if self.at("?"):
            pos = self.take().pos
            then = self.expr()
            self.expect(":", "':' of a ?: conditional")
            node = ("if", pos, node, then, self.expr())
        self.depth -= 1
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.at("||", "or"):
            pos = self.take().pos
            node = ("or", pos, node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.at("&&", "and"):
            pos = self.take().pos
            node = ("and", pos, node, self.not_())
        return node

    def not_(self) -> Node:
        if self.at("not"):
            tok = self.take()
            self.nested(tok)
            node: Node = ("not", tok.pos, self.not_())
            self.depth -= 1
            return node
        return self.compare()

    def compare(self) -> Node:
        node = self.sum_()
        compared = False
        while self.at(*_COMPARE) or (self.at("not") and self._next_is("in")):
            if compared:
                raise ConditionSyntaxError(
                    "comparisons do not chain: write a < b && b < c", self.text, self.tok.pos
                )
            compared = True
            tok = self.take()
            op = tok.text
            if op == "not":
                self.take()
                op = "not in"
            node = ("bin", tok.pos, op, node, self.sum_())
        return node

    def _next_is(self, text: str) -> bool:
        nxt = self.tokens[self.i + 1]
        return nxt.kind == "name" and nxt.text == text

    def sum_(self) -> Node:
        node = self.prod()
        while self.at("+", "-"):
            tok = self.take()
            node = ("bin", tok.pos, tok.text, node, self.prod())
        return node

    def prod(self) -> Node:
        node = self.unary()
        while self.at("*", "/", "%"):
            tok = self.take()
            node = ("bin", tok.pos, tok.text, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.at("-", "+", "!"):
            tok = self.take()
            self.nested(tok)
            kind = {"-": "neg", "+": "pos", "!": "not"}[tok.text]
            node: Node = (kind, tok.pos, self.unary())
            self.depth -= 1
            return node
        return self.power()

    def power(self) -> Node:
        node = self.postfix()
        if self.at("**", "^"):
            tok = self.take()
            self.nested(tok)
            node = ("bin", tok.pos, "**", node, self.unary())
            self.depth -= 1
        return node

    def postfix(self) -> Node:
        node = self.atom()
        while self.at("[", "."):
            tok = self.take()
            if tok.text == "[":
                index = self.expr()
                self.expect("]", "']'")
                node = ("index", tok.pos, node, index)
            else:
                name = self.take()
                if name.kind != "name":
                    raise self.error("expected a key name after '.'", name)
                if name.text.startswith("__"):
                    raise ConditionSyntaxError(
                        "names starting with '__' are not allowed", self.text, name.pos
                    )
                node = ("index", tok.pos, node, ("lit", name.pos, name.text))
        return node

    def atom(self) -> Node:
        tok = self.tok
        if tok.kind in ("num", "str"):
            self.take()
            return ("lit", tok.pos, tok.value)
        if tok.kind == "name":
            return self.name()
        if self.at("("):
            self.take()
            node = self.expr()
            self.expect(")", "')'")
            return node
        if self.at("["):
            return self.list_()
        if self.at("#"):
            if not self.in_predicate:
                raise ConditionSyntaxError(
                    "'#' only means the element inside all/any/none/one/filter/map/count",
                    self.text,
                    tok.pos,
                )
            self.take()
            return ("elem", tok.pos)
        if tok.kind == "end":
            raise self.error("expected a value")
        raise self.error("expected a value")

    def name(self) -> Node:
        tok = self.tok
        if tok.text in _RESERVED:
            raise self.error("expected a value")
        self.take()
        if tok.text in _KEYWORDS:
            return ("lit", tok.pos, _KEYWORDS[tok.text])
        if self.at("("):
            return self.call(tok)
        if tok.text == "result":
            return ("result", tok.pos)
        if tok.text.startswith("__"):
            raise ConditionSyntaxError(
                "names starting with '__' are not allowed", self.text, tok.pos
            )
        if tok.text in conditions_eval.FUNCTIONS:
            raise ConditionSyntaxError(f"{tok.text} is a function: call it", self.text, tok.pos)
        raise ConditionSyntaxError(
            f"unknown name {tok.text!r}: a condition can only use 'result'", self.text, tok.pos
        )

    def call(self, tok: Token) -> Node:
        spec = conditions_eval.FUNCTIONS.get(tok.text)
        if spec is None:
            known = ", ".join(sorted(conditions_eval.FUNCTIONS))
            raise ConditionSyntaxError(
                f"unknown function {tok.text!r} (known: {known})", self.text, tok.pos
            )
        self.take()  # (
        args: list[Node] = []
        while not self.at(")"):
            if args:
                self.expect(",", "',' or ')'")
            predicate = spec.predicate and len(args) == 1
            args.append(self.predicate() if predicate else self.expr())
        self.take()  # )
        low, high = spec.arity
        if not low <= len(args) <= high:
            want = str(low) if low == high else f"{low} to {high}" if high < 99 else f"{low}+"
            raise ConditionSyntaxError(
                f"{tok.text}() takes {want} argument{'s' if want != '1' else ''}, got {len(args)}",
                self.text,
                tok.pos,
            )
        return ("call", tok.pos, tok.text, tuple(args))

    def predicate(self) -> Node:
        """The second argument of all/any/...: ``{# > 0}`` (expr's closure) or ``# > 0``."""
        if self.in_predicate:
            raise self.error("predicates cannot be nested")
        self.in_predicate = True
        braced = self.at("{")
        if braced:
            self.take()
        node = self.expr()
        if braced:
            self.expect("}", "'}'")
        self.in_predicate = False
        return ("pred", node[1], node)

    def list_(self) -> Node:
        tok = self.take()
        items: list[Node] = []
        while not self.at("]"):
            if items:
                self.expect(",", "',' or ']'")
            items.append(self.expr())
        self.take()
        return ("list", tok.pos, tuple(items))


# --- the surface --------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A parsed condition; ``holds(result)`` evaluates it."""

    text: str
    tree: Node

    def value(self, result: Any) -> Any:
        """The condition's value for ``result``; ConditionEvalError whatever goes wrong."""
        try:
            return conditions_eval.evaluate(self.tree, result)
        except ConditionError:
            raise
        except OverflowError as exc:  # 10**400 / 2: no float holds it
            raise ConditionEvalError(f"a number is too large ({exc})") from None
        except RecursionError:  # == between two lists nested thousands deep
            raise ConditionEvalError("the value is nested too deeply") from None
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise ConditionEvalError(f"{type(exc).__name__}: {exc}") from None

    def holds(self, result: Any) -> bool:
        """True or False; ConditionEvalError if evaluation fails or is not a boolean."""
        value = self.value(result)
        if not isinstance(value, bool):
            raise ConditionEvalError(
                f"condition {self.text!r} gave {conditions_eval.show(value)}, "
                "expected true or false"
            )
        return value


def parse(text: str) -> Condition:
    """Parse ``text``; ConditionSyntaxError (with a caret) when it is not a condition."""
    if not isinstance(text, str):
        raise ConditionSyntaxError("expected a string", "", 0)
    if len(text) > MAX_LENGTH:
        raise ConditionSyntaxError(
            f"longer than {MAX_LENGTH} characters", text[:MAX_LENGTH], MAX_LENGTH
        )
    if not text.strip():
        raise ConditionSyntaxError("empty condition", text, 0)
    try:
        tree = _Parser(text).parse()
    except RecursionError:  # pragma: no cover - MAX_DEPTH is far below the stack limit
        raise ConditionSyntaxError("nested too deeply", text, 0) from None
    return Condition(text=text, tree=tree)


@functools.lru_cache(maxsize=256)
def compiled(text: str) -> Condition:
    """``parse`` with a cache: a metric's condition is evaluated every interval."""
    return parse(text)


def check(text: str) -> str | None:
    """What ``lint`` says about ``text``: None when it parses, else the rendered error."""
    try:
        parse(text)
    except ConditionSyntaxError as exc:
        return exc.render()
    return None


def evaluate(text: str, result: Any) -> bool:
    """Parse (cached) and evaluate ``text`` against ``result``."""
    return compiled(text).holds(result)
