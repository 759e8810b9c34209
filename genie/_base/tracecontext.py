"""W3C Trace Context: the ``traceparent`` header (https://www.w3.org/TR/trace-context/)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TraceParent"]

# Lower-case hex only (the spec's HEXDIGLC): an upper-case trace id is no trace id. A version
# after 00 may add fields after the four it shares with 00, each after a dash.
_HEADER = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.ASCII)


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A caller's span: the request joins its trace, under its span."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16
    flags: str = "01"

    @classmethod
    def parse(cls, header: str | Sequence[str] | None) -> TraceParent | None:
        """The header's trace, or None when absent or invalid (the spec says: start a new
        trace rather than refuse the request). Given as every value the request holds: two
        are one header whose values HTTP joins with a comma, which no trace is."""
        if header is None or isinstance(header, str):
            values = [] if header is None else [header]
        else:
            values = list(header)
        if len(values) != 1:
            return None
        match = _HEADER.fullmatch(values[0].strip(" \t"))
        if match is None:
            return None
        version, trace_id, span_id, flags, more = match.groups()
        if version == "ff" or (version == "00" and more is not None):
            return None
        if trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        return cls(trace_id, span_id, flags)

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"
