"""The person a simulation puts at the approvals desk: what ``answer`` faults inject.

Nobody answers an approval in a simulation unless an ``answer`` fault says who asks and how a
person answers: after a delay drawn from the fault's distribution, yes with its ``approve``
probability, as the principal the approval names, or as someone holding the role it names
(after an escalation, the role escalated to). The answer goes through ``Runtime.approvals``,
so the desk checks it as it checks anyone's. Each agent's delays and verdicts come from
streams of their own, seeded by the run's seed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._message.envelope import Message
from .._runtime.approvals import ApprovalRefusedError, ApprovalRequest
from .._runtime.observe.observer import Observer
from .._runtime.runtime import Runtime
from .._runtime.transport import DESK
from ._faults import Fault, stream

__all__ = ["Person"]


class Person(Observer):
    """Answers the approvals asked by the agents of ``faults`` (``answer`` faults by agent),
    and counts them (``counts``)."""

    def __init__(self, faults: Mapping[str, Fault], seed: int) -> None:
        self.faults = dict(faults)
        self._delays = {a: f.latency(stream(seed, "answer", a)) for a, f in faults.items()}
        self._verdicts = {a: stream(seed, "approve", a).random for a in faults}
        self._counts = {
            a: dict.fromkeys(("asked", "approved", "rejected", "refused"), 0) for a in faults
        }
        self._send: MemoryObjectSendStream[tuple[str, str]]
        self._asked: MemoryObjectReceiveStream[tuple[str, str]]
        self._send, self._asked = anyio.create_memory_object_stream[tuple[str, str]](math.inf)

    def delivered(self, msg: Message, agent_id: str) -> None:
        if (
            agent_id == DESK
            and msg.type == ApprovalRequest.message_type
            and msg.sender in self.faults
        ):
            self._counts[msg.sender]["asked"] += 1
            with contextlib.suppress(anyio.ClosedResourceError):  # asked as the run ends
                self._send.send_nowait((msg.id, msg.sender))

    async def run(self, rt: Runtime) -> None:
        """Answer each approval as it is asked, until cancelled."""
        with self._send, self._asked:
            async with anyio.create_task_group() as tg:
                async for approval_id, agent in self._asked:
                    delay = self._delays[agent].draw()
                    approve = self._verdicts[agent]() < self.faults[agent].rate
                    tg.start_soon(self._answer, rt, approval_id, agent, delay, approve)

    async def _answer(
        self, rt: Runtime, approval_id: str, agent: str, delay: float, approve: bool
    ) -> None:
        await rt.clock.sleep(delay)
        approval = next((a for a in rt.approvals.pending() if a.id == approval_id), None)
        if approval is None:  # its session ended, or its deadline decided it
            return
        by = approval.principal or f"simulated {approval.role or 'person'}"
        roles = (approval.role,) if approval.role else ()
        answer = rt.approvals.approve if approve else rt.approvals.reject
        try:
            answer(approval_id, by=by, roles=roles, reason=f"simulated ({self.faults[agent].spec})")
        except ApprovalRefusedError:  # nobody may answer it as asked (a principal "genie")
            self._counts[agent]["refused"] += 1  # the desk audited why; its deadline decides
            return
        self._counts[agent]["approved" if approve else "rejected"] += 1

    def counts(self, agent: str) -> dict[str, int]:
        """What the person did for ``agent``'s approvals; ``refused``: answers the desk
        refused (the approval names someone nobody may answer as); ``too_late``: those whose
        session ended, or whose deadline decided them, before the answer came (or the run
        ended)."""
        n = self._counts[agent]
        return {**n, "too_late": n["asked"] - n["approved"] - n["rejected"] - n["refused"]}
