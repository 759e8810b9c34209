"""The rule DSL of the Go system, parsed once into a tree and compiled into a closure (the
policy plan also compiles it specialised for each message type, see ``_specialise``).

Grammar (keywords case-insensitive, AND/OR short-circuit)::

    expr    = and ("OR" and)*
    and     = unary ("AND" unary)*
    unary   = "NOT" unary | primary
    primary = "(" expr ")" | term OP term
    OP      = == | != | contains | startsWith | < | > | <= | >=
    term    = "quoted" | 'quoted' | number | field
    field   = type | from | to | role | content | classification | metadata.<key>
            | payload.<key>[.<key>...]

Tokens are separated by blanks; parentheses stand alone; operators must be blank-separated
(``a==b`` is one token). ``to`` is the recipient being evaluated (rules run per delivery).
``payload.amount_paise`` reads a field of the payload (``payload.beneficiary.ifsc`` a nested
one; missing: ``""``): what the sender wrote, where ``metadata.<key>`` is what a caller may
claim (docs/governance.md, "Whose word a rule takes").
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
from typing import ClassVar

from .._errors import ConfigurationError
from .._message.envelope import Message
from .._runtime.policy import Decision, DeliveryCheck, PlanStep
from ._content import ContentView
from ._normalise import fold
from ._screen import ScreenPart

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
    if isinstance(value, tuple | list):  # a metadata list is a tuple, a payload's JSON a list
        return ",".join(_stringify(v) for v in value)
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
    def __init__(self, rule_id: str, source: str) -> None:
        self.rule_id = rule_id
        self.source = source
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

    def parse(self) -> _Node:
        if not self.tokens:
            raise RuleError(f"rule {self.rule_id}: the rule is empty")
        node = self.expr()
        tok = self.peek()
        if tok is not None:
            raise self.fail(f"unexpected {tok.text!r}", tok)
        return node

    def expr(self) -> _Node:
        parts = [self.conj()]
        while self.keyword("OR"):
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else _Any(tuple(parts))

    def conj(self) -> _Node:
        parts = [self.unary()]
        while self.keyword("AND"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else _All(tuple(parts))

    def unary(self) -> _Node:
        tok = self.peek()
        if tok is not None and self.keyword("NOT"):
            self.nest(tok)
            inner = self.unary()
            self.depth -= 1
            return _Not(inner)
        return self.primary()

    def primary(self) -> _Node:
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
        left = self.term()
        op_tok = self.take()
        op = op_tok.text.lower()
        if op not in _OPS:
            raise self.fail(f"unknown operator {op_tok.text!r}", op_tok)
        right = self.term()
        if left.text == "content" and op == "contains" and right.quoted is not None:
            # ``content contains "DROP TABLE"`` also holds for "drop  table" and other
            # disguises: it matches the payload's JSON as written, or the folded text the PII
            # and injection policies scan (payload and metadata, see ``_normalise``).
            return _ContentContains(right.quoted)
        return _Compare(left, op, right)

    def term(self) -> _Term:
        """A literal (from the rule) or a field; a reason may name either by its text, never
        a field by its value."""
        tok = self.take()
        text = tok.text
        if text in ("(", ")") or text.upper() in ("AND", "OR", "NOT"):
            raise self.fail(f"expected a field or a value, got {text!r}", tok)
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            return _Term(text, text[1:-1], text[1:-1])
        if _number(text) is not None:
            return _Term(text, text)
        name = text
        keys = name[len("payload.") :] if name.startswith("payload.") else ""
        if keys and "" in keys.split("."):
            # ``payload..text`` or ``payload.text.``: a key of no name, which no payload has.
            raise self.fail(f"field {name!r} has an empty key: write payload.KEY.KEY", tok)
        if name in _FIELDS or any(
            name.startswith(prefix) and len(name) > len(prefix) for prefix in _KEYED
        ):
            return _Term(text, None)
        raise self.fail(f"unknown field {name!r}", tok)


# --- the rule as a tree: compiled into closures, and specialised for one message type --------

_FIELDS = ("type", "from", "to", "role", "classification", "content")
_KEYED = ("metadata.", "payload.")


@dataclass(frozen=True, slots=True)
class _Term:
    text: str  # as written in the rule: how a reason names it
    literal: str | None  # the value of a literal; None for a field
    quoted: str | None = None  # the value of a quoted literal


@dataclass(frozen=True, slots=True)
class _Compare:
    left: _Term
    op: str
    right: _Term


@dataclass(frozen=True, slots=True)
class _ContentContains:
    needle: str


@dataclass(frozen=True, slots=True)
class _All:
    parts: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Any:
    parts: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Not:
    inner: _Node


@dataclass(frozen=True, slots=True)
class _Const:
    value: bool


_Node = _Compare | _ContentContains | _All | _Any | _Not | _Const


def _getter(term: _Term, view: ContentView) -> Getter:
    literal = term.literal
    if literal is not None:
        return lambda m, r: literal
    name = term.text
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
    if name.startswith("payload."):
        path = name[len("payload.") :].split(".")
        return lambda m, r: _stringify(_field_at(view.data(m), path))
    key = name[len("metadata.") :]
    return lambda m, r: _stringify(m.metadata.get(key))


def _field_at(data: object, path: list[str]) -> object:
    """The value at ``path`` in parsed JSON, or None where it leads nowhere."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _compile(node: _Node, view: ContentView) -> Predicate:
    if isinstance(node, _Any):
        parts = [_compile(p, view) for p in node.parts]
        return lambda m, r: any(p(m, r) for p in parts)
    if isinstance(node, _All):
        parts = [_compile(p, view) for p in node.parts]
        return lambda m, r: all(p(m, r) for p in parts)
    if isinstance(node, _Not):
        inner = _compile(node.inner, view)
        return lambda m, r: not inner(m, r)
    if isinstance(node, _Const):
        value = node.value
        return lambda m, r: value
    if isinstance(node, _ContentContains):
        needle, folded = node.needle, fold(node.needle)
        in_strings = _only_in_strings(needle)
        return lambda m, r: view.contains(m, needle, folded, in_strings)
    return _comparison(node, _getter(node.left, view), _getter(node.right, view))


# What JSON writes outside strings: punctuation, numbers (with exponent and sign) and the
# literals true, false and null.
_JSON_PUNCTUATION = frozenset('"\\:,[]{}')
_NUMBER_OR_LITERAL = frozenset("0123456789+-.eEtruefalsn")


def _only_in_strings(needle: str) -> bool:
    """Whether ``needle`` can be found in an ASCII payload's JSON (nothing escaped) only inside
    one string: it holds no JSON punctuation and no control character (so a match cannot span
    two tokens or an escape), and a character that no number or literal has. A needle with
    other characters is never found in such JSON at all."""
    if not needle.isascii():
        return True
    return (
        needle.isprintable()
        and _JSON_PUNCTUATION.isdisjoint(needle)
        and not _NUMBER_OR_LITERAL.issuperset(needle)
    )


def _comparison(node: _Compare, left: Getter, right: Getter) -> Predicate:
    op = node.op
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
    names = node.left.text, node.right.text

    def numeric(m: Message, r: str) -> bool:
        x, y = _number(left(m, r)), _number(right(m, r))
        if x is None or y is None:
            culprit = names[0] if x is None else names[1]
            raise NotANumberError(f"{culprit} is not a number (in {names[0]} {op} {names[1]})")
        return compare(x, y)

    return numeric


def _specialise(node: _Node, message_type: str) -> _Node:
    """``node`` for messages of one type: comparisons of ``type`` with a literal become
    constants, and the constants are folded as evaluation would meet them, left to right.
    A part before a deciding constant stays when evaluating it could raise (a numeric
    comparison fails closed, reading ``content`` can fail), so a rule denies exactly when it
    did unspecialised."""
    if isinstance(node, _Compare):
        sides = [node.left, node.right]
        if all(t.literal is not None or t.text == "type" for t in sides):
            left, right = (message_type if t.literal is None else t.literal for t in sides)
            if node.op in ("==", "!=", "contains", "startswith"):
                return _Const(_STATIC[node.op](left, right))
        return node
    if isinstance(node, _Not):
        inner = _specialise(node.inner, message_type)
        return _Const(not inner.value) if isinstance(inner, _Const) else _Not(inner)
    if isinstance(node, _All | _Any):
        deciding = isinstance(node, _Any)  # the value that ends the evaluation
        kept: list[_Node] = []
        for part in node.parts:
            part = _specialise(part, message_type)
            if not isinstance(part, _Const):
                kept.append(part)
            elif part.value is deciding:
                if all(_cannot_raise(k) for k in kept):
                    return part
                kept.append(part)
                break
        if not kept:
            return _Const(not deciding)
        return kept[0] if len(kept) == 1 else type(node)(tuple(kept))
    return node


_STATIC: dict[str, Callable[[str, str], bool]] = {
    "==": str.__eq__,
    "!=": str.__ne__,
    "contains": lambda left, right: right in left,
    "startswith": str.startswith,
}


def _cannot_raise(node: _Node) -> bool:
    if isinstance(node, _Compare):
        # Reading the payload (``content``, ``payload.<key>``) dumps it, which can fail.
        return node.op in ("==", "!=", "contains", "startswith") and not any(
            t.text == "content" or t.text.startswith("payload.") for t in (node.left, node.right)
        )
    if isinstance(node, _Not):
        return _cannot_raise(node.inner)
    if isinstance(node, _All | _Any):
        return all(_cannot_raise(p) for p in node.parts)
    return isinstance(node, _Const)


def _reads_recipient(node: _Node) -> bool:
    if isinstance(node, _Compare):
        return "to" in (node.left.text, node.right.text)
    if isinstance(node, _Not):
        return _reads_recipient(node.inner)
    if isinstance(node, _All | _Any):
        return any(_reads_recipient(p) for p in node.parts)
    return False


def compile_rule(rule_id: str, when: str, view: ContentView | None = None) -> Predicate:
    """Compile ``when`` into ``predicate(msg, recipient) -> bool``; raises RuleError."""
    view = view or ContentView()
    return _compile(_Parser(rule_id, when).parse(), view)


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
        self._view = view or ContentView()
        self._tree = _Parser(id, when).parse()
        self._predicate = _compile(self._tree, self._view)

    @property
    def settings(self) -> dict[str, object]:
        """What it decides by (``DeclaredPolicy``)."""
        return {
            "when": self.when,
            "decision": "allow" if self.allow else "deny",
            "reason": self.reason,
        }

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        return self._decide(self._predicate, msg, recipient)

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = False

    @property
    def plan_class(self) -> type[object]:
        return Rule

    def plan_step(self, message_type: str) -> PlanStep | None:
        tree = _specialise(self._tree, message_type)
        if tree == _Const(False) or (self.allow and _cannot_raise(tree)):
            return None  # never denies a message of this type
        predicate, decide = _compile(tree, self._view), self._decide
        if _reads_recipient(tree):
            check: DeliveryCheck = lambda m, r: decide(predicate, m, r)  # noqa: E731
            return lambda m: check
        return lambda m: decide(predicate, m, "")

    def screen_part(self, message_type: str) -> ScreenPart | None:
        """A deny rule that is one ``content contains`` (for this type) whose needle JSON can
        hold only inside a string: it allows a walked payload whose scan lacks the needle."""
        tree = _specialise(self._tree, message_type)
        if self.allow or not isinstance(tree, _ContentContains):
            return None
        if not _only_in_strings(tree.needle):
            return None
        return ScreenPart(self._view, needle=fold(tree.needle))

    def _decide(self, predicate: Predicate, msg: Message, recipient: str) -> Decision:
        try:
            holds = predicate(msg, recipient)
        except NotANumberError as exc:  # fail closed, naming the field but not its value
            return Decision.deny(self.name, f"rule {self.name}: {exc}")
        if holds and not self.allow:
            return Decision.deny(self.name, self.reason)
        return Decision.ALLOW
