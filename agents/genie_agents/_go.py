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

The model's JSON schema (``genie agents --json``) shows the mapping: ``x-go-names`` maps each
Go name to its canonical field (null when dropped) and the conversion, and each canonical
property lists the Go names that fill it; ``x-go-text`` names the field a bare Go string fills
(null: accepted and unread, Go's request being the metadata).

Where Go's request travelled in the message's metadata (a CSV, an account id), the handler
reads it with ``from_metadata``: a payload model cannot see the envelope.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "UNUSED",
    "GoName",
    "GoValueError",
    "derived",
    "from_metadata",
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
    note: str = ""  # how the value converts, for the schema (default: the converter's docstring)

    def describe(self) -> dict[str, Any]:
        """The mapping as the JSON schema shows it."""
        if not self.field:  # dropped, or read by the model's ``then`` hook (its note says how)
            note = self.note or "accepted and dropped: the port never reads it"
            return {"field": None, "conversion": note}
        note = self.note or _first_paragraph(self.convert)
        return {"field": self.field} | ({"conversion": note} if note else {})


UNUSED = GoName("")  # accepted from Go and dropped: the port's rules never read it


def derived(note: str) -> GoName:
    """A Go field the model's ``then`` hook reads (with others) to derive canonical fields;
    ``note`` says which, for the schema."""
    return GoName("", note=note)


def _first_paragraph(convert: Callable[[Any], Any] | None) -> str:
    doc = inspect.getdoc(convert) if convert else None
    return " ".join(doc.split("\n\n")[0].split()).replace("``", "`") if doc else ""


class _GoValidator(classmethod):  # type: ignore[type-arg]
    """A before-validator's classmethod that, once set on its model, adds the Go mapping to the
    model's JSON schema (pydantic hands ``__set_name__`` on to the decorated object)."""

    def __init__(self, func: Callable[..., Any], schema: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(func)
        self.schema = schema

    def __set_name__(self, owner: type[BaseModel], name: str) -> None:
        # model_config is the model's own dict (pydantic builds one per class), read when a
        # schema is generated.
        extra = owner.model_config.get("json_schema_extra")
        if extra is not None:
            raise TypeError(f"{owner.__name__}: a Go-shaped model sets no json_schema_extra")
        owner.model_config["json_schema_extra"] = lambda schema, cls: self.schema(schema)


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

    def scale(value: Any) -> Any:
        return value * factor if _number(value) else value

    scale.__doc__ = f"times {factor}"
    return scale


def _decimal_shift(value: Any, places: int) -> Any:
    # Through the decimal the client wrote: 0.15 x 100 is 15.0, not 15.000000000000002.
    return float(Decimal(repr(value)).scaleb(places)) if _number(value) else value


def percent(value: Any) -> Any:
    """Go's percent (99 for 99 %) to the port's share (0.99)."""
    return _decimal_shift(value, -2)


def unit_share(value: Any) -> Any:
    """Go's share of one (0.2) to the port's percent (20)."""
    return _decimal_shift(value, 2)


def from_metadata(field: str, value: str, metadata: Mapping[str, Any]) -> str:
    """``value`` (the payload's ``field``) or, when blank, the message's ``field`` metadata,
    where Go sent it; both given must agree, and one is needed. Raises ``ValueError``."""
    meta = metadata.get(field)
    if meta is not None and not isinstance(meta, str):
        raise ValueError(f"the {field} metadata must be text")
    if value and meta and meta != value:
        raise ValueError(f"{field} differs between the payload and the metadata: send one")
    if not (value or meta):
        raise ValueError(f"no {field}, in the payload or in the metadata (Go's place for it)")
    return value or str(meta)


def go_text(field: str | None) -> Any:
    """A before-validator for a Go message whose content was plain text (a region, a term):
    a bare string is the payload's ``field``; with ``None``, Go's agent never read the text
    (its request was the metadata) and a bare string is the payload's defaults."""

    def accept_go_text(cls: type, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        return {field: data} if field else {}

    def schema(json_schema: dict[str, Any]) -> None:
        json_schema["x-go-text"] = field

    return model_validator(mode="before")(_GoValidator(accept_go_text, schema))  # type: ignore[arg-type]


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
    for go, name in table.items():  # the schema shows each conversion: it must say what it is
        if name.field and name.convert and not name.describe().get("conversion"):
            raise TypeError(f"Go name {go!r}: its converter needs a docstring or a note")

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

    def schema(json_schema: dict[str, Any]) -> None:
        json_schema["x-go-names"] = {go: name.describe() for go, name in table.items()}
        properties = json_schema.get("properties", {})
        for go, name in table.items():
            if name.field in properties:
                properties[name.field].setdefault("x-go-names", []).append(go)

    return model_validator(mode="before")(_GoValidator(accept_go_names, schema))  # type: ignore[arg-type]
