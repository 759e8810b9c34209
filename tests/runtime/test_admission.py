"""Admission runs for every delivery; the first deny wins; a policy that raises denies."""

from __future__ import annotations

from genie import Decision, MemoryAuditLog, Message, Policy, Runtime

from ..conftest import DenyTo, Echo, Ping, PolicyFn


def broken(msg: Message, recipient: str) -> Decision:
    raise KeyError("region")


async def test_a_policy_that_raises_denies_and_says_so() -> None:
    audit = MemoryAuditLog()
    async with Runtime([Echo("echo")], policies=[PolicyFn("residency", broken)], audit=audit) as rt:
        result = await rt.ask(rt.message(Ping(), recipient="echo"))
    assert result.status == "partial"
    [missing] = result.missing
    assert (missing.kind, missing.policy) == ("denied", "residency")
    assert missing.reason == "policy raised KeyError: 'region'"
    assert rt.statistics().denied == 1
    [record] = audit.records
    assert (record.actor, record.action, record.target) == ("residency", "denied", "echo")


async def test_first_deny_wins_and_later_policies_do_not_run() -> None:
    calls: list[str] = []

    def spy(msg: Message, recipient: str) -> Decision:
        calls.append(recipient)
        return Decision.ALLOW

    policies: list[Policy] = [
        PolicyFn("spy-1", spy),
        DenyTo("echo", name="first"),
        DenyTo("echo", name="second"),
        PolicyFn("spy-2", spy),
    ]
    async with Runtime([Echo("echo")], policies=policies) as rt:
        result = await rt.ask(rt.message(Ping(), recipient="echo"))
    assert [m.policy for m in result.missing] == ["first"]
    assert calls == ["echo"]  # spy-1 ran, spy-2 never did


async def test_policies_run_per_recipient() -> None:
    a, b = Echo("a"), Echo("b")
    async with Runtime([a, b], policies=[DenyTo("b")]) as rt:
        rt.subscribe("a", "ping")
        rt.subscribe("b", "ping")
        msg = rt.message(Ping(n=1))
        gather = rt.gather(msg.correlation_id, senders=["a", "b"])
        await rt.publish(msg)
        result = await gather.wait()
    assert [m.sender for m in result.replies] == ["a"]
    assert [(m.key, m.kind) for m in result.missing] == [("b", "denied")]
    assert len(a.seen) == 1
    assert b.seen == []
