"""Structured logs with the standard ``logging`` module.

Every record the runtime and the agents' ``ctx.logger`` write carries ``agent_id``,
``message_type`` and ``correlation_id`` (``-`` when a record concerns no message). The
formatters here print them, as text for people or as one JSON object per line for machines.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, TextIO

from .._errors import InvalidArgumentError, for_terminal

if TYPE_CHECKING:
    from types import TracebackType

    _ExcInfo = (
        tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
    )

__all__ = ["JsonFormatter", "configure_logging"]

FIELDS = ("agent_id", "message_type", "correlation_id")
_TEXT = (
    "%(asctime)s %(levelname)s %(name)s "
    "[agent=%(agent_id)s type=%(message_type)s correlation=%(correlation_id)s] %(message)s"
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the three
    message fields, any other ``extra`` given to the call, and the traceback and the stack
    (``stack_info=True``) if any."""

    _standard = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            # ``-`` for a record about no message, as the text format writes it: many of
            # genie's own (a store, a transport) and every other library's carry none.
            doc[name] = getattr(record, name, "-")
        for name, value in vars(record).items():
            if name not in self._standard and name not in doc and not name.startswith("_"):
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:  # a ``stack_info=True`` call's stack, as the text format shows it
            doc["stack"] = self.formatStack(record.stack_info)
        import json  # loaded with the first JSON record, not by `import genie`

        return json.dumps(doc, default=str)


class _TextFormatter(logging.Formatter):
    """A record on one line, as a terminal shows it safely: what a handler or a message put in
    it (a failure's reason, an agent's id) cannot begin a line that seems another record, nor
    drive the terminal. A traceback keeps its lines."""

    def format(self, record: logging.LogRecord) -> str:
        # ``logging`` keeps the first handler's traceback text on the record for the next:
        # another handler's (unescaped) must not be written here.
        cached, record.exc_text = record.exc_text, None
        try:
            return super().format(record)
        finally:
            record.exc_text = cached

    def formatMessage(self, record: logging.LogRecord) -> str:
        return for_terminal(super().formatMessage(record))

    def formatException(self, ei: _ExcInfo) -> str:
        text = super().formatException(ei)
        # Python's lines are kept; the text an exception was raised with (which may quote a
        # request) is one line, as the record's message is: a line break in it would begin a
        # line that reads as a record of its own.
        for said in _said(ei[1]):
            text = text.replace(said, for_terminal(said))
        return for_terminal(text, keep_lines=True)


def _said(error: BaseException | None) -> set[str]:
    """The texts of ``error`` and of the exceptions chained to it (causes, contexts, a
    group's members, their notes) that hold a line break."""
    found: set[str] = set()
    seen: set[int] = set()
    todo = [error]
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        try:
            texts = [str(exc), *(str(n) for n in getattr(exc, "__notes__", None) or ())]
        except Exception:  # a broken __str__: the traceback shows it its own way
            texts = []
        found.update(t for t in texts if "\n" in t)
        todo += [exc.__cause__, exc.__context__]
        if isinstance(exc, BaseExceptionGroup):
            todo += exc.exceptions
    return found


def configure_logging(
    format: Literal["text", "json"] = "text",
    level: int | str = logging.WARNING,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Log everything at ``level`` and above to ``stream`` (stderr) in ``format``.

    For applications and the CLI: it adds one handler to the root logger, replacing the one a
    previous call added, and returns it (``logging.getLogger().removeHandler`` undoes it).
    Another ``format`` (``InvalidArgumentError``) or a level ``logging`` does not know
    (its ``ValueError``) is refused before anything changes.
    """
    if format not in ("text", "json"):
        raise InvalidArgumentError(f"format must be 'text' or 'json', not {format!r}")
    root = logging.getLogger()
    root.setLevel(level)  # first: a level logging does not know changes nothing
    for old in [h for h in root.handlers if getattr(h, "_genie", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._genie = True  # type: ignore[attr-defined]
    if format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter(_TEXT, defaults=dict.fromkeys(FIELDS, "-")))
    root.addHandler(handler)
    return handler
