"""Go-shaped requests: a payload model also accepts the Go system's field names and units.

A model declares, in its class body, which Go JSON names it takes and how each converts::

    class SimulateLoan(Payload):
        message_type = "simulate_loan"
        principal: float
        ...
        _go = go_names({"principal_cents": GoName("principal", paise)})

Before validation the Go names are renamed (and their values converted) to the port's
canonical names, so the model, its serialisation and its handlers see one shape only. A
field sent under both names is refused naming both, never silently resolved: the two could
disagree, and the unit often differs (paise against rupees). A Go field the port has no use
for (a memo, a payer id) maps to ``UNUSED`` and is dropped; a Go field whose meaning the port
derives otherwise is checked by the model's ``then`` hook, which refuses a disagreement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "UNUSED",
    "GoName",
    "GoValueError",
    "go_names",
    "go_text",
    "go_unset",
    "paise",
    "percent",
    "rupees_to_paise",
    "scaled",
    "unit_share",
]


class GoValueError(ValueError):
    """A Go-shaped value the port cannot take; ``field`` names it (default: the Go field)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class GoName:
    """The canonical field a Go name stands for, and how a Go value converts to it."""

    field: str
    convert: Callable[[Any], Any] | None = None


UNUSED = GoName("")  # accepted from Go and dropped: the port's rules never read it


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def paise(value: Any) -> Any:
    """Go's ``*_cents`` / ``*_paise`` integers to rupees (a whole number of paise only)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise GoValueError("paise must be a whole number")
    return value / 100


def rupees_to_paise(value: Any) -> Any:
    """Go's rupee amounts (``amount_rupees``) to whole paise."""
    if not _number(value):
        return value
    whole = round(value * 100)
    if abs(value * 100 - whole) > 1e-6:
        raise GoValueError("rupees with at most two decimals (whole paise)")
    return whole


def scaled(factor: float) -> Callable[[Any], Any]:
    """A converter multiplying a Go number by ``factor`` (anything else is left to the model)."""
    return lambda value: value * factor if _number(value) else value


def _decimal_shift(value: Any, places: int) -> Any:
    # Through the decimal the client wrote: 0.15 x 100 is 15.0, not 15.000000000000002.
    return float(Decimal(repr(value)).scaleb(places)) if _number(value) else value


def percent(value: Any) -> Any:
    """Go's percent (99 for 99 %) to the port's share (0.99)."""
    return _decimal_shift(value, -2)


def unit_share(value: Any) -> Any:
    """Go's share of one (0.2) to the port's percent (20)."""
    return _decimal_shift(value, 2)


def go_text(field: str) -> Any:
    """A before-validator for a Go message whose content was plain text (a region, a term):
    a bare string is the payload's ``field``."""

    def accept_go_text(cls: type, data: Any) -> Any:
        return {field: data} if isinstance(data, str) else data

    return model_validator(mode="before")(classmethod(accept_go_text))  # type: ignore[arg-type]


def go_unset(*fields: str) -> Any:
    """A before-validator for Go's zero values: ``0``, ``""`` or ``null`` in ``fields`` is what
    Go's ``omitempty`` leaves out and its handler replaced by a default (``if MaxSteps <= 0 {
    MaxSteps = 4 }``), so it is dropped and the port's default applies. Anything else,
    a negative number included, is left to the model to accept or refuse."""

    def unset(value: Any) -> bool:
        return value is None or value == "" or (_number(value) and value == 0)

    def accept_go_unset(cls: type, data: Any) -> Any:
        if not isinstance(data, dict) or not any(k in data and unset(data[k]) for k in fields):
            return data
        return {k: v for k, v in data.items() if not (k in fields and unset(v))}

    return model_validator(mode="before")(classmethod(accept_go_unset))  # type: ignore[arg-type]


def go_names(
    names: Mapping[str, GoName | str],
    then: Callable[[Mapping[str, Any], dict[str, Any]], dict[str, Any]] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
) -> Any:
    """A before-validator that renames Go's fields (``{go_name: GoName | canonical}``).

    ``defaults`` are what Go did with a field left out, where the port's default differs (a
    recorded Go request that omits it meant Go's value). ``then(go_data, renamed)`` runs
    after the renaming when the data had a Go name, for the conversions that read several
    fields; it raises ``GoValueError`` to refuse.
    """
    table = {go: n if isinstance(n, GoName) else GoName(n) for go, n in names.items()}

    def rename(data: dict[str, Any]) -> dict[str, Any]:
        out = dict(data)
        taken: dict[str, str] = {}
        for key in [k for k in data if k in table]:
            name = table[key]
            value = out.pop(key)
            if not name.field:
                continue
            other = name.field if name.field in data else taken.get(name.field)
            if other is not None:
                message = f"given twice, as {other!r} and as the Go system's {key!r}: send one"
                raise GoValueError(message, name.field)
            taken[name.field] = key
            try:
                out[name.field] = name.convert(value) if name.convert else value
            except GoValueError as exc:
                exc.field = exc.field or key
                raise
        out = dict(defaults or {}) | out
        return then(data, out) if then else out

    def accept_go_names(cls: type, data: Any) -> Any:
        if not isinstance(data, dict) or not any(key in table for key in data):
            return data
        try:
            return rename(data)
        except GoValueError as exc:
            error = PydanticCustomError("go_shape", str(exc))
            details = InitErrorDetails(type=error, loc=(exc.field or "<root>",), input=data)
            raise ValidationError.from_exception_data(cls.__name__, [details]) from None

    return model_validator(mode="before")(classmethod(accept_go_names))  # type: ignore[arg-type]
