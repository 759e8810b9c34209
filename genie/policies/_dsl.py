"""The rule DSL of the Go system, compiled once into a closure.

Grammar (keywords case-insensitive, AND/OR short-circuit)::

    expr    = and ("OR" and)*
    and     = unary ("AND" unary)*
    unary   = "NOT" unary | primary
    primary = "(" expr ")" | term OP term
    OP      = == | != | contains | startsWith | < | > | <= | >=
    term    = "quoted" | 'quoted' | number | field
    field   = type | from | to | role | content | classification | metadata.<key>

Tokens are separated by blanks; parentheses stand alone; operators must be blank-separated
(``a==b`` is one token). ``to`` is the recipient being evaluated (rules run per delivery).
An unknown field or operator is an error when the rule is compiled, pointing at the token, and
so is nesting (parentheses and NOTs) deeper than ``MAX_DEPTH``.

``< > <= >=`` compare finite numbers (ASCII digits, an optional sign, point and exponent). A
value that is not one (text, ``""``, ``nan``, ``inf``) makes the rule deny, whatever its
decision (fail closed), with a reason that names the field but never shows its value: values
come from messages, and reasons go to the event stream and the audit log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from .._errors import ConfigurationError
from .._message import Message
from .._supervisor import Decision
from ._content import ContentView
from ._normalise import fold

__all__ = ["MAX_DEPTH", "Rule", "RuleError", "compile_rule"]

# Parentheses and NOTs nest at most this deep: rules are written by people, and a bound keeps a
# hostile rule (3,000 parentheses) a caret error instead of a RecursionError while compiling or
# evaluating.
MAX_DEPTH = 64


class RuleError(ConfigurationError):
    """A rule that does not parse; the message shows the rule and points at the token."""


class NotANumberError(ValueError):
    """A numeric comparison met a value that is not a finite number (the rule then denies)."""


Getter = Callable[[Message, str], str]
Predicate = Callable[[Message, str], bool]

_TOKEN = re.compile(r"\"[^\"]*\"|'[^']*'|[()]|[^\s()]+")
_OPS = {"==", "!=", "contains", "startswith", "<", ">", "<=", ">="}


@dataclass(frozen=True, slots=True)
class _Tok:
    text: str
    col: int


def _stringify(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value).removesuffix(".0") if value.is_integer() else repr(value)
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number(text: str) -> float | None:
    """``text`` as a finite number, else None (Python's float() would also take "nan", "inf",
    "1_000", blanks and other scripts' digits)."""
    if _NUMBER.fullmatch(text) is None:
        return None
    value = float(text)
    return value if math.isfinite(value) else None


class _Parser:
    def __init__(self, rule_id: str, source: str, view: ContentView) -> None:
        self.rule_id = rule_id
        self.source = source
        self.view = view
        self.tokens = [_Tok(m.group(), m.start()) for m in _TOKEN.finditer(source)]
        self.pos = 0
        self.depth = 0

    def fail(self, problem: str, tok: _Tok | None = None) -> RuleError:
        col = tok.col if tok else len(self.source)
        where = f"column {col + 1}" if tok else "the end"
        line, caret = self.source, col
        if len(line) > 100:  # show the 100 characters around the problem
            start = max(0, min(col - 50, len(line) - 100))
            line, caret = line[start : start + 100], col - start
            if start > 0:
                line, caret = "..." + line, caret + 3
            if start + 100 < len(self.source):
                line += "..."
        return RuleError(
            f"rule {self.rule_id}: {problem} at {where}\n    {line}\n    {' ' * caret}^"
        )

    def nest(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH} (parentheses and NOTs)", tok)

    def peek(self) -> _Tok | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise self.fail("unexpected end of rule")
        self.pos += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.text.upper() == word:
            self.pos += 1
            return True
        return False

    def parse(self) -> Predicate:
        if not self.tokens:
            raise RuleError(f"rule {self.rule_id}: the rule is empty")
        pred = self.expr()
        tok = self.peek()
        if tok is not None:
            raise self.fail(f"unexpected {tok.text!r}", tok)
        return pred

    def expr(self) -> Predicate:
        parts = [self.conj()]
        while self.keyword("OR"):
            parts.append(self.conj())
        if len(parts) == 1:
            return parts[0]
        return lambda m, r: any(p(m, r) for p in parts)

    def conj(self) -> Predicate:
        parts = [self.unary()]
        while self.keyword("AND"):
            parts.append(self.unary())
        if len(parts) == 1:
            return parts[0]
        return lambda m, r: all(p(m, r) for p in parts)

    def unary(self) -> Predicate:
        tok = self.peek()
        if tok is not None and self.keyword("NOT"):
            self.nest(tok)
            inner = self.unary()
            self.depth -= 1
            return lambda m, r: not inner(m, r)
        return self.primary()

    def primary(self) -> Predicate:
        tok = self.peek()
        if tok is not None and tok.text == "(":
            self.nest(tok)
            self.pos += 1
            inner = self.expr()
            close = self.peek()
            if close is None or close.text != ")":
                raise self.fail("expected ')'", close)
            self.pos += 1
            self.depth -= 1
            return inner
        left, left_name = self.term()
        op_tok = self.take()
        op = op_tok.text.lower()
        if op not in _OPS:
            raise self.fail(f"unknown operator {op_tok.text!r}", op_tok)
        right, right_name = self.term()
        if left_name == "content" and op == "contains" and right_name[:1] in ("'", '"'):
            return self.content_contains(right_name[1:-1])
        return self.compare(left, op, right, (left_name, right_name))

    def content_contains(self, needle: str) -> Predicate:
        """``content contains "DROP TABLE"`` also holds for "drop  table" and other disguises:
        it matches the payload's JSON as written, or the folded text the PII and injection
        policies scan (payload and metadata, see ``_normalise``)."""
        view, folded = self.view, fold(needle)
        return lambda m, r: needle in view.text(m) or folded in view.scan(m)

    def term(self) -> tuple[Getter, str]:
        """A getter, and how a reason may name it: a literal (from the rule) as itself, a field
        by its name, never by its value."""
        tok = self.take()
        text = tok.text
        if text in ("(", ")") or text.upper() in ("AND", "OR", "NOT"):
            raise self.fail(f"expected a field or a value, got {text!r}", tok)
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            literal = text[1:-1]
            return (lambda m, r: literal), text
        if _number(text) is not None:
            return (lambda m, r: text), text
        return self.field(tok), text

    def field(self, tok: _Tok) -> Getter:
        name = tok.text
        view = self.view
        if name == "type":
            return lambda m, r: m.type
        if name == "from":
            return lambda m, r: m.sender
        if name == "to":
            return lambda m, r: r
        if name == "role":
            return lambda m, r: m.role.value
        if name == "classification":
            return lambda m, r: m.classification.value
        if name == "content":
            return lambda m, r: view.text(m)
        if name.startswith("metadata.") and len(name) > len("metadata."):
            key = name[len("metadata.") :]
            return lambda m, r: _stringify(m.metadata.get(key))
        raise self.fail(f"unknown field {name!r}", tok)

    def compare(self, left: Getter, op: str, right: Getter, names: tuple[str, str]) -> Predicate:
        if op == "==":
            return lambda m, r: left(m, r) == right(m, r)
        if op == "!=":
            return lambda m, r: left(m, r) != right(m, r)
        if op == "contains":
            return lambda m, r: right(m, r) in left(m, r)
        if op == "startswith":
            return lambda m, r: left(m, r).startswith(right(m, r))
        compare: Callable[[float, float], bool] = {
            "<": float.__lt__,
            ">": float.__gt__,
            "<=": float.__le__,
            ">=": float.__ge__,
        }[op]

        def numeric(m: Message, r: str) -> bool:
            x, y = _number(left(m, r)), _number(right(m, r))
            if x is None or y is None:
                culprit = names[0] if x is None else names[1]
                raise NotANumberError(f"{culprit} is not a number (in {names[0]} {op} {names[1]})")
            return compare(x, y)

        return numeric


def compile_rule(rule_id: str, when: str, view: ContentView | None = None) -> Predicate:
    """Compile ``when`` into ``predicate(msg, recipient) -> bool``; raises RuleError."""
    return _Parser(rule_id, when, view or ContentView()).parse()


class Rule:
    """A DSL rule as a policy: when ``when`` holds, ``decision`` (deny by default) with
    ``reason`` (default ``matched rule <id>``); otherwise allow. Its name is its id."""

    def __init__(
        self,
        id: str,
        when: str,
        decision: str = "deny",
        reason: str = "",
        view: ContentView | None = None,
    ) -> None:
        if decision.lower() not in ("allow", "deny"):
            raise RuleError(f"rule {id}: decision must be 'allow' or 'deny', not {decision!r}")
        self.name = id
        self.when = when
        self.allow = decision.lower() == "allow"
        self.reason = reason or f"matched rule {id}"
        self._predicate = compile_rule(id, when, view)

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        try:
            holds = self._predicate(msg, recipient)
        except NotANumberError as exc:  # fail closed, naming the field but not its value
            return Decision.deny(self.name, f"rule {self.name}: {exc}")
        if holds and not self.allow:
            return Decision.deny(self.name, self.reason)
        return Decision.ALLOW
