"""The correlations a pipeline node (a declared gather, a workflow) has finished."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["FINISHED_KEPT", "Finished"]

FINISHED_KEPT = 4096  # the finished correlations a node remembers


class Finished:
    """The last ``FINISHED_KEPT`` correlations a node ended: a message that comes after its
    correlation's end (a straggler, a late reply) opens no new session, and a node that
    serves for ever keeps a bounded memory."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, correlation_id: str) -> bool:
        return correlation_id in self._keys

    def add(self, correlation_id: str) -> None:
        self._keys[correlation_id] = None
        if len(self._keys) > FINISHED_KEPT:
            self._keys.popitem(last=False)
