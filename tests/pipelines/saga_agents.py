"""User agents (``module:Class``) for the workflow tests: steps over one ``Trip`` state that
record what they did (and undid) in a list the test reads, and fail, stall or meet when told."""

from __future__ import annotations

import anyio

from genie import ApprovalDecision, BaseAgent, Context, Message, Payload, handler


class Trip(Payload):
    message_type = "trip"
    city: str
    flight: str = ""
    hotel: str = ""
    car: str = ""
    note: str = ""


class Cancel(Payload):
    """A step's undo, built from the state's fields."""

    message_type = "trip_cancel"
    city: str
    flight: str = ""
    hotel: str = ""
    car: str = ""
    note: str = ""


class Booker(BaseAgent):
    """Books ``field`` (sets it on the trip); ``fail`` raises instead, ``stall`` answers that
    many seconds late, ``undo_fails`` raises when asked to undo (after ``undo_stall``), and
    ``undo_answer`` is how it answers an undo: ``reply``, ``none`` (returns nothing), ``twice``
    (replies two times); ``meet``: waits until that
    many bookers have started (so a step can only finish if the others run at once);
    ``answer``: ``none`` returns nothing, ``emit`` only emits a ``trip_cancel`` to nobody in
    particular, ``other`` replies with a ``trip_cancel`` (none of them the state)."""

    produces = (Trip, Cancel, ApprovalDecision)
    journal: list[str]  # shared by the test: what was done and undone, in order

    def __init__(
        self,
        id: str,
        *,
        field: str,
        fail: bool = False,
        stall: float = 0.0,
        undo_fails: bool = False,
        undo_stall: float = 0.0,
        undo_answer: str = "reply",
        forge: str = "",
        meet: int = 0,
        journal: list[str] | None = None,
        value: str = "",
        principal: str = "",
        answer: str = "state",
    ) -> None:
        super().__init__(id)
        self.field = field
        self.fail = fail
        self.stall = stall
        self.undo_fails = undo_fails
        self.undo_stall = undo_stall
        self.undo_answer = undo_answer
        self.forge = forge
        self.meet = meet
        self.value = value
        self.principal = principal
        self.answer = answer
        self.journal = journal if journal is not None else JOURNAL

    @handler
    async def on_trip(self, trip: Trip, ctx: Context) -> Message | list[Message] | None:
        self.journal.append(f"start {self.id}")
        if self.meet:
            MET.append(self.id)
            while len(MET) < self.meet:  # noqa: ASYNC110 (a list two agents share)
                await anyio.sleep(0.001)
        if self.stall:
            await anyio.sleep(self.stall)
        if self.forge:  # an agent posing as the desk: approves the step ``forge`` itself
            run = ctx.message.id.rsplit("~", 1)[0]  # <request id>~<workflow>
            forged = ApprovalDecision(approval_id=f"{run}~{self.forge}", approved=True, by="x")
            return [
                ctx.emit(forged, recipient=ctx.message.sender),
                ctx.reply(trip.model_copy(update={self.field: "forged"})),
            ]
        if self.fail:
            raise RuntimeError(f"{self.id}: no seats left")
        self.journal.append(f"do {self.id}")
        if self.answer == "none":
            return None
        if self.answer in ("emit", "other"):
            cancel = Cancel(**trip.model_dump())
            return ctx.reply(cancel) if self.answer == "other" else ctx.emit(cancel)
        return ctx.reply(trip.model_copy(update={self.field: self.value or f"{self.id}-ok"}))

    @handler
    async def on_cancel(self, cancel: Cancel, ctx: Context) -> Message | list[Message] | None:
        if self.undo_stall:
            self.journal.append(f"undoing {self.id}")
            await anyio.sleep(self.undo_stall)
        if self.undo_fails:
            raise RuntimeError(f"{self.id}: the refund desk is closed")
        self.journal.append(f"undo {self.id} {getattr(cancel, self.field)}")
        if self.principal:  # journals who asked; "claim": its reply claims other roles
            meta = ctx.message.metadata
            self.journal.append(f"undo {self.id} as {meta.get('user_id')} {meta.get('user_roles')}")
        if self.principal == "claim":
            return ctx.reply(cancel, metadata={"user_id": "mallory", "user_roles": ("admin",)})
        if self.undo_answer == "none":
            return None
        if self.undo_answer == "twice":
            return [ctx.reply(cancel), ctx.reply(cancel)]
        return ctx.reply(cancel)


JOURNAL: list[str] = []
MET: list[str] = []


class Refund(Payload):
    """An undo that needs a field no trip has: a workflow file using it is refused."""

    message_type = "refund"
    amount: float


class Refunder(BaseAgent):
    produces = (Trip, Refund)

    @handler
    async def on_trip(self, trip: Trip, ctx: Context) -> Message | list[Message] | None:
        return ctx.reply(trip)

    @handler
    async def on_refund(self, refund: Refund, ctx: Context) -> Message:
        return ctx.reply(refund)


class Resender(BaseAgent):
    """Sends the request's trip once more to the workflow ``to``, ``after`` seconds on the
    runtime clock: a slow second sender of the state, whose trip comes once the run ended."""

    produces = (Trip,)

    def __init__(self, id: str, *, to: str, after: float) -> None:
        super().__init__(id)
        self.to = to
        self.after = after

    @handler
    async def on_trip(self, trip: Trip, ctx: Context) -> Message | None:
        if ctx.message.causation_id is not None:  # not the request itself: a step's, a reply
            return None
        await ctx.sleep(self.after)
        return ctx.emit(trip, recipient=self.to)
