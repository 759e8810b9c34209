"""The rule DSL: the Go grammar and test expressions, and errors that point at the token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from genie import (
    BaseAgent,
    Classification,
    Context,
    JsonlAuditLog,
    Message,
    Payload,
    Role,
    Runtime,
    handler,
)
from genie._runtime.policy import Limits, admit
from genie.policies import Rule, RuleError, compile_rule
from genie.policies._dsl import MAX_DEPTH


class Text(Payload):
    message_type = "raw_dump"
    content: str = ""


class Sink(BaseAgent):
    @handler
    async def on_text(self, payload: Text, ctx: Context) -> None:
        return None


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


@pytest.mark.parametrize(
    "amount",
    ["lots", "", "nan", "NaN", "-nan", "inf", "-Infinity", "1e999", "1_000", " 12", "١٢", "0x10"],
)
@pytest.mark.parametrize("decision", ["deny", "allow"])
def test_a_numeric_compare_on_what_is_not_a_finite_number_denies(
    amount: str, decision: str
) -> None:
    # "nan" compares false both ways, so a rule on it would silently never fire; "inf" and
    # the rest are not amounts either. Fail closed, whatever the rule's decision.
    for rule in (
        Rule("amount-cap", "metadata.amount > 10", decision),
        Rule("floor", "5 <= metadata.amount", decision),
    ):
        got = admit(m(amount=amount), "agent", 0, Limits(), [rule])
        assert not got.allowed
        assert got.policy == rule.name
        side = rule.when.replace(" ", " ")
        assert got.reason == f"rule {rule.name}: metadata.amount is not a number (in {side})"


def test_numbers_still_compare() -> None:
    for amount, above in (
        ("11", True),
        ("10", False),
        ("-3.5", False),
        ("1e3", True),
        ("+.5", False),
    ):
        assert holds("metadata.amount > 10", m(amount=amount)) is above


def test_a_deny_reason_never_shows_the_payload(tmp_path: Path) -> None:
    card = "4111111111111111"
    rule = Rule("size", "content > 5")
    decision = admit(m(f"my card is {card}"), "agent", 0, Limits(), [rule])
    assert not decision.allowed
    assert decision.reason == "rule size: content is not a number (in content > 5)"


async def test_nor_does_the_audit_trail_or_the_event_stream(tmp_path: Path) -> None:
    card = "4111111111111111"
    audit = JsonlAuditLog(tmp_path / "audit.jsonl")
    async with Runtime([Sink("agent")], policies=[Rule("size", "content > 5")], audit=audit) as rt:
        msg = rt.message(Text(content=f"card {card}"), recipient="agent")
        async with rt.events(msg.correlation_id) as stream:
            result = await rt.ask(msg)
            lines = [event.line(0.0) async for event in stream]
    audit.close()
    why = "rule size: content is not a number (in content > 5)"
    assert result.missing[0].reason == why
    assert any(why in line for line in lines)
    assert card not in "\n".join(lines)
    trail = (tmp_path / "audit.jsonl").read_text()
    assert [json.loads(row)["details"]["reason"] for row in trail.splitlines()] == [why]
    assert card not in trail


@pytest.mark.parametrize(
    ("nesting", "column"),
    [
        ("(" * 3000 + 'type == "x"' + ")" * 3000, 65),
        ("NOT " * 3000 + 'type == "x"', 4 * 64 + 1),
        ("( NOT " * 1500 + 'type == "x"' + " )" * 1500, 6 * 32 + 1),
    ],
)
def test_deep_nesting_is_a_caret_error(nesting: str, column: int) -> None:
    with pytest.raises(RuleError) as info:
        compile_rule("deep", nesting)
    text = str(info.value)
    assert text.startswith(f"rule deep: nesting deeper than {MAX_DEPTH} (parentheses and NOTs)")
    assert f"at column {column}" in text
    shown, caret = text.splitlines()[-2:]
    assert len(shown) < 120  # the 100 characters around the problem, not 9,000
    assert nesting[column - 1 : column + 9] in shown
    assert shown[caret.index("^")] == nesting[column - 1]


def test_nesting_up_to_the_bound_compiles_and_evaluates() -> None:
    deep = "(" * MAX_DEPTH + 'type == "raw_dump"' + ")" * MAX_DEPTH
    assert holds(deep, m())
    nots = "NOT " * MAX_DEPTH + 'type == "raw_dump"'
    assert holds(nots, m()) is (MAX_DEPTH % 2 == 0)


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
        # It compiled, and read "" for every message.
        ('payload..text == "x"', "field 'payload..text' has an empty key", 1),
        ('type == "x" AND payload.text. == "y"', "field 'payload.text.' has an empty key", 17),
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


@pytest.mark.parametrize(
    "text",
    ["x; DROP TABLE users", "x; drop  table users", "x; DROP\nTABLE", "x; DR\u200bOP T\u0410BLE"],
)
def test_content_contains_sees_through_disguises(text: str) -> None:
    assert holds('content contains "DROP TABLE"', m(text))


def test_content_contains_still_needs_the_words() -> None:
    assert not holds('content contains "DROP TABLE"', m("dropped tables"))
    assert not holds('content contains "DROP TABLE"', m("DROPTABLE"))
    # Other fields and operators compare the text as written.
    assert not holds('metadata.note contains "DROP TABLE"', m(note="drop table"))
    assert holds('content contains "DROP"', m("DROP"))


class Payment(Payload):
    message_type = "payment_request"
    amount_paise: int
    beneficiary: dict[str, str]


def pay(paise: int, **meta: Any) -> Message:
    beneficiary = {"ifsc": "SBIN0001234"}
    return Message.new(
        Payment(amount_paise=paise, beneficiary=beneficiary), sender="user", metadata=meta
    )


def test_payload_fields_are_read_from_the_payload_not_the_metadata() -> None:
    rule = Rule(
        "large-transfer",
        'type == "payment_request" AND payload.amount_paise > 1000000000',
        reason="transfers above 1 crore need a human",
    )
    assert not rule.evaluate(pay(1_000_000_001), "payments").allowed
    # A caller's claim in the metadata changes nothing: the rule reads what the payment says.
    assert rule.evaluate(pay(5_000, amount="1"), "payments").allowed
    assert not rule.evaluate(pay(2_000_000_000, amount="1"), "payments").allowed
    nested = Rule("sbi-only", 'payload.beneficiary.ifsc startsWith "HDFC"')
    assert nested.evaluate(pay(1), "payments").allowed
    assert (
        not Rule("sbi", 'payload.beneficiary.ifsc startsWith "SBIN"').evaluate(pay(1), "p").allowed
    )
    # A field that is not there reads as "", and a numeric compare on it fails closed.
    missing = Rule("missing", "payload.nothing.here > 1")
    decision = missing.evaluate(pay(1), "payments")
    assert decision.reason == (
        "rule missing: payload.nothing.here is not a number (in payload.nothing.here > 1)"
    )


class Transfer(Payload):
    message_type = "transfer"
    to_accounts: list[str]
    splits: tuple[int | float | bool, ...] = ()


def test_a_payload_list_compares_as_its_items_joined_by_commas() -> None:
    """As a metadata list does: ``["acc-1", "acc-2"]`` is ``acc-1,acc-2``, each item as a
    value alone is (``true``, ``2`` for ``2.0``), never Python's ``['acc-1', 'acc-2']``."""
    msg = Message.new(
        Transfer(to_accounts=["acc-1", "acc-2"], splits=(2.0, True, 3)),
        sender="user",
        metadata={"user_roles": ("user", "admin")},
    )
    assert holds('payload.to_accounts == "acc-1,acc-2"', msg)
    assert holds('payload.to_accounts startsWith "acc-1,"', msg)
    assert holds('payload.splits == "2,true,3"', msg)
    assert holds('metadata.user_roles == "user,admin"', msg)
    rule = Rule("two-payees", 'payload.to_accounts == "acc-1,acc-2"', reason="split payment")
    assert admit(msg, "payments", 0, Limits(), [rule]).reason == "split payment"


def test_payload_without_a_key_is_an_error_at_the_token() -> None:
    with pytest.raises(RuleError, match=r"unknown field 'payload\.'"):
        compile_rule("r", 'payload. == "x"')
