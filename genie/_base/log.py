"""Genie's own loggers, made when they first write (docs/design/imports-and-gc.md).

``import logging`` brings the ``traceback`` and ``string`` modules, and a program that never
logs needs none of it: the runtime's modules hold a
``lazy_logger(name)`` stand-in, whose first use imports ``logging``, hangs genie's ``NullHandler``
on the ``genie`` logger and keeps the real logger's method it was asked for, so every later
``_log.info`` is one attribute look-up, as on the logger itself.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import logging

__all__ = ["lazy_logger", "message_logger"]


def lazy_logger(name: str) -> logging.Logger:
    """The logger ``name`` (under ``genie``), imported and looked up at its first use."""
    return cast("logging.Logger", _Deferred(name))


def message_logger(name: str, extra: dict[str, str]) -> logging.LoggerAdapter[logging.Logger]:
    """The logger ``name`` with ``extra`` (a message's fields) added to every record, and the
    caller's own ``extra`` kept (a plain ``LoggerAdapter`` replaces it before Python 3.13)."""
    return _message_adapter()(_real(name), extra)


class _Deferred:
    __slots__ = ("__dict__", "_name")

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(_real(self._name), attr)
        if callable(value):  # a method, bound to the logger for good: kept
            self.__dict__[attr] = value
        return value  # a value (``level``, ``handlers``) is read afresh each time


@functools.cache  # a name's logger is the same object for the life of the process
def _real(name: str) -> logging.Logger:
    import logging

    top = logging.getLogger("genie")
    if not any(type(h) is logging.NullHandler for h in top.handlers):
        # A library's records go where the application sends them: with no logging configured
        # they are not printed through logging's last resort (a simulation dead-letters
        # thousands on purpose).
        top.addHandler(logging.NullHandler())
    return logging.getLogger(name)


@functools.cache
def _message_adapter() -> type[logging.LoggerAdapter[logging.Logger]]:
    import logging

    class MessageLogger(logging.LoggerAdapter[logging.Logger]):
        def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
            kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
            return msg, kwargs

    return MessageLogger
