"""Who receives a message: the direct recipient, the subscribers of its type, and the taps."""

from __future__ import annotations

import fnmatch
import functools
from typing import Protocol

from .._message.envelope import Message

__all__ = ["Router", "Tap"]


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
    """Subscriptions by exact type or by pattern (``finance.*``, fnmatch syntax).

    Recipients for a type (and a direct recipient) are computed once and cached until the
    subscriptions change: every message asks, and few distinct questions are ever asked.
    """

    def __init__(self) -> None:
        self._exact: dict[str, list[str]] = {}
        self._patterns: list[tuple[str, str]] = []
        # Subscribers by type, filled by ``subscribers``. Cleared when the subscriptions change.
        self.cache: dict[str, tuple[str, ...]] = {}
        # ``recipients(type, direct)``: direct recipient first, then the subscribers of the
        # type, without duplicates. Answered from a bounded table of the last questions (a
        # direct recipient may be any caller's name), emptied when the subscriptions change.
        self.recipients = functools.lru_cache(maxsize=4096)(self._recipients)

    def subscribe(self, agent_id: str, pattern: str) -> None:
        if any(ch in pattern for ch in "*?["):
            if (pattern, agent_id) not in self._patterns:
                self._patterns.append((pattern, agent_id))
        else:
            subs = self._exact.setdefault(pattern, [])
            if agent_id not in subs:
                subs.append(agent_id)
        self.cache.clear()
        self.recipients.cache_clear()

    def unsubscribe_all(self, agent_id: str) -> None:
        for subs in self._exact.values():
            if agent_id in subs:
                subs.remove(agent_id)
        self._patterns = [(p, a) for p, a in self._patterns if a != agent_id]
        self.cache.clear()
        self.recipients.cache_clear()

    def subscribers(self, type_name: str) -> tuple[str, ...]:
        found = self.cache.get(type_name)
        if found is None:
            ids = list(self._exact.get(type_name, ()))
            for pattern, agent_id in self._patterns:
                if agent_id not in ids and fnmatch.fnmatchcase(type_name, pattern):
                    ids.append(agent_id)
            found = self.cache[type_name] = tuple(ids)
        return found

    def _recipients(self, type_name: str, direct: str | None) -> tuple[str, ...]:
        subs = self.subscribers(type_name)
        if direct is None:
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
