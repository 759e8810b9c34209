"""Frozen records: a frozen dataclass's value semantics, each field declared once.

A record is a class body of annotated fields, with defaults where they have them::

    class Decision(Record):
        allowed: bool
        policy: str = ""
        reason: str = ""

and ``Record`` gives it what ``@dataclass(frozen=True, slots=True)`` would: slots, an
``__init__`` taking the fields in order (positionally or by name), ``__match_args__``, a
repr, equality and hashing by value, and refusal to change. A ``__post_init__`` checks the
values, as on a dataclass. Nothing is compiled: ``@dataclass`` writes each class's methods as
source and runs ``exec`` on it when the module loads, a cost ``import genie`` would pay for
every record it defines (docs/design/imports-and-gc.md); a record's methods are shared,
and read its fields from ``__match_args__`` when called.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import FrozenInstanceError, asdict, is_dataclass
from typing import Any, ClassVar, Self, dataclass_transform

from .._errors import did_you_mean

__all__ = ["Record", "set_field"]

# A record's fields are set past its frozen __setattr__, as a frozen dataclass's are.
set_field = object.__setattr__


def _is_class_var(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


@dataclass_transform(frozen_default=True)
class _RecordType(type):
    """Reads a record class's annotated fields: they become its slots, its ``__match_args__``
    (the inherited fields first) and its ``__init__``'s parameters, their values its defaults."""

    def __new__(
        mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> _RecordType:
        if "__slots__" in namespace:  # a record written out by hand: kept as written
            return super().__new__(mcls, name, bases, namespace, **kwargs)
        annotations = namespace.get("__annotations__", {})
        fields = [f for f, a in annotations.items() if not _is_class_var(a)]
        inherited: tuple[str, ...] = ()
        defaults: dict[str, Any] = {}
        for base in reversed(bases):
            inherited += getattr(base, "__match_args__", ())
            defaults |= getattr(base, "_defaults", {})
        for field in fields:
            if field in namespace:  # a slot cannot share its name with a class attribute
                defaults[field] = namespace.pop(field)
            elif defaults and field not in defaults:
                raise TypeError(f"{name}: field {field!r} without a default follows one with")
        namespace["__slots__"] = tuple(fields)
        namespace["__match_args__"] = (*inherited, *fields)
        namespace["_defaults"] = defaults
        return super().__new__(mcls, name, bases, namespace, **kwargs)

    @property
    def __signature__(cls) -> Any:
        """``__init__``'s parameters, for ``inspect.signature`` (built when asked for)."""
        from inspect import Parameter, Signature

        defaults = cls._defaults  # type: ignore[attr-defined]
        return Signature(
            [
                Parameter(
                    f, Parameter.POSITIONAL_OR_KEYWORD, default=defaults.get(f, Parameter.empty)
                )
                for f in cls.__match_args__  # type: ignore[attr-defined]
            ]
        )


class Record(metaclass=_RecordType):
    """A frozen value: equal to a record of the same class with equal fields, hashable when
    its fields are, shown as ``Class(field=value, ...)``, and copied or pickled whole."""

    __match_args__: ClassVar[tuple[str, ...]]
    _defaults: ClassVar[dict[str, Any]]
    # Names genie gives a field elsewhere, not spelt like it: an unknown field suggests it.
    _known_as: ClassVar[Mapping[str, str]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self.__match_args__
        given = len(args)
        if given > len(fields):
            raise TypeError(
                f"{type(self).__qualname__} takes {len(fields)} fields, {given} were given"
            )
        for field, value in zip(fields, args, strict=False):
            set_field(self, field, value)
        if given < len(fields) or kwargs:  # a record made on a hot path gives every field
            self._set_the_rest(fields[given:], kwargs)
        self.__post_init__()

    def _set_the_rest(self, fields: tuple[str, ...], kwargs: dict[str, Any]) -> None:
        """Set ``fields`` (those not given by position) from ``kwargs``, else their defaults."""
        defaults = self._defaults
        for field in fields:
            if field in kwargs:
                set_field(self, field, kwargs.pop(field))
            elif field in defaults:
                set_field(self, field, defaults[field])
            else:
                raise TypeError(f"{type(self).__qualname__} needs the field {field!r}")
        if kwargs:
            field = next(iter(kwargs))
            if field in self.__match_args__:
                raise TypeError(f"{type(self).__qualname__} got {field!r} twice")
            raise self._unknown(field)

    def _unknown(self, field: str) -> TypeError:
        hint = did_you_mean(field, self.__match_args__, self._known_as)
        return TypeError(f"{type(self).__qualname__} has no field {field!r}{hint}")

    def __post_init__(self) -> None:
        """Checks the new record's values; a record whose values need no check has none."""

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self.__match_args__])

    def __repr__(self) -> str:
        shown = ", ".join([f"{name}={getattr(self, name)!r}" for name in self.__match_args__])
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[type[Self], tuple[Any, ...]]:
        # copy, deepcopy and pickle rebuild through __init__: slots cannot be set afterwards.
        return type(self), self._values()

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (field name -> value), checked as a new record is (what
        ``dataclasses.replace`` does)."""
        values = {name: getattr(self, name) for name in self.__match_args__}
        unknown = changes.keys() - values.keys()
        if unknown:
            raise self._unknown(sorted(unknown)[0])
        return type(self)(**(values | changes))

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, the records, dataclasses, mappings and sequences in them made
        plain too (what ``dataclasses.asdict`` gives: the statistics endpoint serves this)."""
        return {name: _plain(getattr(self, name)) for name in self.__match_args__}


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.as_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_plain(item) for item in value)
    return value
