"""The correlations a pipeline node (a declared gather, a workflow) has finished."""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

__all__ = ["FINISHED_KEPT", "EndsKept", "Finished"]

FINISHED_KEPT = 4096  # the finished correlations a node remembers


class EndsKept(Protocol):
    """Where the runtime keeps, with each correlation still active in it, the fan-ins that
    ended their session of it (``Runtime.end_fan_in``)."""

    def end_fan_in(self, correlation_id: str, agent_id: str) -> None: ...

    def fan_in_ended(self, correlation_id: str, agent_id: str) -> bool: ...


class Finished:
    """The correlations the node ``node`` ended: a message that comes after its
    correlation's end (a straggler, a late reply) opens no new session.

    With ``ends`` (the runtime), an end is kept with its correlation for as long as anything
    of the request is in flight there, so whatever the request's own agents still send is
    known late, however many requests ended meanwhile. The last ``FINISHED_KEPT`` ends are
    remembered besides, for what comes once nothing of the request is in flight here (from
    another process, or published from outside): a node that serves for ever keeps a bounded
    memory."""

    __slots__ = ("_ends", "_keys", "_node")

    def __init__(self, node: str = "", ends: EndsKept | None = None) -> None:
        self._node = node
        self._ends = ends
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, correlation_id: str) -> bool:
        if self._ends is not None and self._ends.fan_in_ended(correlation_id, self._node):
            return True
        return correlation_id in self._keys

    def add(self, correlation_id: str) -> None:
        if self._ends is not None:
            self._ends.end_fan_in(correlation_id, self._node)
        self._keys[correlation_id] = None
        if len(self._keys) > FINISHED_KEPT:
            self._keys.popitem(last=False)
