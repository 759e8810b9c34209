"""The rule DSL: the Go grammar and test expressions, and errors that point at the token."""

from __future__ import annotations

from typing import Any

import pytest

from genie import Classification, Message, Payload, Role
from genie._supervisor import Limits, admit
from genie.policies import Rule, RuleError, compile_rule


class Text(Payload):
    message_type = "raw_dump"
    content: str = ""


def m(
    content: str = "",
    sender: str = "user",
    classification: Classification = Classification.INTERNAL,
    **meta: Any,
) -> Message:
    return Message.new(
        Text(content=content),
        sender=sender,
        metadata=meta,
        classification=classification,
        role=Role.USER,
    )


def holds(rule: str, msg: Message, recipient: str = "agent") -> bool:
    return compile_rule("t", rule)(msg, recipient)


def test_go_expressions() -> None:
    assert holds(
        'classification == "pii" AND metadata.region != "in"',
        m(classification=Classification.PII, region="us"),
    )
    assert not holds(
        'classification == "pii" AND metadata.region != "in"',
        m(classification=Classification.PII, region="in"),
    )
    rule = '(type == "raw_dump" OR type == "secret_export") AND metadata.tier != "admin"'
    assert holds(rule, m(tier="user"))
    assert not holds(rule, m(tier="admin"))
    assert holds('NOT metadata.trace_id == "present"', m())
    assert holds('content contains "DROP TABLE"', m("x; DROP TABLE users"))
    assert holds('from startsWith "ext-"', m(sender="ext-bot"))
    assert holds("metadata.amount > 100000", m(amount=250000))
    assert not holds("metadata.amount > 100000", m(amount=99.5))


def test_keywords_are_case_insensitive_and_quotes_either_kind() -> None:
    assert holds("type == 'raw_dump' and not role == 'agent'", m())
    assert holds('to == "vault" or to == "bank"', m(), "bank")


def test_operators() -> None:
    msg = m(n=5, flag=True, roles=["a", "b"])
    assert holds("metadata.n >= 5", msg)
    assert holds("metadata.n <= 5", msg)
    assert holds("metadata.n < 6", msg)
    assert not holds("metadata.n > 5", msg)
    assert holds('metadata.flag == "true"', msg)
    assert holds('metadata.roles contains "b"', msg)
    assert holds('metadata.missing == ""', msg)


def test_numeric_compare_on_text_denies_at_evaluation() -> None:
    rule = Rule("amount-cap", "metadata.amount > 10")
    decision = admit(m(amount="lots"), "agent", 0, Limits(), [rule])
    assert not decision.allowed
    assert decision.policy == "amount-cap"
    assert (
        decision.reason
        == 'policy raised ValueError: numeric compare requires numbers, got "lots" > "10"'
    )


def test_rule_decisions_and_reasons() -> None:
    deny = Rule("no-dumps", 'type == "raw_dump"')
    assert deny.evaluate(m(), "a").reason == "matched rule no-dumps"
    assert deny.evaluate(m(), "a").policy == "no-dumps"
    custom = Rule("no-dumps", 'type == "raw_dump"', reason="dumps are not allowed")
    assert custom.evaluate(m(), "a").reason == "dumps are not allowed"
    assert Rule("ok", 'type == "raw_dump"', decision="ALLOW").evaluate(m(), "a").allowed
    assert Rule("other", 'type == "x"').evaluate(m(), "a").allowed


@pytest.mark.parametrize(
    ("rule", "problem", "column"),
    [
        ('tpye == "x"', "unknown field 'tpye'", 1),
        ('type === "x"', "unknown operator '==='", 6),
        ('type=="x"', "unknown field 'type==\"x\"'", 1),
        ('(type == "x"', "expected ')'", None),
        ('type == "x" AND', "unexpected end of rule", None),
        ('type == "x" "y"', "unexpected '\"y\"'", 13),
        ("type == AND", "expected a field or a value, got 'AND'", 9),
    ],
)
def test_errors_point_at_the_token(rule: str, problem: str, column: int | None) -> None:
    with pytest.raises(RuleError) as info:
        compile_rule("r1", rule)
    text = str(info.value)
    assert text.startswith(f"rule r1: {problem}")
    if column is not None:
        assert f"at column {column}" in text
        caret_line = text.splitlines()[-1]
        assert caret_line.index("^") - 4 == column - 1


def test_empty_rule_and_bad_decision() -> None:
    with pytest.raises(RuleError, match="the rule is empty"):
        compile_rule("r", "   ")
    with pytest.raises(RuleError, match="decision must be 'allow' or 'deny'"):
        Rule("r", 'type == "x"', decision="maybe")
