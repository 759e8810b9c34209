"""Messages immutable all the way down.

A message is frozen and its payload is a frozen model, but a ``dict`` inside the payload could
still be changed in place by one recipient, under the eyes of another that admission already let
see it. So when a message is built (its constructor, ``new``, ``top``, ``child``,
``model_copy``, a context's ``reply`` and ``emit``) whatever it holds is frozen, once, or the
message is refused with an ``InvalidMessageError`` naming its type and the path to the value; a
handler tested without a bus sees what it will see on one. The rule per kind of value is in
docs/semantics.md; in short, a value keeps its class when a value of that class can be
immutable (``FrozenDict`` for a ``dict``, frozen models and dataclasses walked in place), takes
the immutable type read the same way when none can (``deque`` a tuple, ``OrderedDict`` a
``FrozenDict``, ``bytearray`` bytes), and is refused when genie cannot see into it or rebuild it
faithfully (a subclass it does not know, an unfrozen model, an object anyone can set attributes
of, an iterator, a cycle, or a model field declared as a class no frozen value belongs to).

How a class is frozen is decided once per class, and which fields of a payload class can hold
more than scalars too; the envelope remembers the payload classes with nothing to freeze, so a
payload of scalars costs nothing here.
"""

from __future__ import annotations

import array
import dataclasses
import datetime
import decimal
import enum
import fractions
import math
import types
import typing
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, Protocol

from pydantic import BaseModel

from .._errors import InvalidMessageError
from .frozen import (
    NO_METADATA,
    FrozenDict,
    FrozenList,
    FrozenSet,
    frozen_dict,
    frozen_set,
    new_list,
)

__all__ = ["freeze_message", "freeze_payload", "frozen_metadata", "needs_freezing"]


class _Refused(Exception):
    """A value that cannot be frozen: ``problem`` says why, ``path`` where (innermost first,
    each container adds its key as the refusal passes through it)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[object] = []


# --- the walk ------------------------------------------------------------------------------
# Exact classes that hold no other value: kept as they are, without a lookup of their freezer.
_ATOMS = frozenset({str, int, float, bool, type(None), bytes, complex, decimal.Decimal})


def _frozen(value: Any) -> Any:
    """``value`` frozen (itself when nothing in it can change); raises ``_Refused``."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is dict:
        items = {}
        try:
            for key, item in value.items():
                items[key if type(key) is str else _frozen(key)] = _frozen(item)
        except _Refused as exc:
            exc.path.append(key)
            raise
        return frozen_dict(items)
    if kind is list:
        out = new_list(FrozenList)
        try:
            for item in value:
                _append(out, _frozen(item))
        except _Refused as exc:
            exc.path.append(len(out))
            raise
        return out
    if kind is tuple:
        return _frozen_tuple(value)
    freeze = _FREEZERS.get(kind)
    if freeze is None:
        freeze = _FREEZERS[kind] = _freezer(kind)
    return freeze(value)


_append = list.append


def _walked(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    try:
        for item in values:
            _append(out, _frozen(item))
    except _Refused as exc:
        exc.path.append(len(out))
        raise
    return out


def _same(items: list[Any], value: Iterable[Any]) -> bool:
    """Whether the walk of ``value`` gave back every item of it as it was."""
    return all(a is b for a, b in zip(items, value, strict=True))


def _frozen_tuple(value: tuple[Any, ...]) -> tuple[Any, ...]:
    items = _walked(value)
    return value if _same(items, value) else tuple(items)


def _as_is(value: Any) -> Any:
    return value


def _refusal(problem: str) -> Callable[[Any], NoReturn]:
    def refuse(value: Any) -> NoReturn:
        raise _Refused(problem)

    return refuse


# class -> how a value of it is frozen, decided once per class (``_freezer``); like the
# payload plans below, a table of classes, not of messages or runtimes
_FREEZERS: dict[type, Callable[[Any], Any]] = {}
_OURS = (FrozenDict, FrozenList, FrozenSet)
# Kept as they are (their subclasses too): values that hold no other value.
_SCALARS: tuple[type, ...] = (int, float, complex, str, bytes, type(None), decimal.Decimal)
_SCALARS += (datetime.date, datetime.time, datetime.timedelta, datetime.tzinfo)
_SCALARS += (fractions.Fraction, enum.Enum, range, type)
# The containers of which no value is immutable, so converted: the type they become.
_CONVERTED: dict[type, str] = {
    OrderedDict: "dict",
    defaultdict: "dict",
    Counter: "dict",
    types.MappingProxyType: "dict",
    deque: "tuple",
    array.array: "tuple",
    bytearray: "bytes",
}
_CONTAINERS = (dict, list, set, frozenset, tuple, *_CONVERTED)


def _freezer(kind: type) -> Callable[[Any], Any]:
    name = kind.__qualname__
    if kind in _OURS or issubclass(kind, _SCALARS):
        return _as_is
    if kind is set:
        return lambda value: frozen_set(_walked(value))
    if kind is frozenset:
        return _frozen_frozenset
    if kind in (OrderedDict, defaultdict, Counter, types.MappingProxyType):
        return lambda value: _frozen(dict(value))
    if kind is deque:
        return lambda value: tuple(_walked(value))
    if kind is array.array:
        return tuple  # numbers or characters: nothing inside to freeze
    if kind is bytearray:
        return bytes
    if kind is memoryview:
        return _frozen_view
    if issubclass(kind, tuple) and hasattr(kind, "_make"):
        return _frozen_named_tuple
    if issubclass(kind, _CONTAINERS):
        base = next(c for c in kind.__mro__ if c in _CONTAINERS)
        return _refusal(
            f"a {name} (a subclass of {base.__qualname__}) cannot be frozen: genie cannot "
            f"know what its methods change or what attributes it carries; "
            f"use a plain {base.__qualname__}"
        )
    if issubclass(kind, BaseModel):
        return _frozen_model
    if dataclasses.is_dataclass(kind):
        if kind.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            return _frozen_dataclass
        return _refusal(
            f"a {name} is a dataclass that is not frozen, so one recipient could change it "
            "under another: declare it @dataclass(frozen=True)"
        )
    if hasattr(kind, "__next__"):
        return _refusal(
            f"a {name} is a one-shot iterator: the first recipient to read it would use it "
            "up for the others; use a tuple"
        )
    if issubclass(kind, types.SimpleNamespace) or (
        kind.__setattr__ is object.__setattr__ and (kind.__dictoffset__ or _public_slots(kind))
    ):
        return _refusal(
            f"a {name} object, whose attributes any recipient could set, cannot be frozen: "
            "use a frozen model, a frozen dataclass or plain values"
        )
    return _as_is


def _public_slots(kind: type) -> bool:
    for cls in kind.__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if not slot.startswith("_"):
                return True
    return False


def _frozen_frozenset(value: frozenset[Any]) -> frozenset[Any]:
    items = _walked(value)
    return value if _same(items, value) else frozenset(items)


def _frozen_named_tuple(value: Any) -> Any:
    items = _walked(value)
    return value if _same(items, value) else value._make(items)


def _frozen_view(value: memoryview) -> memoryview:
    """A read-only view of a copy (a view of bytes is kept: nobody can write through it)."""
    try:
        if value.readonly and type(value.obj) is bytes:
            return value
        copy = memoryview(value.tobytes())
        return copy.cast(value.format, value.shape)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError) as exc:  # released, or a layout a copy cannot take
        raise _Refused(f"this memoryview cannot be frozen ({exc}): use bytes") from None


def _frozen_dataclass(value: Any) -> Any:
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        try:
            frozen = _frozen(item)
        except _Refused as exc:
            exc.path.append(field.name)
            raise
        if frozen is not item:
            object.__setattr__(value, field.name, frozen)  # frozen: its own setattr refuses
    return value


# --- models: which fields to walk, decided once per class -----------------------------------
_EXTRA = "__pydantic_extra__"  # in a class's plan: its extra fields (``extra="allow"``)
# model class -> the names of the fields that may hold more than scalars (``_EXTRA`` too when
# it allows extra fields); empty: nothing to freeze
_PLANS: dict[type[BaseModel], tuple[str, ...]] = {}


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


def _declared(annotation: object) -> type | None:
    """A class among ``_CONVERTED`` that ``annotation`` names, if any."""
    found = typing.get_origin(annotation) or annotation
    if isinstance(found, type) and found in _CONVERTED:
        return found
    for arg in typing.get_args(annotation):
        found = _declared(arg)
        if found is not None:
            return found
    return None


def _plan(cls: type[BaseModel]) -> tuple[str, ...]:
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    if not cls.model_config.get("frozen"):
        raise _Refused(
            f"a {cls.__qualname__} is a pydantic model that is not frozen, so one recipient "
            "could change it under another: give it model_config = ConfigDict(frozen=True)"
        )
    names = []
    for name, info in cls.model_fields.items():
        declared = _declared(info.annotation)
        if declared is not None:
            becomes = _CONVERTED[declared]
            refused = _Refused(
                f"{cls.__qualname__} declares it a {declared.__qualname__}, and no "
                f"{declared.__qualname__} is immutable (a message freezes one into a "
                f"{becomes}): declare it a {becomes}"
            )
            refused.path.append(name)
            raise refused
        if not _scalar(info.annotation):
            names.append(name)
    if cls.model_config.get("extra") == "allow":
        names.append(_EXTRA)
    plan = _PLANS[cls] = tuple(names)
    return plan


_CYCLE = "holds itself (a cycle) or nests too deep: a message holds a tree of values"


def _frozen_model(model: BaseModel, top: bool = False) -> BaseModel:
    """``model`` with its fields frozen in place; ``top``: the payload itself, where a cycle
    (the walk going round until Python's recursion limit stops it) is named by its field."""
    plan = _plan(type(model))
    if not plan:
        return model
    values = model.__dict__
    changed = []
    for name in plan:
        if name is _EXTRA:
            extra = model.__pydantic_extra__
            if extra and type(extra) is not FrozenDict:
                changed.append((name, _frozen(extra)))
            continue
        value = values.get(name)
        try:
            frozen = _frozen(value)
        except _Refused as exc:
            exc.path.append(name)
            raise
        except RecursionError:
            if not top:
                raise
            refused = _Refused(_CYCLE)
            refused.path.append(name)
            raise refused from None
        if frozen is not value:
            changed.append((name, frozen))
    # Set once every field is frozen: a refused payload is left as it was given.
    for name, frozen in changed:
        if name is _EXTRA:
            object.__setattr__(model, _EXTRA, frozen)
        else:
            values[name] = frozen  # the model is frozen: its own setattr refuses
    return model


# --- what the envelope calls --------------------------------------------------------------
def _invalid(type_name: str, top: str, exc: _Refused) -> InvalidMessageError:
    path = ".".join(str(step) for step in (top, *reversed(exc.path)))
    return InvalidMessageError(type_name, path, exc.problem)


def needs_freezing(cls: type[BaseModel]) -> bool:
    """Whether a payload of class ``cls`` may hold something to freeze (or to refuse)."""
    try:
        return bool(_plan(cls))
    except _Refused:
        return True


def freeze_payload(payload: BaseModel, type_name: str) -> None:
    """Freeze what ``payload`` holds, in place (see the module docstring); idempotent. Raises
    ``InvalidMessageError`` naming ``type_name`` and the path to a value it refuses."""
    try:
        _frozen_model(payload, True)
    except _Refused as exc:
        raise _invalid(type_name, "payload", exc) from None
    except RecursionError:  # in its extra fields
        raise InvalidMessageError(type_name, "payload", _CYCLE) from None


def frozen_metadata(
    type_name: str, metadata: Mapping[str, Any], update: Mapping[Any, Any] | None = None
) -> FrozenDict:
    """``metadata`` with ``update`` over it, frozen; the values of a ``FrozenDict`` (a frozen
    message's) are not checked again. Raises ``InvalidMessageError`` naming the key of a value
    that is not a metadata value."""
    if type(metadata) is FrozenDict:
        out = dict(metadata)
    else:
        out = {str(key): _meta_value(type_name, key, value) for key, value in metadata.items()}
    if update:
        for key, value in update.items():
            out[str(key)] = _meta_value(type_name, key, value)
    return frozen_dict(out) if out else NO_METADATA


def _meta_value(type_name: str, key: object, value: Any) -> Any:
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        # Metadata crosses processes and the store as JSON, which has no NaN or infinity; and
        # a policy comparing a NaN reads another answer than the agent that acts on it.
        if math.isfinite(value):
            return value
        what = f"a float that is not finite ({value!r})"
    elif isinstance(value, tuple | list):
        wrong = [item for item in value if not isinstance(item, str)]
        if not wrong:
            return value if type(value) is tuple else tuple(value)
        what = f"{_a(value)} holding {_a(wrong[0])}"
    else:
        what = _a(value)
    raise InvalidMessageError(
        type_name,
        f"metadata.{key}",
        f"{what} is not a metadata value; a metadata value is a str, int, finite float, bool "
        "or None, or a list or tuple of str",
    )


def _a(value: object) -> str:
    """``value``'s type with its article: ``a list``, ``an int`` (``None`` as itself)."""
    if value is None:
        return "None"
    name = type(value).__qualname__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


class _Enveloped(Protocol):
    """What ``freeze_message`` reads of a ``Message`` (which this module cannot import)."""

    @property
    def type(self) -> str: ...
    @property
    def metadata(self) -> Mapping[str, object]: ...
    @property
    def payload(self) -> BaseModel: ...


def freeze_message(msg: _Enveloped) -> None:
    """Freeze a message's metadata and payload in place (see the module docstring);
    idempotent. Raises ``InvalidMessageError``, and then the message is unchanged."""
    metadata = msg.metadata
    frozen = metadata if type(metadata) is FrozenDict else frozen_metadata(msg.type, metadata)
    freeze_payload(msg.payload, msg.type)
    if frozen is not metadata:
        # A message is frozen to its users: its slot is set past its own ``__setattr__``.
        object.__setattr__(msg, "metadata", frozen)
