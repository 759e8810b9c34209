"""Which agents a running worker hosts (docs/scale-out.md, "An agent no worker hosts").

A delivery to an agent no worker hosts is not lost: it waits in the work-queue stream until a
worker that hosts the agent starts. But a sender that is not told waits out its whole
deadline and hears only ``timed_out``. So every worker answers, for each agent it hosts, on
that agent's presence subject (core NATS, a queue group: one answer is enough), from the
moment its consumer is bound until it stops; a process asks there, and the server itself
answers "no responders" at once when nobody listens. A probe that nobody answers in time was
heard by a worker busy with its handlers, or by one that had just stopped (the server may still
route a probe to a subscription for a moment after it was removed): it is asked again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import anyio

from .._base.log import lazy_logger
from ._names import NatsNames
from ._wire import bound

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

_log = lazy_logger("genie.nats")

__all__ = ["Presence", "unhosted", "unhosted_warning"]

QUEUE = "genie-hosts"  # the workers of an agent answer as one
# How long a probe waits for an answer. The server answers at once when nobody hosts the
# agent; a worker that does may be late (its loop runs handlers).
PROBE_WAIT = 0.5
RECHECK = 10.0  # seconds before a process that keeps publishing asks again
# The server may say "no responders" for a moment after it acknowledged a subscription
# (seen with nats-server 2.15: about 1 probe in 20 made at once after the worker's flush,
# never a second probe): "nobody hosts it" is believed only when said twice, this far apart.
AGAIN = 0.02
# And it may route a probe to a subscription for a moment after the worker removed it (seen
# under load: the probe then times out): probes that time out are made again, this many in
# all. Only when every one times out is the agent taken as hosted by a busy worker.
PROBES = 3


async def unhosted(nc: Client, names: NatsNames, agents: Iterable[str]) -> list[str]:
    """The agents of ``agents`` no running worker hosts now (probed together, each at most
    ``PROBES`` times: under ``PROBES * PROBE_WAIT`` seconds in all)."""
    from nats.errors import Error as NatsError
    from nats.errors import NoRespondersError

    found: list[str] = []

    async def probe(agent_id: str) -> None:
        nobody = 0  # "no responders" answers so far
        for _ in range(PROBES):
            try:
                await nc.request(names.presence(agent_id), b"", timeout=PROBE_WAIT)
            except NoRespondersError:
                nobody += 1
                if nobody == 2:
                    found.append(agent_id)
                    return
                await anyio.sleep(AGAIN)
            except TimeoutError:
                continue  # a busy worker, or one that just stopped: ask again
            except NatsError:
                return  # the broker is away: nothing to say about it
            else:
                return  # a worker answered: it hosts the agent

    ids = list(agents)
    async with anyio.create_task_group() as tg:
        for agent_id in ids:
            tg.start_soon(probe, agent_id)
    return [a for a in ids if a in found]  # in the caller's order


def unhosted_warning(namespace: str, agents: Iterable[str]) -> str:
    """What a sender is told of agents no worker hosts: which, and what to do."""
    ids = list(agents)
    names = ", ".join(repr(a) for a in ids)
    one = len(ids) == 1
    return (
        f"no worker hosts agent{'' if one else 's'} {names} (namespace {namespace!r}): "
        f"deliveries to {'it' if one else 'them'} wait in the stream until a worker hosting "
        f"{'it' if one else 'them'} starts (genie worker PIPELINE --nats URL --agents "
        f"{','.join(ids)})"
    )


class Presence:
    """One process's side of presence: the agents its worker answers for, and what it
    knows of the agents no worker hosts.

    ``answer`` runs, in a worker, for each agent it hosts from the moment the agent's consumer
    is bound; ``serving`` is set once it answers for all of ``hosted``. A process that
    publishes asks at its first publish and again at most every ``RECHECK`` seconds while it
    publishes (``due``, then ``check``); ``warn`` is told of each agent once, when it is
    first found unhosted (again only after a worker was seen hosting it in between).
    """

    def __init__(
        self,
        names: NatsNames,
        origin: str,
        hosted: Iterable[str],
        warn: Callable[[list[str]], None],
    ) -> None:
        self.names = names
        self.origin = origin
        self.hosted = frozenset(hosted)
        self.warn = warn
        self.serving = anyio.Event()
        if not self.hosted:
            self.serving.set()
        self.unhosted: set[str] = set()
        self._answering: set[str] = set()
        self._next = -float("inf")

    async def answer(self, nc: Client, agent_id: str) -> None:
        """Answer probes for ``agent_id`` until cancelled (this worker takes its deliveries)."""
        from nats.errors import Error as NatsError

        origin = self.origin.encode()

        async def reply(probe: Msg) -> None:
            if probe.reply:  # a probe; anything else published there has nobody to answer
                await probe.respond(origin)

        async def subscribe() -> Subscription:
            sub = await nc.subscribe(self.names.presence(agent_id), queue=QUEUE, cb=reply)
            await nc.flush()  # the server knows of it before this worker says it serves
            return sub

        sub = await bound(f"answer for {agent_id}", subscribe)
        self._answering.add(agent_id)
        if self._answering >= self.hosted:
            self.serving.set()
        try:
            await anyio.sleep_forever()
        finally:
            self._answering.discard(agent_id)
            # Flushed, so a probe made after this worker stopped finds nobody.
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(1),
                contextlib.suppress(NatsError, TimeoutError),
            ):
                await sub.unsubscribe()
                await nc.flush()

    def due(self) -> bool:
        """Whether to ask now (each True starts one ``check``)."""
        now = anyio.current_time()
        if now < self._next:
            return False
        self._next = now + RECHECK
        return True

    async def check(self, nc: Client, agents: Iterable[str]) -> None:
        found = await unhosted(nc, self.names, agents)
        new = [a for a in found if a not in self.unhosted]
        self.unhosted = set(found)
        if new:
            try:
                self.warn(new)
            except Exception:  # the caller's hook: it is told, it does not stop the runtime
                _log.exception("on_unhosted raised, told of %s", ", ".join(new))
