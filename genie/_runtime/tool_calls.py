"""The runtime's side of ``ctx.tool``: the tool servers' sessions, and every call governed.

A call is judged twice, as two messages of the request it works for (so its metadata, the
caller's identity among it, is the request's): a ``tool_call`` from the agent to
``tool:SERVER`` before anything leaves, counted against the correlation's delivery budget
and the hop limit, and a ``tool_result`` from ``tool:SERVER`` to the agent before the handler
reads it. A listing of the server's tools is judged the same way, as a ``tool_list`` and a
``tool_listing``: it starts the server as a call does, and the descriptions it brings back
are the server's words, which a model reads (``tool_loop``). A denial raises
``ToolDeniedError`` in the handler and is audited like any other; an allowed call and result
are audited too (``tool_call``, ``tool_result``), as memory's writes and reads are.
The handler's deadline bounds the call (it runs inside the handler), and a call that fails
fails the handler, which is retried as its options say.

Sessions open at a server's first call, in a task of the runtime (so a handler that is
cancelled never takes a session down with it), are shared by every handler, and close when
the runtime stops. A session that dies is dropped once a call finds it so; a later call opens
a new one.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .._agent.tools import (
    ToolOutput,
    ToolServer,
    ToolSession,
    ToolSpec,
    sendable,
)
from .._base.clock import Clock, waiting_outside
from .._base.json_form import unfit_for_json
from .._base.log import lazy_logger
from .._errors import ToolCallError, ToolDeniedError, described
from .._message.envelope import Message
from .._message.payload import Payload
from .admission import Admission
from .correlator import Correlator
from .ledger import Ledger
from .policy import Decision

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["ToolCall", "ToolCalls", "ToolList", "ToolListing", "ToolResult"]

_log = lazy_logger("genie.runtime")


class ToolCall(Payload):
    """What the policies judge before a tool is called: the call, from the agent to
    ``tool:SERVER``."""

    message_type = "tool_call"
    server: str
    tool: str
    arguments: dict[str, Any]


class ToolResult(Payload):
    """What the policies judge before the agent reads a tool's answer, from ``tool:SERVER``
    to the agent."""

    message_type = "tool_result"
    server: str
    tool: str
    text: str
    structured: dict[str, Any] | None = None


class ToolList(Payload):
    """What the policies judge before a server's tools are listed: the listing asked, from the
    agent to ``tool:SERVER`` (it starts the server, as a call does)."""

    message_type = "tool_list"
    server: str


class ToolListing(Payload):
    """What the policies judge before the agent reads a server's tools: each one's name,
    description and input schema, from ``tool:SERVER`` to the agent."""

    message_type = "tool_listing"
    server: str
    tools: list[dict[str, Any]]


def consumer_of(server: str) -> str:
    """The recipient a call to ``server`` is judged for (``to == "tool:broker"`` in a rule)."""
    return f"tool:{server}"


class ToolCalls:
    """One runtime's tool servers, their sessions, and the governance of each call."""

    def __init__(
        self,
        servers: Mapping[str, ToolServer],
        admission: Admission,
        ledger: Ledger,
        correlator: Correlator,
        clock: Clock,
    ) -> None:
        self.servers = dict(servers)
        self._admission = admission
        self._ledger = ledger
        self._correlator = correlator
        self._clock = clock
        self._sessions: dict[str, ToolSession] = {}
        self._opening: dict[str, _Opening] = {}
        self._tg: TaskGroup | None = None
        self._numbers = itertools.count(1)

    def start(self, tg: TaskGroup) -> None:
        self._tg = tg

    def tools(self, server: str, agent_id: str, message: Message) -> GovernedTools:
        if not isinstance(server, str) or server not in self.servers:  # a list: unhashable
            known = ", ".join(sorted(self.servers)) or "none"
            raise ToolCallError(f"no tool server {server!r} in this runtime (declared: {known})")
        return GovernedTools(self, server, agent_id, message)

    async def session(self, server: str) -> ToolSession:
        """The open session to ``server``; the first caller has it opened by a task of the
        runtime, which every caller then waits for (a caller cancelled meanwhile, by its
        deadline say, leaves the opening to finish for the others)."""
        found = self._sessions.get(server)
        if found is not None:
            return found
        opening = self._opening.get(server)
        if opening is None:
            if self._tg is None:
                raise ToolCallError(f"tool server {server!r}: the runtime is not running")
            opening = self._opening[server] = _Opening()
            self._tg.start_soon(self._keep, server, opening)
        await opening.done.wait()  # ``_keep`` tells a virtual clock to wait for the opening
        if opening.session is None:
            raise ToolCallError(f"tool server {server!r}: cannot connect: {opening.failure}")
        return opening.session

    async def _keep(self, server: str, opening: _Opening) -> None:
        """Open ``server``'s session and hold it until the runtime stops or it dies."""
        declared = self.servers[server]
        try:
            # The opening has the server's timeout (a program that never answers, a URL that
            # never responds); the session, once open, lives until the runtime stops.
            # The server starting and stopping is work outside the loop (a virtual clock
            # waits for it); the open session between is not. Its stop is polled on the
            # loop's clock: paced.
            with (
                anyio.CancelScope(deadline=anyio.current_time() + declared.timeout) as scope,
                contextlib.ExitStack() as outside,
            ):
                outside.enter_context(waiting_outside())
                async with declared.connect() as session:
                    outside.close()
                    scope.deadline = math.inf
                    self._sessions[server] = session
                    opening.session = session
                    opening.done.set()
                    try:
                        await anyio.sleep_forever()
                    finally:
                        # Dropped before it closes, which takes a while for a server that
                        # died: a call meanwhile opens a new session, not this dead one.
                        self._drop(server, opening)
                        outside.enter_context(waiting_outside(paced=True))
            if not opening.done.is_set():
                opening.failure = f"no session within {declared.timeout:g} s"
        except Exception as exc:
            if not opening.done.is_set():
                opening.failure = described(exc)
            else:
                _log.warning(
                    "tool server %r: the session ended: %s: %s",
                    server,
                    type(exc).__name__,
                    exc,
                    extra={"agent_id": "-", "message_type": "-", "correlation_id": "-"},
                )
        finally:
            self._drop(server, opening)
            opening.done.set()

    def _drop(self, server: str, opening: _Opening) -> None:
        """Forget ``opening`` and its session, so that the next call opens a new one; a newer
        opening that took their place stays."""
        if self._opening.get(server) is opening:
            del self._opening[server]
        if opening.session is not None and self._sessions.get(server) is opening.session:
            del self._sessions[server]

    def message(self, about: Message, payload: Payload, sender: str, recipient: str) -> Message:
        return about.child(
            payload,
            sender=sender,
            id=f"{about.id}/tool/{next(self._numbers)}",
            created_at=self._clock.timestamp(),
            recipient=recipient,
        )

    def admit_call(self, msg: Message, consumer: str) -> None:
        """The call (or listing) may leave: the limits and the policies for ``consumer``;
        counted against the correlation's delivery budget. Raises ``ToolDeniedError``."""
        corr = self._correlator.lookup(msg.correlation_id)
        deliveries = corr.deliveries if corr is not None else 0
        decision = self._admission.evaluate(msg, consumer, deliveries)
        if not decision.allowed:
            self._refuse(msg, consumer, decision, "out")
        if corr is not None:
            self._ledger.charged(corr)
        self._audited(msg, msg.sender, consumer)

    def admit_result(self, msg: Message, reader: str) -> None:
        """The agent may read the result (or listing): the policies for ``reader``."""
        if self._admission.policies:
            decision = self._admission.judge(msg, reader)
            if not decision.allowed:
                self._refuse(msg, reader, decision, "in")
        self._audited(msg, reader, msg.sender)

    def _audited(self, msg: Message, actor: str, target: str) -> None:
        """An allowed call or listing (actor the agent, target ``tool:SERVER``) or result or
        listing read (actor the agent that reads it, target ``tool:SERVER``), in the audit
        log: the tool called is the reason (a listing has none)."""
        payload = msg.payload
        assert isinstance(payload, ToolCall | ToolResult | ToolList | ToolListing)
        tool = payload.tool if isinstance(payload, ToolCall | ToolResult) else ""
        self._ledger.record_own(actor, msg.type, target, msg, tool)

    def _refuse(self, msg: Message, consumer: str, decision: Decision, way: str) -> None:
        self._ledger.refused(msg, consumer, decision)
        raise ToolDeniedError(
            decision.policy,
            decision.reason,
            way,
            listing=isinstance(msg.payload, ToolList | ToolListing),
            message_id=msg.id,
            agent_id=msg.sender if way == "out" else consumer,
            correlation_id=msg.correlation_id,
        )


class _Opening:
    """A session being opened: ``done`` once it is open (``session``) or could not be
    (``failure`` says why)."""

    __slots__ = ("done", "failure", "session")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.session: ToolSession | None = None
        self.failure = ""


class GovernedTools:
    """``ctx.tool(server)`` in a runtime: each call judged on its way out and on its way
    back, as messages of the request the handler works for."""

    __slots__ = ("_agent_id", "_calls", "_message", "_server")

    def __init__(self, calls: ToolCalls, server: str, agent_id: str, message: Message) -> None:
        self._calls = calls
        self._server = server
        self._agent_id = agent_id
        self._message = message

    async def list(self) -> Sequence[ToolSpec]:
        calls, server, agent = self._calls, self._server, self._agent_id
        consumer = consumer_of(server)
        asked = calls.message(self._message, ToolList(server=server), agent, consumer)
        calls.admit_call(asked, consumer)
        session = await calls.session(server)
        with waiting_outside():
            specs = await session.list_tools()
        tools = [
            {"name": s.name, "description": s.description, "input_schema": dict(s.input_schema)}
            for s in specs
        ]
        refuse_unfit(f"tool server {server!r}, listing its tools", {"tools": tools})
        listing = ToolListing(server=server, tools=tools)
        calls.admit_result(calls.message(self._message, listing, consumer, agent), agent)
        return specs

    async def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolOutput:
        calls, server, agent = self._calls, self._server, self._agent_id
        given = sendable(server, name, arguments)
        consumer = consumer_of(server)
        out = calls.message(
            self._message, ToolCall(server=server, tool=name, arguments=given), agent, consumer
        )
        calls.admit_call(out, consumer)
        session = await calls.session(server)
        with waiting_outside():
            output = await session.call_tool(name, given)
        refuse_unfit(
            f"tool {name!r} of {server!r}", {"text": output.text, "structured": output.structured}
        )
        result = ToolResult(
            server=server,
            tool=name,
            text=output.text,
            structured=None if output.structured is None else dict(output.structured),
        )
        calls.admit_result(calls.message(self._message, result, consumer, agent), agent)
        return output


def refuse_unfit(about: str, answer: Mapping[str, Any]) -> None:
    """Raise ``ToolCallError`` when a server's ``answer`` (a tool's output, or its listing of
    tools) holds what JSON cannot carry exactly (NaN or infinity, which a lenient reader of the
    server's JSON takes): the policies would judge their JSON of it (NaN as null) while the
    handler read another value. The server broke the protocol, so nothing of its answer is
    judged, audited or read."""
    found = unfit_for_json(answer)
    if found is not None:
        where = ".".join(str(step) for step in found.path[1:])
        part = "its text" if found.path[0] == "text" else f"field {where!r}" if where else "it"
        raise ToolCallError(
            f"{about}: its answer holds what JSON cannot carry: {part}: {found.problem}"
        )
