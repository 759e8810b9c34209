"""A booker that asks a travel desk for approval before it books, and gives up on an approval
when told to (as a workflow withdraws its approval step when another step fails): the asker
of the tests where an answer crosses its asker's withdrawal, in one process, through a store
and over NATS."""

from __future__ import annotations

import anyio

from genie import BaseAgent, Context, Message, Payload, handler
from genie._runtime.approvals import DESK, ApprovalDecision, ApprovalRequest, ApprovalWithdrawn


class Book(Payload):
    message_type = "crossed_book"


class GiveUp(Payload):
    message_type = "crossed_give_up"
    approval_id: str


class Booker(BaseAgent):
    """Asks the travel desk on ``Book``; withdraws ``GiveUp``'s approval, and then takes no
    decision on it. ``decided`` is set once ``decisions`` decisions reached it, for a test
    to wait on."""

    produces = (ApprovalRequest, ApprovalWithdrawn)

    def __init__(self, agent_id: str, decisions: int = 0) -> None:
        super().__init__(agent_id)
        self.decided = anyio.Event()
        self._left = decisions

    @handler
    async def on_book(self, payload: Book, ctx: Context) -> Message:
        return ctx.emit(ApprovalRequest(subject="Trip to Goa", role="travel_desk"))

    @handler
    async def on_give_up(self, payload: GiveUp, ctx: Context) -> Message:
        withdrawn = ApprovalWithdrawn(approval_id=payload.approval_id, reason="flight failed")
        return ctx.emit(withdrawn, recipient=DESK)

    @handler
    async def on_decision(self, decision: ApprovalDecision, ctx: Context) -> None:
        self._left -= 1
        if not self._left:
            self.decided.set()
