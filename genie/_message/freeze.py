"""Payloads immutable all the way down.

A ``Payload`` is a frozen model, but a ``dict`` or ``list`` inside it could still be changed in
place, by one recipient, under the eyes of another that admission already let see it. So when a
message enters routing its payload's containers are swapped, once, for frozen ones: ``dict`` ->
``FrozenDict``, ``list`` -> ``FrozenList``, ``set`` -> ``FrozenSet`` (subclasses, so they compare,
serialise and type-check as before), ``bytearray`` -> ``bytes``, recursively, nested models
included. Which fields can hold a container is worked out once per payload class, so a payload of
scalars costs one dictionary lookup.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any, NoReturn, Protocol

from pydantic import BaseModel

__all__ = [
    "CONTAINER_FIELDS",
    "FrozenDict",
    "FrozenList",
    "FrozenSet",
    "freeze_message",
    "freeze_payload",
]


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(
        f"a message payload is immutable: this {type(self).__name__} cannot be changed "
        "(build a new payload instead)"
    )


class FrozenDict(dict[Any, Any]):
    __slots__ = ()
    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[Any, Any]]]:
        return FrozenDict, (dict(self),)

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))


class FrozenList(list[Any]):
    __slots__ = ()
    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = _refuse
    sort = reverse = __iadd__ = __imul__ = _refuse

    def __reduce__(self) -> tuple[type[FrozenList], tuple[list[Any]]]:
        return FrozenList, (list(self),)

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))


class FrozenSet(set[Any]):
    __slots__ = ()
    add = discard = remove = pop = clear = update = _refuse
    difference_update = intersection_update = symmetric_difference_update = _refuse
    __ior__ = __iand__ = __isub__ = __ixor__ = _refuse

    def __reduce__(self) -> tuple[type[FrozenSet], tuple[list[Any]]]:
        return FrozenSet, (list(self),)

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self))


_SCALARS: tuple[type, ...] = (
    int,
    float,
    complex,
    str,
    bytes,
    bool,
    type(None),
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    enum.Enum,
)

# payload class -> names of the fields that may hold a container (empty: nothing to freeze);
# the dispatcher reads it to skip ``freeze_message`` for a message with nothing to freeze
CONTAINER_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}


def _scalar(annotation: object) -> bool:
    if isinstance(annotation, type):
        return issubclass(annotation, _SCALARS)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return True
    if origin is typing.Union or origin is types.UnionType:
        return all(_scalar(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _scalar(typing.get_args(annotation)[0])
    return False


def _fields(cls: type[BaseModel]) -> tuple[str, ...]:
    found = CONTAINER_FIELDS.get(cls)
    if found is None:
        found = CONTAINER_FIELDS[cls] = tuple(
            name for name, info in cls.model_fields.items() if not _scalar(info.annotation)
        )
    return found


def _frozen(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return FrozenDict({k: _frozen(v) for k, v in value.items()})
    if kind is list:
        return FrozenList(_frozen(v) for v in value)
    if kind is tuple:
        items = tuple(_frozen(v) for v in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if kind is set:
        return FrozenSet(_frozen(v) for v in value)
    if kind is bytearray:
        return bytes(value)
    if isinstance(value, BaseModel):
        freeze_payload(value)
    return value


class _Enveloped(Protocol):
    """What ``freeze_message`` reads of a ``Message`` (which this module cannot import)."""

    @property
    def metadata(self) -> Mapping[str, object]: ...
    @property
    def payload(self) -> BaseModel: ...


def freeze_message(msg: _Enveloped) -> None:
    """Freeze a message's metadata and payload in place (see the module docstring)."""
    metadata = msg.metadata
    if type(metadata) is dict:
        # A message is frozen to its users: its slot is set past its own ``__setattr__``.
        _set(msg, "metadata", FrozenDict(metadata) if metadata else _EMPTY)
    payload = msg.payload
    names = CONTAINER_FIELDS.get(type(payload))  # a payload class's frozen fields, found once
    if names is None:
        names = _fields(type(payload))
    if names:
        _freeze_fields(payload, names)


_EMPTY = FrozenDict()
_set = object.__setattr__


def freeze_payload(payload: BaseModel) -> None:
    """Swap the containers inside ``payload`` (in place) for frozen ones; idempotent."""
    names = _fields(type(payload))
    if names:
        _freeze_fields(payload, names)


def _freeze_fields(payload: BaseModel, names: tuple[str, ...]) -> None:
    values = payload.__dict__
    for name in names:
        value = values.get(name)
        frozen = _frozen(value)
        if frozen is not value:
            values[name] = frozen  # the model is frozen: its own setattr refuses
