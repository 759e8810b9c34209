"""Who receives a message: the direct recipient, the subscribers of its type, and the taps."""

from __future__ import annotations

import fnmatch
from collections.abc import Container
from typing import Protocol

from .._message.envelope import Message

__all__ = ["Router", "Tap"]

# The direct recipients whose answers the router keeps (any caller's name may be one): past
# this many, the table is emptied and fills again with the names in use.
MAX_DIRECT = 4096


class Tap(Protocol):
    """An observer that sees every admitted message without being on the delivery path.

    ``observe`` is called synchronously when a message is published and must not block: an
    event stream buffers, an exporter queues. Taps are governed like agents (the runtime runs the
    policies with the tap's ``id`` as recipient), so a tap that streams out of the process cannot
    leak a message a policy denies it. An exception in ``observe`` is counted and logged, never
    propagated.
    """

    @property
    def id(self) -> str: ...

    def observe(self, msg: Message) -> None: ...


class Router:
    """Subscriptions by exact type or by pattern (``finance.*``, fnmatch syntax), and the
    agents of the runtime (``agents``: its registry, by id).

    Recipients for a type (and a direct recipient) are computed once and cached until the
    subscriptions or the agents change: every message asks, and few distinct questions are
    ever asked. Only agents of the runtime are named: a direct recipient that is none (a
    caller outside, an agent of another process) is for the correlation's waiters and the
    transport to take.
    """

    def __init__(self, agents: Container[str]) -> None:
        self._agents = agents
        self._exact: dict[str, list[str]] = {}
        self._patterns: list[tuple[str, str]] = []
        # Subscribers by type, filled by ``subscribers``. Cleared when the subscriptions change.
        self.cache: dict[str, tuple[str, ...]] = {}
        # ``recipients``' answers, by direct recipient (None: none) then type; the routing
        # path reads it first. Emptied in place when the subscriptions change.
        self.table: dict[str | None, dict[str, tuple[str, ...]]] = {}

    def agent_added(self) -> None:
        """An agent joined the runtime: a direct recipient may be one now."""
        self.table.clear()

    def subscribe(self, agent_id: str, pattern: str) -> None:
        if any(ch in pattern for ch in "*?["):
            if (pattern, agent_id) not in self._patterns:
                self._patterns.append((pattern, agent_id))
        else:
            subs = self._exact.setdefault(pattern, [])
            if agent_id not in subs:
                subs.append(agent_id)
        self.cache.clear()
        self.table.clear()

    def unsubscribe_all(self, agent_id: str) -> None:
        for subs in self._exact.values():
            if agent_id in subs:
                subs.remove(agent_id)
        self._patterns = [(p, a) for p, a in self._patterns if a != agent_id]
        self.cache.clear()
        self.table.clear()

    def subscribers(self, type_name: str) -> tuple[str, ...]:
        found = self.cache.get(type_name)
        if found is None:
            ids = list(self._exact.get(type_name, ()))
            for pattern, agent_id in self._patterns:
                if agent_id not in ids and fnmatch.fnmatchcase(type_name, pattern):
                    ids.append(agent_id)
            found = self.cache[type_name] = tuple(ids)
        return found

    def recipients(self, type_name: str, direct: str | None) -> tuple[str, ...]:
        """The direct recipient first, then the subscribers of the type, without duplicates;
        kept in ``table``."""
        by_type = self.table.get(direct)
        if by_type is None:
            if len(self.table) >= MAX_DIRECT:
                self.table.clear()
            by_type = self.table[direct] = {}
        found = by_type.get(type_name)
        if found is None:
            found = by_type[type_name] = self._recipients(type_name, direct)
        return found

    def _recipients(self, type_name: str, direct: str | None) -> tuple[str, ...]:
        subs = self.subscribers(type_name)
        if direct is None or direct not in self._agents:
            return subs
        if not subs:
            return (direct,)
        return (direct, *(s for s in subs if s != direct))

    def subscriptions(self) -> dict[str, list[str]]:
        """Pattern or type → subscribed agent ids (for graphs and docs)."""
        out = {k: list(v) for k, v in self._exact.items() if v}
        for pattern, agent_id in self._patterns:
            out.setdefault(pattern, []).append(agent_id)
        return out
