"""The frozen containers: ``FrozenDict``, ``FrozenList`` and ``FrozenSet``, what a message's
dicts, lists and sets become (``freeze.py``). Subclasses of the plain ones, so they compare,
serialise, copy and type-check as before, that refuse every change in place with a
``TypeError``: their changing methods, their ``__class__``, and a second ``__init__``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NoReturn, Self

__all__ = [
    "NO_METADATA",
    "FrozenDict",
    "FrozenList",
    "FrozenSet",
    "frozen_dict",
    "frozen_set",
    "new_list",
]


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(
        f"a message payload is immutable: this {type(self).__name__} cannot be changed "
        "(build a new payload instead)"
    )


class FrozenDict(dict[Any, Any]):
    __slots__ = ()
    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse
    __ior__ = __setattr__ = __delattr__ = _refuse  # (``__setattr__``: its ``__class__``)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Filled by ``__new__``: called again, the base class's ``__init__`` would refill it
        in place, so this one changes nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        out = _new_dict(cls)
        _fill_dict(out, *args, **kwargs)
        return out

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[Any, Any]]]:
        return FrozenDict, (dict(self),)

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))


class FrozenList(list[Any]):
    __slots__ = ()
    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = _refuse
    sort = reverse = __iadd__ = __imul__ = __setattr__ = __delattr__ = _refuse

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Filled by ``__new__``: called again, the base class's ``__init__`` would refill it
        in place, so this one changes nothing."""

    def __new__(cls, items: Iterable[Any] = ()) -> Self:
        out = new_list(cls)
        _fill_list(out, items)
        return out

    def __reduce__(self) -> tuple[type[FrozenList], tuple[list[Any]]]:
        return FrozenList, (list(self),)

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))


class FrozenSet(set[Any]):
    __slots__ = ()
    add = discard = remove = pop = clear = update = _refuse
    difference_update = intersection_update = symmetric_difference_update = _refuse
    __ior__ = __iand__ = __isub__ = __ixor__ = __setattr__ = __delattr__ = _refuse

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Filled by ``__new__``: called again, the base class's ``__init__`` would refill it
        in place, so this one changes nothing."""

    def __new__(cls, items: Iterable[Any] = ()) -> Self:
        out = _new_set(cls)
        _fill_set(out, items)
        return out

    def __reduce__(self) -> tuple[type[FrozenSet], tuple[list[Any]]]:
        return FrozenSet, (list(self),)

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self))


# What the frozen containers are built with (``frozen_dict`` and ``frozen_set`` call these
# without a ``__new__`` frame of their own: freezing a payload builds many).
_new_dict, _fill_dict = dict.__new__, dict.update
new_list, _fill_list = list.__new__, list.extend
_new_set, _fill_set = set.__new__, set.update


def frozen_dict(items: Mapping[Any, Any]) -> FrozenDict:
    out: FrozenDict = _new_dict(FrozenDict)
    _fill_dict(out, items)
    return out


def frozen_set(items: Iterable[Any]) -> FrozenSet:
    out: FrozenSet = _new_set(FrozenSet)
    _fill_set(out, items)
    return out


NO_METADATA = frozen_dict({})  # what a message without metadata holds: one object, shared
