"""Every consumer of a message (request waiter, ask, gather, fallback, mailbox) receives it only
through route -> admission for that consumer -> delivery (issue 17, items 1-7). On both anyio
backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
import trio.testing
from anyio import wait_all_tasks_blocked

from genie import (
    AgentOptions,
    BaseAgent,
    Classification,
    Context,
    Decision,
    DeniedError,
    InvalidMessageError,
    Limits,
    MemoryAuditLog,
    Message,
    Payload,
    Role,
    Runtime,
    RuntimeStatistics,
    WouldBlockError,
    handler,
)
from genie.policies import DataResidency

from ..conftest import COMPILED, DenyTo, Echo, Failing, Note, Ping, PolicyFn, Pong, Recorder


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def accounted(s: RuntimeStatistics) -> None:
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight, s


class Back(Payload):
    message_type = "back"


class Responder(BaseAgent):
    """Answers a Ping with a note to the auditor first, then the reply."""

    produces = (Note, Pong)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
        return [ctx.emit(Note(text="for the record"), recipient="auditor"), ctx.reply(Pong(n=7))]


class Auditor(BaseAgent):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.notes: list[str] = []

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        self.notes.append(payload.text)


class Requester(BaseAgent):
    """Requests a Ping of ``target`` and reports what answered it (or why nothing did)."""

    produces = (Note, Ping)

    def __init__(self, id: str, target: str) -> None:
        super().__init__(id)
        self.target = target

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        try:
            answer = await ctx.request(self.target, Ping(n=payload.n), timeout=5)
        except DeniedError as exc:
            return ctx.reply(Note(text=f"denied by {exc.policy}"))
        return ctx.reply(Note(text=f"{answer.type} from {answer.sender}"))

    @handler
    async def on_back(self, payload: Back, ctx: Context) -> Message:
        return ctx.reply(Pong(n=-1))


async def test_a_request_takes_only_its_reply_and_the_rest_is_routed() -> None:
    auditor = Auditor("auditor")
    async with Runtime([Requester("asker", "responder"), Responder("responder"), auditor]) as rt:
        result = await rt.ask(rt.message(Ping(n=1), recipient="asker"))
        await rt.wait_idle()
    assert result.message.payload == Note(text="pong from responder")
    assert auditor.notes == ["for the record"]  # the note went on to its recipient
    s = rt.statistics()
    assert s.dead_lettered == s.unrouted == 0
    accounted(s)


class CallsBack(BaseAgent):
    """Handles the request by requesting something of the requester first."""

    produces = (Back, Pong)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        back = await ctx.request(ctx.message.sender, Back(), timeout=5)
        return ctx.reply(Pong(n=back.payload.n))  # type: ignore[attr-defined]


async def test_a_request_made_back_to_the_requester_is_not_taken_as_its_reply() -> None:
    two = AgentOptions(max_concurrency=2)  # the requester can answer while it waits
    async with Runtime() as rt:
        rt.add(Requester("asker", "caller"), options=two)
        rt.add(CallsBack("caller"))
        with anyio.fail_after(10):
            result = await rt.ask(rt.message(Ping(n=1), recipient="asker"))
    assert result.message.payload == Note(text="pong from caller")
    accounted(rt.statistics())


def denies(type_name: str, consumer: str) -> PolicyFn:
    def fn(msg: Message, recipient: str) -> Decision:
        if msg.type == type_name and recipient == consumer:
            return Decision.deny("no-" + type_name, f"{type_name} may not reach {consumer}")
        return Decision.ALLOW

    return PolicyFn("no-" + type_name, fn)


async def test_a_reply_to_a_request_passes_admission_for_the_requester() -> None:
    policy, audit = denies("pong", "asker"), MemoryAuditLog()
    agents = [Requester("asker", "echo"), Echo("echo")]
    async with Runtime(agents, policies=[policy], audit=audit) as rt:
        result = await rt.ask(rt.message(Ping(n=1), recipient="asker"))
    assert result.message.payload == Note(text="denied by no-pong")
    s = rt.statistics()
    assert s.policies.denied == {"no-pong": 1}
    assert s.denied == 1
    accounted(s)
    [record] = [r for r in audit.records if r.action == "denied"]
    assert (record.actor, record.target) == ("no-pong", "asker")


async def test_an_ask_gets_only_what_admission_lets_its_caller_see() -> None:
    async with Runtime([Echo("echo")], policies=[denies("pong", "user")]) as rt:
        with anyio.fail_after(5):  # known at once, not at a deadline
            result = await rt.ask(rt.message(Ping(n=1), recipient="echo"), timeout=60)
    assert result.status == "partial"
    assert result.replies == ()
    [missing] = result.missing
    assert (missing.kind, missing.policy) == ("denied", "no-pong")
    s = rt.statistics()
    assert (s.denied, s.collected) == (1, 0)
    accounted(s)


async def test_ask_until_a_type_is_governed_for_the_caller() -> None:
    sink = Recorder("sink")

    class ToSink(BaseAgent):
        produces = (Pong,)

        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> Message:
            return ctx.emit(Pong(n=payload.n), recipient="sink")

    async with Runtime([ToSink("to-sink"), sink], policies=[denies("pong", "user")]) as rt:
        result = await rt.ask(rt.message(Ping(n=2), recipient="to-sink"), until="pong")
    assert result.replies == ()
    assert result.missing[0].policy == "no-pong"


class Looper(BaseAgent):
    """Returns a brand-new top-level message to itself: hops 0, a fresh correlation."""

    produces = (Ping,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.calls = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        self.calls += 1
        return Message.new(Ping(n=payload.n + 1), sender="someone-else", recipient=self.id)


async def test_outputs_are_stamped_so_no_handler_escapes_the_kill_switch() -> None:
    looper, audit = Looper("loop"), MemoryAuditLog()
    limits = Limits(max_hops=5, correlation_budget=20)
    async with Runtime([looper], limits=limits, audit=audit) as rt:
        request = rt.message(Ping(), recipient="loop")
        await rt.publish(request)
        with anyio.fail_after(5):
            await rt.wait_idle()
    assert looper.calls == 6  # hops 0..5, the sixth output (hops 6) is denied
    [letter] = [r for r in audit.records if r.action == "limit_fired"]
    assert letter.actor == "limit:hops"
    assert letter.details["correlation_id"] == request.correlation_id
    assert letter.details["sender"] == "loop"  # the sender is stamped too
    accounted(rt.statistics())


class Rewinder(BaseAgent):
    """Loops to itself through what its context built, then tampered with: the hops reset on a
    copy ("copy"), or the context of its first delivery used again ("stale")."""

    produces = (Ping,)

    def __init__(self, id: str, mode: str) -> None:
        super().__init__(id)
        self.mode = mode
        self.calls = 0
        self.first: Context | None = None

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        self.calls += 1
        if self.mode == "copy":
            return ctx.emit(Ping(n=payload.n + 1), recipient=self.id).model_copy(update={"hops": 0})
        self.first = self.first or ctx
        return self.first.emit(Ping(n=payload.n + 1), recipient=self.id)


@pytest.mark.parametrize("mode", ["copy", "stale"])
async def test_tampered_context_outputs_are_stamped_again(mode: str) -> None:
    agent = Rewinder("loop", mode)
    async with Runtime([agent], limits=Limits(max_hops=5, correlation_budget=20)) as rt:
        await rt.publish(rt.message(Ping(), recipient="loop"))
        with anyio.fail_after(5):
            await rt.wait_idle()
    assert agent.calls == 6  # hops 0..5 whatever the handler did to its output
    assert rt.statistics().denied == 1
    accounted(rt.statistics())


class Payment(Payload):
    message_type = "payment"
    amount: int


class Bank(BaseAgent):
    """Takes notes and payments; a Ping makes it forward a copy of its input that carries a
    payment, to itself."""

    produces = (Payment,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.paid: list[int] = []

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        pass

    @handler
    async def on_payment(self, payload: Payment, ctx: Context) -> None:
        self.paid.append(payload.amount)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        forwarded = {"payload": Payment(amount=payload.n), "id": f"{ctx.message.id}-paid"}
        return ctx.message.model_copy(update=forwarded)  # a new message: an id of its own


async def test_a_copy_with_another_payload_is_routed_and_judged_by_its_type() -> None:
    """A message's type is what routing and the policies read; the handler that runs is the
    payload's. A copy given a new payload kept the old type, so a payment dressed as a note
    (from outside, or as a handler's output) passed a policy holding payments and was paid."""
    hold = PolicyFn(
        "hold-payments",
        lambda m, r: (
            Decision.deny("hold-payments", "held") if m.type == "payment" else Decision.ALLOW
        ),
    )
    bank = Bank("bank")
    async with Runtime([bank], policies=[hold]) as rt:
        disguised = rt.message(Note(text="hi"), recipient="bank").model_copy(
            update={"payload": Payment(amount=100)}
        )
        assert disguised.type == "payment"
        await rt.publish(disguised)
        await rt.publish(rt.message(Ping(n=200), recipient="bank"))  # forwards a copy
        with anyio.fail_after(5):
            await rt.wait_idle()
        with pytest.raises(
            InvalidMessageError, match="field 'type': payload Payment is registered"
        ):
            disguised.model_copy(update={"type": "note"})
    assert bank.paid == []
    assert rt.statistics().denied == 2
    accounted(rt.statistics())


class Labels(BaseAgent):
    """Replies to a Ping with a note for another region, labelled by the Ping's ``n``: a
    classification given as text ("internal"), or no classification at all ("top-secret")."""

    produces = (Note,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        label = ("internal", "top-secret")[payload.n]
        return ctx.reply(Note(text="q3"), classification=label, metadata={"region": "us"})  # type: ignore[arg-type]


async def test_a_classification_a_handler_gives_as_text_is_the_one_it_names() -> None:
    """A reply's classification and role were kept as given: "internal" as a plain string,
    which data residency's identity test of Classification.INTERNAL passed over, so internal
    data left its region; a label that is no classification, let through the same way. Text
    naming one is that classification; anything else fails the handler, naming the field."""
    async with Runtime([Labels("labels")], policies=[DataResidency("in")]) as rt:
        internal = await rt.ask(rt.message(Ping(n=0), recipient="labels"))
        unknown = await rt.ask(rt.message(Ping(n=1), recipient="labels"))
        with pytest.raises(InvalidMessageError, match="field 'role'"):
            rt.message(Ping(), recipient="labels").model_copy(update={"role": "god"})
    [denied] = internal.missing
    assert (denied.kind, denied.policy) == ("denied", "data_residency")
    [failed] = unknown.missing
    assert failed.kind == "failed"
    assert failed.reason.startswith(
        "InvalidMessageError: invalid 'note' message: field 'classification': 'top-secret' is "
        "not one of 'public', 'internal', 'pii', 'secret'"
    )
    accounted(rt.statistics())


class NumbersItsRecipient(BaseAgent):
    produces = (Note,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.emit(Note(text="x"), recipient=payload.n)  # type: ignore[arg-type]


async def test_a_recipient_that_is_no_text_fails_the_handler_naming_it() -> None:
    """An agent's id given as a number (an account's, say) was kept in the reply and routed
    to no agent: an unrouted letter, far from the slip. It fails the handler, naming it."""
    async with Runtime([NumbersItsRecipient("n")]) as rt:
        await rt.publish(rt.message(Ping(n=7), recipient="n"))
        with anyio.fail_after(5):
            await rt.wait_idle()
    [letter] = rt.dead_letters
    said = (
        "TypeError: str or None object expected; got int"  # the compiled ctx.emit's signature
        if COMPILED
        else "InvalidMessageError: invalid 'note' message: field 'recipient': an agent's id is "
        "text, or None to route by type: got 7"
    )
    assert (letter.kind, letter.reason) == ("failed", said)
    accounted(rt.statistics())


async def test_a_fallback_runs_through_its_own_mailbox() -> None:
    gate = anyio.Event()
    backup = Recorder("backup", gate)
    primary = Failing("primary")
    async with Runtime() as rt:
        rt.add(primary, options=AgentOptions(max_concurrency=5, fallback="backup"))
        rt.add(backup, options=AgentOptions(max_concurrency=1))
        for n in range(5):
            await rt.publish(rt.message(Ping(n=n), recipient="primary"))
        await wait_all_tasks_blocked()
        stats = rt.statistics().mailboxes["backup"]
        assert (stats.active, stats.depth) == (1, 4)  # the fallback's concurrency holds
        gate.set()
        await rt.wait_idle()
    assert backup.max_active == 1
    assert [p.n for p in backup.seen] == [0, 1, 2, 3, 4]  # in order
    s = rt.statistics()
    assert (s.fallbacks, s.dead_lettered, s.mailboxes["backup"].handled) == (5, 0, 5)
    assert s.delivered == 5  # a handoff is the same delivery, not a new one
    accounted(s)


async def test_a_failing_fallback_dead_letters_the_original_delivery() -> None:
    async with Runtime() as rt:
        rt.add(Failing("primary"), options=AgentOptions(fallback="backup"))
        rt.add(Failing("backup"))
        result = await rt.ask(rt.message(Ping(n=1), recipient="primary"))
    assert result.status == "partial"
    [letter] = rt.dead_letters
    assert (letter.agent_id, letter.kind) == ("primary", "failed")
    assert "fallback 'backup' failed: RuntimeError: boom #1" in letter.reason
    accounted(rt.statistics())


async def test_a_fallback_refused_by_a_policy_leaves_its_audit_row() -> None:
    """The delivery ends as the failure it is, and the refusal of its fallback is audited as
    every refusal is (``denied``)."""
    audit = MemoryAuditLog()
    async with Runtime(policies=[DenyTo("backup", name="no-backup")], audit=audit) as rt:
        rt.add(Failing("primary"), options=AgentOptions(fallback="backup"))
        rt.add(Echo("backup"))
        result = await rt.ask(rt.message(Ping(n=1), recipient="primary"))
    assert result.status == "partial"
    [letter] = rt.dead_letters
    assert (letter.agent_id, letter.kind) == ("primary", "failed")
    assert "fallback 'backup' denied by no-backup" in letter.reason
    [row] = [r for r in audit.records if r.target == "backup"]
    assert (row.actor, row.action) == ("no-backup", "denied")
    assert row.details["message_id"] == letter.message.id
    accounted(rt.statistics())


async def test_the_limits_never_refuse_a_fallback_the_same_delivery() -> None:
    """A fallback takes over the delivery its agent failed: admitted once within the limits,
    charged to the budget once, with the same hops, it is no new delivery for them to refuse
    (the budget's one delivery spent, the fallback still runs)."""
    audit, backup = MemoryAuditLog(), Recorder("backup")
    async with Runtime(limits=Limits(correlation_budget=1), audit=audit) as rt:
        rt.add(Failing("primary"), options=AgentOptions(fallback="backup"))
        rt.add(backup)
        await rt.publish(rt.message(Ping(n=1), recipient="primary"))
        with anyio.fail_after(5):
            await rt.wait_idle()
        s = rt.statistics()
    assert backup.seen == [Ping(n=1)]
    assert list(rt.dead_letters) == []
    assert (s.delivered, s.handled, s.fallbacks) == (1, 1, 1)
    assert [r for r in audit.records if r.action == "limit_fired"] == []
    accounted(s)


class CountingTap:
    id = "tap"

    def __init__(self) -> None:
        self.seen: list[Message] = []

    def observe(self, msg: Message) -> None:
        self.seen.append(msg)


async def test_a_refused_publish_nowait_changes_nothing() -> None:
    gate = anyio.Event()
    tap = CountingTap()
    allow_all = PolicyFn("allow-all", lambda m, r: Decision.ALLOW)
    async with Runtime(policies=[allow_all]) as rt:
        rt.add(Recorder("rec", gate), options=AgentOptions(mailbox_size=1))
        rt.add_tap(tap)
        await rt.publish(rt.message(Ping(n=0), recipient="rec"))  # running
        await wait_all_tasks_blocked()
        await rt.publish(rt.message(Ping(n=1), recipient="rec"))  # queued: full
        before = rt.statistics()
        seen = len(tap.seen)
        for n in range(5):
            with pytest.raises(WouldBlockError, match="mailbox of 'rec' is full"):
                rt.publish_nowait(rt.message(Ping(n=10 + n), recipient="rec"))
        after = rt.statistics()
        assert len(tap.seen) == seen
        assert (after.published, after.delivered) == (before.published, before.delivered)
        assert after.policies == before.policies
        assert after.correlations.correlations_active == before.correlations.correlations_active
        gate.set()


class Turnstile(BaseAgent):
    """Each Ping waits for its own gate (``gates[n]``) when there is one."""

    def __init__(self, id: str, gates: dict[int, anyio.Event]) -> None:
        super().__init__(id)
        self.gates = gates
        self.seen: list[int] = []

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.seen.append(payload.n)
        if payload.n in self.gates:
            await self.gates[payload.n].wait()


async def test_waiting_publishers_go_first_come_first_served_within_the_bound() -> None:
    gates = {0: anyio.Event(), 1: anyio.Event()}
    agent = Turnstile("rec", gates)
    order: list[int] = []
    async with Runtime() as rt:
        rt.add(agent, options=AgentOptions(mailbox_size=1))
        await rt.publish(rt.message(Ping(n=0), recipient="rec"))  # running
        await wait_all_tasks_blocked()
        await rt.publish(rt.message(Ping(n=1), recipient="rec"))  # queued: full

        async def publish(n: int) -> None:
            await rt.publish(rt.message(Ping(n=n), recipient="rec"))
            order.append(n)

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish, 2)
            await wait_all_tasks_blocked()
            assert rt.statistics().mailboxes["rec"].waiting_publishers == 1
            # 1 is taken and 2 woken with the slot reserved; the newcomer 3, whenever it
            # runs, finds that slot taken and waits its turn.
            gates[0].set()
            tg.start_soon(publish, 3)
            await wait_all_tasks_blocked()
            stats = rt.statistics().mailboxes["rec"]
            assert (stats.depth, stats.waiting_publishers) == (1, 1)
            with pytest.raises(WouldBlockError):
                rt.publish_nowait(rt.message(Ping(n=99), recipient="rec"))
            gates[1].set()
        await rt.wait_idle()
    assert order == [2, 3]
    assert agent.seen == [0, 1, 2, 3]
    assert rt.statistics().mailboxes["rec"].high_water == 1  # never past the bound


class Order(Payload):
    message_type = "order"
    lines: dict[str, list[int]]
    tags: set[str]


class Mutator(BaseAgent):
    """Tries to change what it was given, in place."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.errors: list[str] = []

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> None:
        for change in (
            lambda: payload.lines.__setitem__("x", [666]),
            lambda: payload.lines["a"].append(666),
            lambda: payload.tags.add("evil"),
            lambda: ctx.message.metadata.__setitem__("k", "evil"),  # type: ignore[index]
        ):
            try:
                change()
            except (TypeError, AttributeError) as exc:
                self.errors.append(type(exc).__name__)


class Reader(BaseAgent):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.seen: list[Order] = []

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> None:
        self.seen.append(payload.model_copy(deep=True))


async def test_payloads_are_immutable_all_the_way_down() -> None:
    mutator, reader = Mutator("mutator"), Reader("reader")
    async with Runtime([mutator, reader]) as rt:
        rt.subscribe("mutator", "order")
        rt.subscribe("reader", "order")
        order = Order(lines={"a": [1, 2]}, tags={"t"})
        msg = rt.message(order, metadata={"k": "v"})
        await rt.publish(msg)
        await rt.wait_idle()
    assert mutator.errors == ["TypeError"] * 4
    [seen] = reader.seen
    assert seen.lines == {"a": [1, 2]}  # the second recipient saw what was admitted
    assert seen.tags == {"t"}
    assert msg.metadata == {"k": "v"}
    # Frozen containers still compare, copy and serialise as the plain ones.
    assert Order.model_validate_json(order.model_dump_json()) == order
    assert rt.statistics().dead_lettered == 0


async def test_a_publish_cancelled_while_waiting_for_room_changes_nothing() -> None:
    gate = anyio.Event()
    tap = CountingTap()
    async with Runtime() as rt:
        rt.add(Recorder("rec", gate), options=AgentOptions(mailbox_size=1))
        rt.add_tap(tap)
        await rt.publish(rt.message(Ping(n=0), recipient="rec"))  # running
        await wait_all_tasks_blocked()
        await rt.publish(rt.message(Ping(n=1), recipient="rec"))  # queued: full
        before, seen = rt.statistics(), len(tap.seen)
        with anyio.move_on_after(0.05) as scope:
            await rt.publish(rt.message(Ping(n=2), recipient="rec"))
        assert scope.cancelled_caught
        after = rt.statistics()
        assert (after.published, after.delivered) == (before.published, before.delivered)
        assert len(tap.seen) == seen
        assert after.mailboxes["rec"].waiting_publishers == 0
        gate.set()
        await rt.wait_idle()
        await rt.publish(rt.message(Ping(n=3), recipient="rec"))  # the slot was given back
    accounted(rt.statistics())


class Chooser(BaseAgent):
    """Builds two replies and returns what ``payload.n`` picks: none, the first, the last
    (what its context built last), both, or the last in a list."""

    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message | list[Message] | None:
        first, last = ctx.reply(Pong(n=1)), ctx.reply(Pong(n=2))
        return {0: None, 1: first, 2: last, 3: [first, last], 4: [last]}[payload.n]


@pytest.mark.parametrize(("pick", "sent"), [(0, []), (1, [1]), (2, [2]), (3, [1, 2]), (4, [2])])
async def test_only_what_a_handler_returns_is_sent(pick: int, sent: list[int]) -> None:
    async with Runtime([Chooser("chooser")]) as rt:
        msg = rt.message(Ping(n=pick), recipient="chooser")
        gather = rt.gather(msg.correlation_id, count=max(len(sent), 1), timeout=5)
        await rt.publish(msg)
        got = await gather.wait()  # ends at the count, or partial when nothing is in flight
        await rt.wait_idle()
        stats = rt.statistics()
    assert [m.payload.n for m in got.replies] == sent  # type: ignore[attr-defined]
    assert all(m.causation_id == got.replies[0].causation_id for m in got.replies)
    assert stats.handled == 1 + len(sent)  # the ping, and each reply the gather took
    assert stats.dead_lettered == 0
    accounted(stats)


# --- issue 19, fifth pass: what the throughput shortcuts could break ---------------------------
class Stamps(BaseAgent):
    """Replies after ``delay`` seconds of the runtime's clock."""

    produces = (Pong,)
    delay = 2.5

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await ctx.sleep(self.delay)
        if payload.n == 1:
            return ctx.reply(Pong(n=payload.n))
        return ctx.emit(Pong(n=payload.n), recipient=ctx.message.sender)


@pytest.mark.parametrize(
    "anyio_backend", [("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})]
)
@pytest.mark.parametrize("n", [1, 2], ids=["reply", "emit"])
async def test_a_reply_is_stamped_with_the_runtime_s_clock_epoch_plus_loop_time(n: int) -> None:
    # The context computes ``Clock.timestamp`` itself (``base + monotonic()``, issue 19's
    # eighth pass): it must read the same virtual time, to the bit, by ``reply`` and ``emit``.
    from genie._base.clock import Clock

    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    async with Runtime([Stamps("stamps")], clock=Clock(epoch)) as rt:
        asked = rt.message(Ping(n=n), recipient="stamps")
        result = await rt.ask(asked)
        assert result.message.payload == Pong(n=n)
        assert result.message.created_at == epoch + timedelta(seconds=Stamps.delay)
        assert rt.clock.timestamp() == result.message.created_at.timestamp()


# --- issue 19, sixth pass: a context built without ``__init__`` -------------------------------
class Introspect(BaseAgent):
    """Replies with what its context says, then checks a second delivery gets a fresh one."""

    produces = (Note,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.contexts: list[Context] = []

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        self.contexts.append(ctx)
        seen = f"{ctx.agent_id}:{ctx.message.id}:{ctx.message.payload.n}"  # type: ignore[attr-defined]
        return ctx.reply(Note(text=seen))


@pytest.mark.parametrize("deadline", [None, 5.0])  # the fused path, and ``_attempt``'s
async def test_each_handler_call_gets_its_own_filled_context(deadline: float | None) -> None:
    agent = Introspect("intro")
    async with Runtime() as rt:
        rt.add(agent, options=AgentOptions(deadline=deadline))
        replies = []
        for n in (1, 2):
            msg = rt.message(Ping(n=n), sender="caller", recipient="intro")
            result = await rt.ask(msg)
            replies.append((msg.id, result.message))
    for n, (asked_id, reply) in enumerate(replies, 1):
        assert reply.payload == Note(text=f"intro:{asked_id}:{n}")
        assert (reply.causation_id, reply.sender, reply.recipient) == (asked_id, "intro", "caller")
    first, second = agent.contexts
    assert first is not second
    assert first.message.payload.n == 1  # type: ignore[attr-defined]  # kept, not reused


# --- issue 19, seventh pass: the context's options by position --------------------------------
class Dressed(BaseAgent):
    """Replies and emits with every option set, by keyword (as the Context protocol has it)."""

    produces = (Note, Pong)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
        return [
            ctx.emit(
                Note(text="aside"),
                recipient="auditor",
                role=Role.TOOL,
                classification=Classification.PII,
                metadata={"lane": "emit"},
            ),
            ctx.reply(
                Pong(n=payload.n),
                role=Role.EVALUATOR,
                classification=Classification.PUBLIC,
                metadata={"lane": "reply"},
            ),
        ]


class Keeper(BaseAgent):
    """Keeps every Note message it is delivered, whole."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.kept: list[Message] = []

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        self.kept.append(ctx.message)


async def test_a_reply_and_an_emit_carry_every_option_given_by_keyword() -> None:
    # RuntimeContext takes the options by position too (a cheaper call): each must still land
    # in its own field, whatever order the context passes them on in.
    keeper = Keeper("auditor")
    async with Runtime([Dressed("dressed"), keeper]) as rt:
        asked = rt.message(Ping(n=3), sender="caller", recipient="dressed")
        result = await rt.ask(asked)
        await rt.wait_idle()
    reply = result.message
    assert reply.payload == Pong(n=3)
    assert (reply.recipient, reply.role, reply.classification) == (
        "caller",
        Role.EVALUATOR,
        Classification.PUBLIC,
    )
    assert dict(reply.metadata) == {"lane": "reply"}
    (aside,) = keeper.kept
    assert (aside.recipient, aside.role, aside.classification) == (
        "auditor",
        Role.TOOL,
        Classification.PII,
    )
    assert dict(aside.metadata) == {"lane": "emit"}
