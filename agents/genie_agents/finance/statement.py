"""A bank statement CSV and the transactions it holds, read exactly (money as decimals)."""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator

from .._common import MAX_AMOUNT, Record, shown

__all__ = ["MAX_AMOUNT", "MAX_ROWS", "StatementError", "Transaction", "parse_statement"]


def _empty(value: object) -> bool:
    return value is None or value == ""


# Fields the Go struct tags omitempty, plus this port's optional detail (time of day, place,
# counterparty, channel, country) that the fraud, mule and AML detectors read: left out of the
# JSON when empty.
def _omitted(default: str | None = "") -> Any:
    return Field(default, exclude_if=_empty)


class Transaction(Record):
    """Amounts are in minor units (paise, cents): credits positive, debits negative.

    ``time`` ("HH:MM" or "HH:MM:SS"), ``latitude``/``longitude``, ``counterparty``, ``channel``
    (cash, wire, upi, card, ...) and ``country`` (ISO code) are optional; the statement CSV
    fills them from columns of the same names when present, and ``currency`` from a
    ``currency`` column (one for the whole statement). ``date`` is a real day written
    YYYY-MM-DD, as the statement's: the detectors read it as one, and a payload's
    ``2026-13-45`` failed them on Python's date error.
    """

    transaction_id: str = ""
    account_id: str = ""
    date: str
    # At most MAX_AMOUNT either way, as a statement's: 10**400 paise is no float, and the
    # detectors' shares of it failed on an OverflowError.
    amount_cents: int = Field(ge=-MAX_AMOUNT * 100, le=MAX_AMOUNT * 100)
    currency: str = ""
    description: str = ""
    merchant: str = _omitted()
    category: str = _omitted()
    direction: str = _omitted()
    time: str = Field("", pattern=r"^(([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?)?$", exclude_if=_empty)
    # On the Earth: a place off it was read as one, and the fraud rules measure travel.
    latitude: Annotated[float, Field(ge=-90, le=90)] | None = _omitted(None)
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = _omitted(None)
    counterparty: str = _omitted()
    channel: str = _omitted()
    country: str = _omitted()

    @field_validator("date")
    @classmethod
    def _real_day(cls, value: str) -> str:
        return _date(value)

    @property
    def instant(self) -> datetime:
        """Date and time of day (midnight when the time is not known), UTC."""
        when = datetime.fromisoformat(f"{self.date}T{self.time or '00:00'}")
        return when.replace(tzinfo=UTC)


REQUIRED_COLUMNS = ("date", "description", "amount", "type")
# Read when present (the detectors use them); see Transaction.
OPTIONAL_COLUMNS = ("time", "latitude", "longitude", "counterparty", "channel", "country")
DIRECTIONS = ("debit", "credit")
_MAX_CENTS = MAX_AMOUNT * 100
_MAX_DIGITS = len(str(MAX_AMOUNT))
# The most transactions one statement may hold. A year of a busy personal account is a few
# thousand rows; 10,000 parse in about a quarter of a second and run through the finance flow in
# about two, so a longer statement is refused at its 10,001st row instead of holding the flow
# (a million rows took 20 s and 2 GB before a content limit refused them).
MAX_ROWS = 10_000
_READ = frozenset((*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "category", "currency"))
_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)
# 1234.5, -12, +3.25 and 1,234.50 (thousands grouped by commas); no exponents, no NaN.
_AMOUNT = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?", re.ASCII)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


class StatementError(ValueError):
    """A statement CSV that cannot be read, at file ``line`` (the header is line 1, a quoted
    field spanning lines counts each; 1 for an empty file), in ``source`` when named."""

    def __init__(self, problem: str, line: int, source: str | None = None) -> None:
        self.problem, self.line, self.source = problem, line, source
        super().__init__(f"{source}:{line}: {problem}" if source else f"line {line}: {problem}")


def parse_statement(
    text: str, source: str | None = None, *, max_rows: int | None = None
) -> tuple[Transaction, ...]:
    """The transactions of a statement CSV, amounts exact in minor units (debits negative).

    Raises StatementError (a ValueError) naming ``source`` (when given) and the file line: an
    empty file, a missing or repeated column, a row of the wrong width, an amount that is not
    a decimal number, has more than two decimal places or exceeds MAX_AMOUNT, a type other
    than debit or credit, a sign that contradicts the type (``-450,credit``), a date that is
    not a real YYYY-MM-DD day, a currency that is not a three-letter code or not the one of
    the rows before, more than ``max_rows`` transactions (default MAX_ROWS: reading
    stops at the first one past it). A UTF-8 byte order mark is skipped; a quoted value is cut
    in the message.
    """
    limit = MAX_ROWS if max_rows is None else max_rows
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise StatementError("empty csv content", 1, source)
    rows = _rows(text, source)
    first, second = next(rows, None), next(rows, None)
    if first is None or second is None:
        raise StatementError(
            "csv must have header + at least one row", first[0] if first else 1, source
        )
    header_line, header_row = first
    header = [h.strip().lower() for h in header_row]
    for column in REQUIRED_COLUMNS:
        if column not in header:
            raise StatementError(f'missing column "{column}"', header_line, source)
    at: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in at and name in _READ:
            raise StatementError(
                f'column "{name}" is given twice (columns {at[name] + 1} and {i + 1})',
                header_line,
                source,
            )
        at.setdefault(name, i)
    out = []
    # The statement's currency: the first a row's currency cell names (a blank cell is it).
    # The amounts are summed into one total, so a row in another currency is refused.
    currency: tuple[str, int] | None = None
    for n, (line, row) in enumerate(itertools.chain([second], rows), start=1):
        if n > limit:
            raise StatementError(
                f"more than {limit:,} transactions, the limit for one statement; "
                "split it by period",
                line,
                source,
            )
        if len(row) != len(header):
            raise StatementError(f"{len(row)} columns, expected {len(header)}", line, source)
        try:
            direction = _direction(row[at["type"]])
            cents = _minor_units(row[at["amount"]], direction)
            date = _date(row[at["date"]])
        except ValueError as exc:
            raise StatementError(str(exc), line, source) from None
        extra = {k: row[at[k]].strip() for k in OPTIONAL_COLUMNS if k in at and row[at[k]].strip()}
        if "currency" in at and row[at["currency"]].strip():
            currency = _one_currency(row[at["currency"]], line, currency, source)
        try:
            out.append(
                Transaction(
                    transaction_id=f"txn-{n:04d}",
                    date=date,
                    amount_cents=cents,
                    description=row[at["description"]],
                    category=row[at["category"]].strip() if "category" in at else "",
                    direction=direction,
                    **extra,
                )
            )
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in error["loc"])
            raise StatementError(f"{field}: {error['msg']}", line, source) from None
    if currency is None:
        return tuple(out)
    return tuple(t.model_copy(update={"currency": currency[0]}) for t in out)


def _one_currency(
    text: str, line: int, first: tuple[str, int] | None, source: str | None
) -> tuple[str, int]:
    """The statement's currency (code, line) after a row's currency cell ``text``: an ISO 4217
    code in any case, the same as the first row's that named one."""
    code = text.strip().upper()
    if _CURRENCY.fullmatch(code) is None:
        raise StatementError(
            f"currency {shown(text.strip())} is not a three-letter ISO 4217 code", line, source
        )
    if first is not None and code != first[0]:
        raise StatementError(
            f"currency {code!r} is not the statement's {first[0]!r} (line {first[1]}): "
            "one statement, one currency",
            line,
            source,
        )
    return first or (code, line)


def _rows(text: str, source: str | None) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank row with its file line, read as it is asked for (a statement past the
    row limit is not read to its end)."""
    reader = csv.reader(_lines(text))
    line = 1
    try:
        for row in reader:
            if row:  # csv yields [] for a blank line
                yield line, row
            line = reader.line_num + 1
    except csv.Error as exc:
        raise StatementError(f"not a CSV: {exc}", line, source) from None


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text``, ends kept, one at a time (a StringIO would copy the whole
    statement first, at four bytes a character)."""
    start, end = 0, len(text)
    while start < end:
        stop = text.find("\n", start)
        stop = end if stop < 0 else stop + 1
        yield text[start:stop]
        start = stop


def _minor_units(text: str, direction: str) -> int:
    """``19.99`` -> 1999, exactly, in integers (a float would give 1998.9999...); negative for
    a debit. A sign, when written, must agree with ``direction``."""
    value = text.strip()
    match = _AMOUNT.fullmatch(value)
    if match is None:
        raise ValueError(f"amount {shown(text)} is not a decimal number like 1234.50")
    sign, whole, fraction = match.groups()
    whole = whole.replace(",", "").lstrip("0")
    fraction = (fraction or "").rstrip("0")
    if len(fraction) > 2:
        raise ValueError(f"amount {shown(value)} has more than two decimal places")
    # compare digit counts first: int() of a huge digit string is slow (and refused past 4300)
    cents = int(whole + fraction.ljust(2, "0")) if len(whole) <= _MAX_DIGITS else _MAX_CENTS + 1
    if cents > _MAX_CENTS:
        raise ValueError(f"amount {shown(value)} is larger than the limit of {MAX_AMOUNT:,}")
    # Go negated a positive debit and kept any negative amount: -450 marked credit became a
    # 450 expense. A sign that says the opposite of the type is a broken row, not a guess.
    if (sign, direction) in (("-", "credit"), ("+", "debit")):
        against = "money out" if sign == "-" else "money in"
        raise ValueError(
            f"amount {shown(value)} is {against} but the type says {direction}; "
            f"write the amount without its sign, or correct the type"
        )
    return -cents if direction == "debit" else cents


def _direction(text: str) -> str:
    direction = text.strip().lower()
    if direction not in DIRECTIONS:
        raise ValueError(f"type {shown(text)} is neither debit nor credit")
    return direction


def _date(text: str) -> str:
    value = text.strip()
    try:
        real = _DATE.fullmatch(value) is not None and bool(date.fromisoformat(value))
    except ValueError:
        real = False
    if not real:
        raise ValueError(f"date {shown(text)} is not a real day written YYYY-MM-DD")
    return value
