"""Frozen records: a frozen dataclass's value semantics without its generated code.

``@dataclass`` writes each class's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__`` and ``__delattr__`` as source and compiles it with ``exec`` when the module
loads: about 5 M instructions a class on Python 3.11, 15% of ``import genie`` for the
records it loads. A record instead writes its own ``__init__`` (setting its slots with
``object.__setattr__``, as a frozen dataclass does) and inherits the rest from ``Record``,
which reads the fields from ``__match_args__`` at call time: nothing is compiled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import FrozenInstanceError, asdict, is_dataclass
from typing import Any, ClassVar, Self

__all__ = ["Record", "set_field"]

# A record's __init__ sets its slots past its frozen __setattr__, as a frozen dataclass's does.
set_field = object.__setattr__


class Record:
    """A frozen value: equal to a record of the same class with equal fields, hashable when
    its fields are, shown as ``Class(field=value, ...)``, and copied or pickled whole.

    A subclass lists its fields, in ``__init__``'s order, in ``__match_args__`` (so ``match``
    works as on a dataclass) and declares them in ``__slots__``.
    """

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()

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
        ``dataclasses.replace`` did on the dataclass this was)."""
        values = {name: getattr(self, name) for name in self.__match_args__}
        unknown = changes.keys() - values.keys()
        if unknown:
            raise TypeError(f"{type(self).__qualname__} has no field {sorted(unknown)[0]!r}")
        return type(self)(**(values | changes))

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, the records, dataclasses, mappings and sequences in them made
        plain too (what ``dataclasses.asdict`` gave: the statistics endpoint serves this)."""
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
