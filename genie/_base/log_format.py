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

from .._errors import for_terminal

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
    message fields, any other ``extra`` given to the call, and the traceback if any."""

    _standard = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            doc[name] = getattr(record, name, None)
        for name, value in vars(record).items():
            if name not in self._standard and name not in doc and not name.startswith("_"):
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        import json  # loaded with the first JSON record, not by `import genie`

        return json.dumps(doc, default=str)


class _TextFormatter(logging.Formatter):
    """A record on one line, as a terminal shows it safely: what a handler or a message put in
    it (a failure's reason, an agent's id) cannot begin a line that seems another record, nor
    drive the terminal. A traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return for_terminal(super().formatMessage(record))

    def formatException(self, ei: _ExcInfo) -> str:
        return for_terminal(super().formatException(ei), keep_lines=True)


def configure_logging(
    format: Literal["text", "json"] = "text",
    level: int | str = logging.WARNING,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Log everything at ``level`` and above to ``stream`` (stderr) in ``format``.

    For applications and the CLI: it adds one handler to the root logger, replacing the one a
    previous call added, and returns it (``logging.getLogger().removeHandler`` undoes it).
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_genie", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._genie = True  # type: ignore[attr-defined]
    if format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter(_TEXT, defaults=dict.fromkeys(FIELDS, "-")))
    root.addHandler(handler)
    root.setLevel(level)
    return handler
