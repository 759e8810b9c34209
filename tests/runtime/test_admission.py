"""Admission runs for every delivery; the first deny wins; a policy that raises denies."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from genie import (
    BaseAgent,
    ConfigurationError,
    Context,
    Decision,
    MemoryAuditLog,
    Message,
    Policy,
    Risk,
    Runtime,
    handler,
)
from genie.policies import (
    ContentView,
    PIIBlock,
    PromptInjection,
    RiskGate,
    load_policy_file,
)

from ..conftest import DenyTo, Echo, Note, Ping, PolicyFn, Pong, in_threads

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize(
    "made",
    [
        lambda: Decision.deny(None, "no region"),  # type: ignore[arg-type]
        lambda: Decision.deny("", ""),
        lambda: Decision.deny("residency", None),  # type: ignore[arg-type]
        lambda: Decision("no", "residency", "no region"),  # type: ignore[arg-type]
    ],
    ids=["no-name", "blank", "no-reason", "allowed-as-text"],
)
async def test_a_decision_that_names_no_policy_or_reason_is_the_policys_failure(
    made: Callable[[], Decision],
) -> None:
    # A denial is recorded, counted and reported by its policy and reason: one made without
    # them (or an answer that is not a yes or no) is the policy's mistake, which denies
    # naming the policy, and the runtime goes on.
    def mistaken(msg: Message, recipient: str) -> Decision:
        return made() if msg.payload == Ping(n=1) else Decision.ALLOW

    audit = MemoryAuditLog()
    policy = PolicyFn("residency", mistaken)
    async with Runtime([Echo("echo")], policies=[policy], audit=audit) as rt:
        result = await rt.ask(rt.message(Ping(n=1), recipient="echo"))
        after = await rt.ask(rt.message(Ping(n=2), recipient="echo"))
    [missing] = result.missing
    assert (missing.kind, missing.policy) == ("denied", "residency")
    assert missing.reason.startswith("policy raised InvalidArgumentError: ")
    assert after.replies
    [record] = audit.records
    assert (record.actor, record.action) == ("residency", "denied")


async def test_a_policy_calling_sys_exit_denies_and_the_runtime_goes_on() -> None:
    # sys.exit() in a policy (its own, or a library's on input it cannot take) is the
    # policy's failure on that message: a message must not be able to stop the runtime.
    def exits(msg: Message, recipient: str) -> Decision:
        if msg.payload == Ping(n=1):
            sys.exit(3)
        return Decision.ALLOW

    async with Runtime([Echo("echo")], policies=[PolicyFn("residency", exits)]) as rt:
        result = await rt.ask(rt.message(Ping(n=1), recipient="echo"))
        after = await rt.ask(rt.message(Ping(n=2), recipient="echo"))
    [missing] = result.missing
    assert (missing.kind, missing.policy) == ("denied", "residency")
    assert missing.reason == "policy raised SystemExit: 3"
    assert after.replies


async def test_a_policy_with_a_blank_name_that_raises_is_named_by_its_class() -> None:
    async with Runtime([Echo("echo")], policies=[PolicyFn("", broken)]) as rt:
        result = await rt.ask(rt.message(Ping(), recipient="echo"))
    [missing] = result.missing
    assert (missing.policy, missing.reason) == ("PolicyFn", "policy raised KeyError: 'region'")


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


class Judged:
    """A policy that allows everything and counts what it was asked: (message, consumer)."""

    name = "judged"

    def __init__(self, deny: str | None = None) -> None:
        self.asked: Counter[tuple[str, str, str]] = Counter()
        self.deny = deny  # a sender whose replies are refused

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        self.asked[msg.type, msg.id, recipient] += 1
        if msg.type == "pong" and msg.sender == self.deny:
            return Decision.deny(self.name, "refused reply")
        return Decision.ALLOW


async def test_a_gathered_reply_is_judged_once_on_its_path() -> None:
    """Admission once per delivery: the request once for each subscriber, each reply once
    for the gather that collects it, never again when it is offered; a refused reply is one
    denial and one audit row."""
    judged = Judged(deny="e3")
    audit = MemoryAuditLog()
    agents = [Echo(f"e{i}") for i in range(5)]
    async with Runtime(agents, policies=[judged], audit=audit) as rt:
        for agent in agents:
            rt.subscribe(agent.id, "ping")
        msg = rt.message(Ping(n=1))
        gather = rt.gather(msg.correlation_id, senders=[a.id for a in agents])
        await rt.publish(msg)
        result = await gather.wait()
    assert sorted(m.sender for m in result.replies) == ["e0", "e1", "e2", "e4"]
    assert [(m.key, m.kind) for m in result.missing] == [("e3", "denied")]
    assert set(judged.asked.values()) == {1}
    by_type = Counter((kind, consumer) for kind, _, consumer in judged.asked)
    assert by_type == Counter({("pong", "user"): 5, **{("ping", a.id): 1 for a in agents}})
    denials = [r for r in audit.records if r.action == "denied"]
    assert [(r.actor, r.target) for r in denials] == [("judged", "user")]
    assert rt.statistics().denied == 1


class Asker(BaseAgent):
    produces = (Ping, Pong)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        answer = await ctx.request("echo", Ping(n=payload.n + 1))
        assert isinstance(answer.payload, Pong)
        return ctx.reply(Pong(n=answer.payload.n))


async def test_an_answer_is_judged_once_for_the_asker_and_an_ask_once_for_its_caller() -> None:
    judged = Judged()
    async with Runtime([Asker("asker"), Echo("echo")], policies=[judged]) as rt:
        result = await rt.ask(rt.message(Ping(n=1), recipient="asker"))
    assert result.message is not None
    assert set(judged.asked.values()) == {1}
    assert sorted((kind, consumer) for kind, _, consumer in judged.asked) == [
        ("ping", "asker"),  # the caller's request
        ("ping", "echo"),  # the handler's ctx.request
        ("pong", "asker"),  # its answer, for the waiting handler: not also for the agent
        ("pong", "user"),  # the asker's reply, for the caller's ask
    ]


class Unplannable:
    """A policy that opts into the plan and cannot be compiled for notes (it allows every
    other message): admission raises wherever it is asked about a note."""

    name = "unplannable"
    plan_reads_envelope = False

    @property
    def plan_class(self) -> type[object]:
        return Unplannable

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        return Decision.ALLOW

    def plan_step(self, message_type: str) -> None:
        if message_type == "note":
            raise RuntimeError("cannot plan notes")

    def screen_part(self, message_type: str) -> None:
        return None


class Announcer(BaseAgent):
    """Answers a ping with a note nobody subscribes to."""

    produces = (Note,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.emit(Note(text="heard"))


class Notes(BaseAgent):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.texts: set[str] = set()

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        self.texts.add(payload.text)


def test_runtimes_in_two_threads_sharing_policies_judge_each_message_alone() -> None:
    # One policy list given to a runtime in each thread: the policies share their content
    # view, and each runtime's messages are judged by their own text, never by the other's.
    view = ContentView()
    policies = [PIIBlock(view), PromptInjection((), view)]
    wrong: list[str] = []

    def run(texts: list[str], allowed: bool) -> None:
        async def main() -> None:
            notes = Notes("notes")
            async with Runtime([notes], policies=policies) as rt:
                for text in texts:
                    await rt.publish(rt.message(Note(text=text), recipient="notes"))
            wrong.extend(t for t in texts if (t in notes.texts) is not allowed)

        anyio.run(main)

    in_threads(
        # Digits the screen cannot clear: the PII check reads them through the view.
        lambda: run([f"order 123456{n} shipped" for n in range(1500)], True),
        lambda: run([f"mail bob{n}@example.com" for n in range(1500)], False),
    )
    assert wrong == []


class Payments(Notes):
    risk = Risk.HIGH


async def _delivered(rt: Runtime, agent: Notes, texts: list[str]) -> set[str]:
    for text in texts:
        await rt.publish(rt.message(Note(text=text), recipient=agent.id))
    await rt.wait_idle()
    return agent.texts & set(texts)


async def test_runtimes_sharing_a_risk_gate_gate_by_their_own_agents() -> None:
    # One policy file's set given to two runtimes: each gates by its own agents, whichever
    # started last (a shared table let the last one decide for both).
    policies = load_policy_file(ROOT / "config/policies/ai-policy.yaml").policies
    gate = next(p for p in policies if p.name == "risk_gate")
    payments, reports = Payments("payments"), Notes("reports")
    async with Runtime([payments, reports], policies=[gate]) as first:
        riskless, risky = Notes("payments"), Payments("reports")
        async with Runtime([riskless, risky], policies=[gate]) as second:
            assert await _delivered(first, payments, ["a", "b"]) == set()
            assert await _delivered(first, reports, ["c"]) == {"c"}
            assert await _delivered(second, riskless, ["d"]) == {"d"}
            assert await _delivered(second, risky, ["e"]) == set()
            roles = {"user_roles": "advisor"}
            await first.publish(first.message(Note(text="f"), recipient="payments", metadata=roles))
            await first.wait_idle()
            assert payments.texts == {"f"}


async def test_an_agent_hosted_after_the_start_is_gated_by_its_risk() -> None:
    early, late = Payments("early"), Payments("late")
    async with Runtime([early], policies=[RiskGate(["advisor"])]) as rt:
        assert await _delivered(rt, early, ["a"]) == set()  # the plan has read the table
        rt.add(late)
        assert await _delivered(rt, late, ["b"]) == set()
        assert await _delivered(rt, early, ["c"]) == set()
    assert rt.statistics().denied == 3


async def test_a_message_with_no_consumer_asks_the_policies_nothing() -> None:
    """One question for every consumer of a message, and none when it has none: an output
    nobody receives is an unrouted letter, whatever asking the policies would have done."""
    async with Runtime([Announcer("announcer")], policies=[Unplannable()]) as rt:
        await rt.publish(rt.message(Ping(), recipient="announcer"))
        with anyio.fail_after(5):
            await rt.wait_idle()
        stats = rt.statistics()
    assert (stats.handled, stats.dead_lettered) == (1, 0)
    [letter] = list(rt.dead_letters)
    assert (letter.kind, letter.message.type) == ("unrouted", "note")


@pytest.mark.parametrize(
    ("policies", "says"),
    [
        (None, "takes a sequence of policies, not NoneType (give () for none)"),
        ("pii", "takes a sequence of policies, not str"),
        (
            load_policy_file(ROOT / "config/policies/ai-policy.yaml"),
            "not PolicySet: give its .policies, the list a policy file builds",
        ),
        ([PIIBlock], "[0] is the class PIIBlock, not one of its policies: give PIIBlock(...)"),
        (
            [PIIBlock(), object()],
            "[1] is not a policy: its type, object, has no evaluate(msg, recipient)",
        ),
    ],
    ids=["none", "a string", "a policy file", "a class", "not a policy"],
)
def test_what_is_no_policy_is_refused_when_the_runtime_is_made(policies: object, says: str) -> None:
    # Accepted, each would deny every delivery (a policy that raises fails closed) or fail
    # far from the line that gave it.
    with pytest.raises(ConfigurationError) as caught:
        Runtime(policies=policies)  # type: ignore[arg-type]
    assert says in str(caught.value)
    assert str(caught.value).startswith("Runtime(policies=...)")


async def test_a_runtimes_copy_of_a_risk_gate_keeps_its_class() -> None:
    class Worded(RiskGate):
        def _deny(self, recipient: str) -> Decision:
            return Decision.deny(self.name, f"ask an advisor before {recipient!r}")

    async with Runtime([Payments("payments")], policies=[Worded(["advisor"])]) as rt:
        result = await rt.ask(rt.message(Note(text="a"), recipient="payments"), timeout=5)
    [missing] = result.missing
    assert (missing.policy, missing.reason) == ("risk_gate", "ask an advisor before 'payments'")


class Critical(Notes):
    risk = "critical"  # type: ignore[assignment]  # not a Risk


async def test_an_agent_of_no_known_risk_is_refused_and_not_hosted() -> None:
    said = "agent 'odd' has risk 'critical': give one of low, medium, high"
    with pytest.raises(ConfigurationError) as refused:
        Runtime([Critical("odd")])
    assert str(refused.value) == said
    async with Runtime([Notes("a")], policies=[RiskGate(["advisor"])]) as rt:
        with pytest.raises(ConfigurationError, match="has risk 'critical'"):
            rt.add(Critical("odd"))
        payments = Payments("payments")
        rt.add(payments)  # the runtime goes on hosting, and gating
        assert "odd" not in rt.statistics().mailboxes
        assert await _delivered(rt, payments, ["x"]) == set()


class Audited:
    """A user's wrapper that hands on what it does not define to the policy it wraps."""

    def __init__(self, inner: RiskGate) -> None:
        self.inner = inner
        self.name = "audited"
        self.seen: list[str] = []

    def __getattr__(self, attribute: str) -> object:
        return getattr(self.inner, attribute)

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        self.seen.append(recipient)
        return Decision.deny(self.name, "closed") if recipient == "b" else Decision.ALLOW


async def test_a_wrapper_of_a_risk_gate_stays_the_runtimes_policy() -> None:
    wrapper = Audited(RiskGate(["advisor"]))
    b = Notes("b")
    async with Runtime([b], policies=[wrapper]) as rt:
        assert rt.policies == (wrapper,)
        assert await _delivered(rt, b, ["x"]) == set()
    assert wrapper.seen == ["b"]


def test_a_copy_for_a_runtime_of_another_class_is_refused() -> None:
    class Careless(RiskGate):
        def for_runtime(self) -> RiskGate:  # type: ignore[override]
            return RiskGate(self.roles)

    with pytest.raises(ConfigurationError, match=r"for_runtime\(\) gave a RiskGate"):
        Runtime(policies=[Careless(["advisor"])])
