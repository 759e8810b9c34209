"""W3C Trace Context: the ``traceparent`` header (https://www.w3.org/TR/trace-context/)."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TraceParent"]

_HEADER = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A caller's span: the request joins its trace, under its span."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16
    flags: str = "01"

    @classmethod
    def parse(cls, header: str | None) -> TraceParent | None:
        """The header's trace, or None when absent or invalid (the spec says: start a new
        trace rather than refuse the request)."""
        if header is None:
            return None
        match = _HEADER.match(header.strip().lower())
        if match is None:
            return None
        version, trace_id, span_id, flags = match.groups()
        if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        return cls(trace_id, span_id, flags)

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"
