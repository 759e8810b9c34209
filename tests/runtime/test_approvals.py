"""Human in the loop (issue 37): a request paused for a person, answered through
``Runtime.approvals``, governed and audited; who may answer, the first answer winning, the
deadline rejecting or escalating, and answers an agent makes up."""

from __future__ import annotations

import re

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from pydantic import ValidationError

from genie import (
    ApprovalDecision,
    ApprovalRefusedError,
    ApprovalRequest,
    AuditRecord,
    BaseAgent,
    Context,
    Decision,
    GatherResult,
    InvalidArgumentError,
    MemoryAuditLog,
    Message,
    Payload,
    Runtime,
    handler,
)
from genie._runtime.approvals import ApprovalAnswer, ApprovalDesk

from ..conftest import PolicyFn


class Pay(Payload):
    message_type = "pay"
    amount: int
    deadline: float | None = None
    escalate_to: str | None = None
    principal: str | None = None


class Paid(Payload):
    message_type = "paid"
    approved: bool
    by: str
    reason: str = ""


class Payer(BaseAgent):
    """Asks a treasurer before it pays; answers the caller with the decision."""

    produces = (ApprovalRequest, Paid)

    @handler
    async def on_pay(self, payload: Pay, ctx: Context) -> Message:
        return ctx.emit(
            ApprovalRequest(
                subject=f"pay Rs {payload.amount}",
                role=None if payload.principal else "treasurer",
                principal=payload.principal,
                deadline=payload.deadline,
                escalate_to=payload.escalate_to,
            )
        )

    @handler
    async def on_decision(self, decision: ApprovalDecision, ctx: Context) -> Message:
        paid = Paid(approved=decision.approved, by=decision.by, reason=decision.reason)
        return ctx.emit(paid, recipient="user")


class Forger(BaseAgent):
    """Answers every approval request itself: what an agent must not be able to do."""

    produces = (ApprovalAnswer,)

    @handler
    async def on_request(self, request: ApprovalRequest, ctx: Context) -> Message:
        return ctx.emit(
            ApprovalAnswer(approval_id=ctx.message.id, approved=True), recipient="approvals"
        )


async def asking(rt: Runtime, pay: Pay, results: list[GatherResult]) -> None:
    results.append(await rt.ask(rt.message(pay, recipient="payer"), until="paid", timeout=10))


async def test_a_request_waits_for_a_person_and_goes_on_with_the_answer() -> None:
    audit = MemoryAuditLog()
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")], audit=audit) as rt, anyio.create_task_group() as tg:
        tg.start_soon(asking, rt, Pay(amount=500), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        assert (approval.agent_id, approval.subject, approval.role) == (
            "payer",
            "pay Rs 500",
            "treasurer",
        )
        assert not results  # paused: the ask waits
        rt.approvals.approve(approval.id, by="alice", roles=("treasurer",), reason="in budget")
    [result] = results
    assert [m.payload for m in result.replies] == [
        Paid(approved=True, by="alice", reason="in budget")
    ]
    assert rt.approvals.pending() == []
    actions = [(r.actor, r.action, r.target) for r in audit.records]
    assert actions == [
        ("payer", "approval_requested", approval.id),
        ("alice", "approved", approval.id),
    ]


async def test_a_rejection_reaches_the_agent() -> None:
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")]) as rt, anyio.create_task_group() as tg:
        tg.start_soon(asking, rt, Pay(amount=9_00_000), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        rt.approvals.reject(approval.id, by="alice", roles=("treasurer",), reason="too large")
    assert [m.payload for m in results[0].replies] == [
        Paid(approved=False, by="alice", reason="too large")
    ]


@pytest.mark.parametrize(
    ("pay", "by", "roles", "why"),
    [
        (
            Pay(amount=1),
            "eve",
            ("clerk",),
            "it needs the role 'treasurer', which eve does not hold",
        ),
        (Pay(amount=1), "eve", (), "it needs the role 'treasurer', which eve does not hold"),
        (Pay(amount=1, principal="cfo"), "alice", ("treasurer",), "only cfo may answer it"),
        # The desk's own words for who decided when nobody did: never an answerer's name,
        # nor one that reads as one (other case, spaces around it), nor one that writes
        # something else where it is shown (a line break, a terminal's escape, an invisible).
        *(
            (Pay(amount=1), name, ("treasurer",), f"{name!r} is not a person's name")
            for name in (
                *("deadline", "withdrawn", "genie", "", " "),
                *("deadline ", "Deadline", " alice", "alice\nbob", "\x1b[2Kmallory", "a\u200bb"),
            )
        ),
    ],
)
async def test_an_answer_by_someone_who_may_not_is_refused_and_audited(
    pay: Pay, by: str, roles: tuple[str, ...], why: str
) -> None:
    audit = MemoryAuditLog()
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")], audit=audit) as rt, anyio.create_task_group() as tg:
        tg.start_soon(asking, rt, pay, results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        with pytest.raises(ApprovalRefusedError, match=re.escape(why)):
            rt.approvals.approve(approval.id, by=by, roles=roles)
        assert rt.approvals.pending() == [approval]  # still waiting for the right person
        refused = [r for r in audit.records if r.action == "approval_refused"]
        assert [(r.actor, r.details["reason"]) for r in refused] == [(by, why)]
        rt.approvals.approve(approval.id, by="cfo", roles=("treasurer",))
    assert results[0].replies[0].payload.approved  # type: ignore[attr-defined]


async def test_an_unknown_or_answered_approval_is_refused() -> None:
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")]) as rt, anyio.create_task_group() as tg:
        with pytest.raises(ApprovalRefusedError, match="no pending approval 'nope'"):
            rt.approvals.approve("nope", by="alice")
        tg.start_soon(asking, rt, Pay(amount=5), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        rt.approvals.approve(approval.id, by="alice", roles=("treasurer",))
        await wait_all_tasks_blocked()
        with pytest.raises(ApprovalRefusedError, match="no pending approval"):
            rt.approvals.reject(approval.id, by="alice", roles=("treasurer",))
    assert results[0].replies[0].payload.approved  # type: ignore[attr-defined]


async def test_an_answer_refused_for_its_id_is_audited_with_who_what_and_why() -> None:
    """An unknown id, or an approval decided already: each refused answer leaves a row in
    the runtime's audit trail (who answered, what, and why), as a wrong role does."""
    audit = MemoryAuditLog()
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")], audit=audit) as rt, anyio.create_task_group() as tg:
        with pytest.raises(ApprovalRefusedError, match="no pending approval 'nope'"):
            rt.approvals.approve("nope", by="mallory")
        tg.start_soon(asking, rt, Pay(amount=5), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        rt.approvals.approve(approval.id, by="alice", roles=("treasurer",))
        await wait_all_tasks_blocked()
        with pytest.raises(ApprovalRefusedError, match="decided already"):
            rt.approvals.reject(approval.id, by="bob", roles=("treasurer",))
    refused = [
        (r.actor, r.target, r.details["answer"], r.details["reason"], r.details["agent"])
        for r in audit.records
        if r.action == "approval_refused"
    ]
    assert refused == [
        ("mallory", "nope", "approve", "unknown: never asked here, or forgotten", ""),
        ("bob", approval.id, "reject", "too late: it was decided already", "payer"),
    ]


async def test_an_answer_refused_for_its_id_says_unknown_or_how_it_was_decided() -> None:
    """An id the desk never asked (or forgot) is refused as unknown, not as decided; one it
    decided is refused with the decision that was made."""
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")]) as rt, anyio.create_task_group() as tg:
        with pytest.raises(ApprovalRefusedError) as unknown:
            rt.approvals.approve("nope", by="mallory")
        tg.start_soon(asking, rt, Pay(amount=5), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        rt.approvals.approve(approval.id, by="alice", roles=("treasurer",), reason="in budget")
        await wait_all_tasks_blocked()
        with pytest.raises(ApprovalRefusedError) as late:
            rt.approvals.reject(approval.id, by="bob", roles=("treasurer",))
    assert (
        str(unknown.value) == "no pending approval 'nope' (unknown: never asked here, or forgotten)"
    )
    assert str(late.value) == (
        f"no pending approval {approval.id!r} (decided already: approved by alice: in budget)"
    )


async def test_two_answers_at_once_the_first_wins() -> None:
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")]) as rt, anyio.create_task_group() as tg:
        tg.start_soon(asking, rt, Pay(amount=5), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        rt.approvals.reject(approval.id, by="bob", roles=("treasurer",))
        late = rt.approvals.approve(
            approval.id, by="alice", roles=("treasurer",)
        )  # before bob's ran
        await wait_all_tasks_blocked()
        # What a store's transport tells the person who left the later answer.
        assert rt.approvals._desk.refusal_of(late.id) == (
            f"no pending approval {approval.id!r} (decided already: rejected by bob)"
        )
    assert [m.payload for m in results[0].replies] == [Paid(approved=False, by="bob")]


async def test_every_answer_the_desk_receives_is_audited_the_late_one_as_too_late() -> None:
    audit = MemoryAuditLog()
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")], audit=audit) as rt, anyio.create_task_group() as tg:
        tg.start_soon(asking, rt, Pay(amount=5), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()

        async def answer(by: str, approved: bool) -> None:
            answering = rt.approvals.approve if approved else rt.approvals.reject
            answering(approval.id, by=by, roles=("treasurer",))

        async with anyio.create_task_group() as people:  # both sent before the desk ran
            people.start_soon(answer, "bob", False)
            people.start_soon(answer, "alice", True)
    [decided] = [m.payload for m in results[0].replies]
    assert isinstance(decided, Paid)
    late = "alice" if decided.by == "bob" else "bob"
    answers = [
        (r.actor, r.action, r.details["reason"], r.details["subject"])
        for r in audit.records
        if r.action != "approval_requested"
    ]
    assert answers == [
        (decided.by, "approved" if decided.approved else "rejected", "", "pay Rs 5"),
        (late, "approval_refused", "too late: it was decided already", "pay Rs 5"),
    ]


async def test_the_answer_that_decided_delivered_again_is_taken_once() -> None:
    """A transport that delivers at least once (on NATS, an answer redelivered after its ack
    wait) can hand the desk the answer that decided an approval a second time: it is that
    answer, taken already, neither refused nor audited again. Another answer to the decided
    approval, even the same person's same word, is refused as too late, and audited once
    however often it is delivered."""
    audit = MemoryAuditLog()
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")], audit=audit) as rt, anyio.create_task_group() as tg:
        tg.start_soon(asking, rt, Pay(amount=5), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        answer = rt.approvals.approve(approval.id, by="alice", roles=("treasurer",))
        await wait_all_tasks_blocked()
        desk = rt.approvals._desk
        second = answer.model_copy(update={"id": "alices-second-click"})
        for again in (answer, second, second):  # the refused answer, too, delivered again
            desk.issued[again.id] = approval.id  # trusted, as a transport trusts a redelivery
            # Handed over again as the transport hands a redelivery: routed, past the publish
            # that refuses an id this runtime took from outside already.
            rt._dispatcher.route(again, False)
            await wait_all_tasks_blocked()
        assert desk.refusal_of(answer.id) is None
        assert desk.refusal_of(second.id) == (
            f"no pending approval {approval.id!r} (decided already: approved by alice)"
        )
    assert [m.payload for m in results[0].replies] == [Paid(approved=True, by="alice")]
    actions = [(r.actor, r.action) for r in audit.records]
    assert actions == [
        ("payer", "approval_requested"),
        ("alice", "approved"),
        ("alice", "approval_refused"),
    ]


async def test_past_its_deadline_an_approval_is_rejected() -> None:
    audit = MemoryAuditLog()
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")], audit=audit) as rt:
        await asking(rt, Pay(amount=5, deadline=0.05), results)
        assert rt.approvals.pending() == []
    assert [m.payload for m in results[0].replies] == [
        Paid(approved=False, by="deadline", reason="nobody answered in time")
    ]
    assert [r.action for r in audit.records] == ["approval_requested", "rejected"]


class Watched(MemoryAuditLog):
    """An audit log that says when an approval was escalated."""

    def __init__(self) -> None:
        super().__init__()
        self.escalated = anyio.Event()

    def record(self, record: AuditRecord) -> None:
        super().record(record)
        if record.action == "approval_escalated":
            self.escalated.set()


async def test_past_its_deadline_an_approval_is_escalated_once() -> None:
    audit = Watched()
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")], audit=audit) as rt, anyio.create_task_group() as tg:
        tg.start_soon(asking, rt, Pay(amount=5, deadline=0.05, escalate_to="cfo"), results)
        with anyio.fail_after(5):
            await audit.escalated.wait()
        [approval] = rt.approvals.pending()
        assert approval.role == "cfo"
        with pytest.raises(ApprovalRefusedError):
            rt.approvals.approve(approval.id, by="alice", roles=("treasurer",))
        rt.approvals.approve(approval.id, by="carol", roles=("cfo",))
    assert [m.payload for m in results[0].replies] == [Paid(approved=True, by="carol")]
    assert [r.action for r in audit.records] == [
        "approval_requested",
        "approval_escalated",
        "approval_refused",
        "approved",
    ]


async def test_a_deadline_already_passed_escalates_then_rejects_at_once() -> None:
    """A deadline of 0 has passed when asked: escalated, the second round's is passed as
    well, and the deadline rejects it then, not ten years later."""
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")]) as rt, anyio.create_task_group() as tg:
        tg.start_soon(asking, rt, Pay(amount=5, deadline=0.0, escalate_to="cfo"), results)
    assert [m.payload for m in results[0].replies] == [
        Paid(approved=False, by="deadline", reason="nobody answered in time")
    ]


def test_a_negative_deadline_is_refused_naming_it() -> None:
    # It was taken, and meant "passed at once": a sign slip rejected every request unasked.
    with pytest.raises(
        ValidationError, match=r"deadline\n  Input should be greater than or equal to 0"
    ):
        ApprovalRequest(subject="pay", role="treasurer", deadline=-1)
    assert ApprovalRequest(subject="pay", deadline=0).deadline == 0


async def test_an_answer_an_agent_makes_up_is_ignored() -> None:
    results: list[GatherResult] = []
    rt = Runtime([Payer("payer"), Forger("forger")])
    rt.subscribe("forger", ApprovalRequest.message_type)
    async with rt, anyio.create_task_group() as tg:
        tg.start_soon(asking, rt, Pay(amount=5), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()  # the forger's answer changed nothing
        rt.approvals.reject(approval.id, by="alice", roles=("treasurer",))
    assert [m.payload for m in results[0].replies] == [Paid(approved=False, by="alice")]


def no_answers_from(principal: str) -> PolicyFn:
    def evaluate(msg: Message, recipient: str) -> Decision:
        if msg.type == "genie.approval_answer" and msg.metadata.get("user_id") == principal:
            return Decision.deny("four-eyes", f"{principal} raised the payment")
        return Decision.ALLOW

    return PolicyFn("four-eyes", evaluate)


async def test_an_answer_is_governed_like_any_message() -> None:
    audit = MemoryAuditLog()
    results: list[GatherResult] = []
    policies = [no_answers_from("mallory")]
    async with (
        Runtime([Payer("payer")], audit=audit, policies=policies) as rt,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(asking, rt, Pay(amount=5), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        # Told at once that her answer was not given, with the policy and its reason.
        with pytest.raises(
            ApprovalRefusedError,
            match=re.escape(
                "denied by four-eyes: mallory raised the payment (the answer of mallory is "
                f"not given: approval {approval.id} is still pending)"
            ),
        ):
            rt.approvals.approve(approval.id, by="mallory", roles=("treasurer",))
        await wait_all_tasks_blocked()
        assert rt.approvals.pending() == [approval]  # the policy kept her answer out
        rt.approvals.approve(approval.id, by="alice", roles=("treasurer",))
    assert [m.payload for m in results[0].replies] == [Paid(approved=True, by="alice")]
    [desk] = [a for a in rt.agents() if isinstance(a, ApprovalDesk)]
    assert desk.issued == {}  # nothing kept of the denied answer
    denied = [r for r in audit.records if r.action == "denied"]
    assert [(r.actor, r.target, r.details["sender"]) for r in denied] == [
        ("four-eyes", "approvals", "mallory")
    ]


@pytest.mark.parametrize(
    ("arguments", "why"),
    [
        # A str is no tuple of roles: "treasurer" in "head-treasurer" is a substring.
        (
            {"roles": "head-treasurer"},
            "roles is a tuple of role names (roles=('treasurer',)), not a str",
        ),
        ({"roles": None}, "roles is a tuple of role names (roles=('treasurer',)), not a NoneType"),
        (
            {"roles": ("treasurer", 7)},
            "roles is a tuple of role names (roles=('treasurer',)), not a tuple holding a int",
        ),
        ({"by": 7, "roles": ("treasurer",)}, "by is a str, not int"),
        ({"reason": 7, "roles": ("treasurer",)}, "reason is a str, not int"),
        # Text no audit file or store row can hold: with a store, it stopped the runtime.
        (
            {"reason": "ok \ud800", "roles": ("treasurer",)},
            "reason is not valid text (a lone surrogate at 3)",
        ),
        ({"roles": ("treasurer\udcff",)}, "roles is not valid text (a lone surrogate at 9)"),
        ({"by": "al\udce9", "roles": ("treasurer",)}, "by is not valid text"),
    ],
)
async def test_an_answer_of_the_wrong_types_is_refused_naming_the_argument(
    arguments: dict[str, object], why: str
) -> None:
    """Refused where it is given, before anything is sent or recorded: no answer that the
    desk would then refuse unseen, and no bare AttributeError from inside the check."""
    audit = MemoryAuditLog()
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")], audit=audit) as rt, anyio.create_task_group() as tg:
        tg.start_soon(asking, rt, Pay(amount=5), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        given = {"by": "alice", **arguments}
        with pytest.raises(InvalidArgumentError, match=re.escape(f"rt.approvals.reject(): {why}")):
            rt.approvals.reject(approval.id, **given)  # type: ignore[arg-type]
        await wait_all_tasks_blocked()
        assert rt.approvals.pending() == [approval]
        assert [r.action for r in audit.records] == ["approval_requested"]
        rt.approvals.approve(approval.id, by="alice", roles=("treasurer",))
    assert results[0].replies[0].payload.approved  # type: ignore[attr-defined]


async def test_an_approval_of_a_request_that_timed_out_is_forgotten() -> None:
    """Without a store, a caller that stops waiting cancels the request: its approval is no
    longer listed, and answering it is refused."""
    async with Runtime([Payer("payer")]) as rt:
        result = await rt.ask(
            rt.message(Pay(amount=5), recipient="payer"), until="paid", timeout=0.1
        )
        assert result.status == "timed_out"
        assert rt.approvals.pending() == []
        with pytest.raises(ApprovalRefusedError, match="no pending approval"):
            rt.approvals.approve("anything", by="alice", roles=("treasurer",))


async def test_a_stop_does_not_wait_for_a_person_but_for_the_rest() -> None:
    """The drain waits for work in flight, not for an approval pending with a person (waiting
    would not end it): the runtime stops once only the approval is left, and reports its hold
    cut short."""
    rt = Runtime([Payer("payer")], drain_timeout=30)
    with anyio.fail_after(10):  # far below the drain timeout
        async with rt:
            await rt.publish(rt.message(Pay(amount=500), recipient="payer"))
            await wait_all_tasks_blocked()
            assert len(rt.approvals.pending()) == 1
            assert rt.statistics().in_flight == 1  # its hold, and nothing else
    assert rt.shutdown_report is not None
    assert rt.shutdown_report.cancelled_timers == 1


async def test_a_stop_still_drains_the_work_beside_a_pending_approval() -> None:
    """Beside a pending approval, a handler still running is waited for."""
    done = anyio.Event()

    class Slow(BaseAgent):
        @handler
        async def on_pay(self, payload: Pay, ctx: Context) -> None:
            await anyio.sleep(0.05)
            done.set()

    async with Runtime([Payer("payer"), Slow("slow")], drain_timeout=30) as rt:
        await rt.publish(rt.message(Pay(amount=500), recipient="payer"))
        await wait_all_tasks_blocked()
        assert len(rt.approvals.pending()) == 1
        await rt.publish(rt.message(Pay(amount=1), recipient="slow"))
    assert done.is_set()
    assert rt.shutdown_report is not None
    assert rt.shutdown_report.cancelled_timers == 1


async def test_an_answer_left_with_text_no_row_holds_is_refused_not_raised() -> None:
    """An answer another process left (a NATS bucket's entry decodes ``\\ud800`` to a lone
    surrogate) with a reason no store row or stream can hold is refused, as the person who
    left it is told; the approval still waits."""
    results: list[GatherResult] = []
    async with Runtime([Payer("payer")]) as rt, anyio.create_task_group() as tg:
        tg.start_soon(asking, rt, Pay(amount=5), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        left = rt.approvals.answer_left(approval.id, True, "alice", ("treasurer",), "ok \ud800")
        assert left == (
            "refused: rt.approvals.approve(): reason is not valid text (a lone surrogate at 3)"
        )
        assert rt.approvals.pending() == [approval]
        rt.approvals.approve(approval.id, by="alice", roles=("treasurer",))
    assert results[0].replies[0].payload == Paid(approved=True, by="alice")


async def test_an_answer_sent_as_its_request_is_cancelled_is_not_kept() -> None:
    """An answer given, then its request cancelled before the desk took it: the desk never
    sees it, and forgets it with the approval (it kept every such answer for ever)."""
    async with Runtime([Payer("payer")]) as rt, anyio.create_task_group() as tg:
        results: list[GatherResult] = []
        tg.start_soon(asking, rt, Pay(amount=5), results)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        rt.approvals.approve(approval.id, by="alice", roles=("treasurer",))
        rt.cancel(approval.correlation_id)  # before the desk's turn
        await wait_all_tasks_blocked()
        assert rt.approvals.pending() == []
        [desk] = [a for a in rt.agents() if isinstance(a, ApprovalDesk)]
        assert desk.issued == {}
