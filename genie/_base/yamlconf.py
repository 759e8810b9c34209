"""YAML configuration with line numbers: every error names the file, the line and the key.

A configuration file is read by a bounded loader, so a hostile or broken file is refused with its
file and line in well under a second instead of exhausting memory, the stack or the clock:

- a regular file of at most ``MAX_BYTES`` bytes in UTF-8, checked before parsing
  (``files.py``: a directory, a pipe or a device is named as what it is);
- at most ``MAX_DEPTH`` nested collections, checked while composing (the composer and the
  walkers after it recurse once per level);
- at most ``MAX_NODES`` values counted as if every alias were copied out, checked at each alias,
  so a few kilobytes of nested aliases ("billion laughs") cannot expand into gigabytes; an alias
  inside the collection it names (a recursive structure) is refused;
- at most ``MAX_CHARS`` characters in all the strings once each ``${VAR}`` is replaced, counted
  as if every alias were copied out (checked by the pipeline loader before it substitutes), so
  a long default or variable repeated by aliases cannot expand into gigabytes either;
- a key given twice in one mapping is a problem naming both lines (YAML would keep the last one
  silently, and a second ``governance:`` block would replace the first).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic_core import ErrorDetails
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from .._errors import ConfigurationError, did_you_mean, shown
from .files import FileRefusedError, decode_utf8, read_bounded

__all__ = [
    "MAX_BYTES",
    "MAX_CHARS",
    "MAX_DEPTH",
    "MAX_NODES",
    "ConfigFileError",
    "Document",
    "is_under",
    "keys_at",
    "load_model",
    "parse_yaml",
    "read_yaml",
]

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]

# The largest shipped configuration file is 54 KB; the deepest nests 9 levels; none holds more
# than some 2,600 values. Each bound is far above any hand-written file and low enough that a
# file at the bound loads in a fraction of a second on a busy machine (parsing costs about 3 s
# per MB there).
MAX_BYTES = 256 * 1024
MAX_DEPTH = 64
MAX_NODES = 20_000
# Characters in all of a file's strings after ``${VAR}`` substitution, each alias counted as
# written out: four times what the largest file holds written out, and a few milliseconds to
# substitute.
MAX_CHARS = 1024 * 1024


class ConfigFileError(ConfigurationError):
    """A configuration file is wrong; ``problems`` lists each as ``file:line: key: reason``.
    ``count`` is how many problems they are, when some of the lines only say where the next
    ones come from (a pipeline's ``governance.file``, before its policy file's problems)."""

    def __init__(self, problems: Sequence[str], count: int | None = None) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)
        self.count = len(self.problems) if count is None else count


@dataclass(frozen=True)
class Document:
    """A parsed file: its data, the line of every key and item, and the mistakes found while
    reading that do not stop checking the rest (duplicate keys). A caller reports ``problems``
    together with its own."""

    data: Any
    lines: dict[Loc, int]
    problems: list[str] = field(default_factory=list)


class _Refused(Exception):
    """A bound or a value the loader refuses, at a 1-based line."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


class _Bounded(Composer, SafeConstructor, Resolver):
    """The safe loader's composer and constructor with the module's bounds checked while
    composing: nothing expands or nests past a bound before it is refused."""

    def __init__(self) -> None:
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._expanded = 0  # values so far, counting each alias as a copy of what it names
        self._aliases = 0  # aliases so far: the bound's message mentions them only if any
        self._sizes: dict[yaml.Node, int] = {}  # a composed node's expanded size
        # The line of each alias, by its place: (id of the collection, position, 0 for an item
        # or a key, 1 for a value). The composed node of an alias is the node it names.
        self.alias_lines: dict[tuple[int, int, int], int] = {}

    if TYPE_CHECKING:  # from the parser each loader class adds

        def peek_event(self) -> yaml.Event: ...
        def dispose(self) -> None: ...

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark else 1
        if isinstance(event, AliasEvent):
            node = super().compose_node(parent, index)
            size = None if node is None else self._sizes.get(node)
            if size is None:
                raise _Refused(line, f"alias *{event.anchor} is inside the collection it names")
            self._aliases += 1
            self._count(size, line)
            if isinstance(parent, yaml.MappingNode):
                self.alias_lines[(id(parent), len(parent.value), int(index is not None))] = line
            elif isinstance(parent, yaml.SequenceNode):
                self.alias_lines[(id(parent), index, 0)] = line
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(line, f"nested more than {MAX_DEPTH} levels deep")
        before = self._expanded
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._count(1, line)
        if node is not None:
            self._sizes[node] = self._expanded - before
        return node

    def _count(self, values: int, line: int) -> None:
        self._expanded += values
        if self._expanded > MAX_NODES:
            counting = " (counting what each alias repeats)" if self._aliases else ""
            raise _Refused(
                line,
                f"more than {MAX_NODES:,} values{counting}; a configuration this large is a "
                "mistake",
            )

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # a bad date, a 5,000-digit integer
            text = node.value if isinstance(node, yaml.ScalarNode) else node.tag
            problem = f"{shown(text)}: {exc}"
            limit = sys.get_int_max_str_digits()
            digits = sum(c.isdigit() for c in text)
            if node.tag == "tag:yaml.org,2002:int" and limit and digits > limit:
                # Said as genie serve says it of a body's number; Python's own words advise
                # raising the limit, which is no fix for a file.
                problem = f"number {text[:32]}... is too long: {digits} digits, at most {limit}"
            raise _Refused(node.start_mark.line + 1, problem) from exc


class _PyLoader(Reader, Scanner, Parser, _Bounded):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Bounded.__init__(self)


_Loader: Callable[[str], _Bounded] = _PyLoader
try:
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml: the pure-Python parser
    pass
else:
    # libyaml scans and parses; composing stays in Python, where the bounds are checked.
    class _CLoader(_Bounded, CParser):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _Bounded.__init__(self)

    _Loader = _CLoader


def _read(path: Path) -> str:
    try:
        return decode_utf8(read_bounded(path, MAX_BYTES), path)
    except FileRefusedError as exc:
        if exc.size is not None:
            raise ConfigFileError([f"{path}:1: {_TOO_LARGE}"]) from None
        raise ConfigFileError([str(exc)]) from None


_TOO_LARGE = f"the file is larger than {MAX_BYTES // 1024} KiB, the limit for a configuration file"


_MERGE = "tag:yaml.org,2002:merge"


@dataclass
class _Walk:
    """What ``_lines`` gathers: the line of every key and item, each key given twice in one
    mapping (by its mapping and the two positions, as an aliased mapping is walked once per
    alias: once here), and the line each alias was written on (an alias composes to the very
    node it names, whose own line is the anchor's)."""

    key_of: Callable[[yaml.Node], Any]
    alias_lines: dict[tuple[int, int, int], int]
    out: dict[Loc, int] = field(default_factory=dict)
    dupes: dict[tuple[int, int, int], tuple[int, int, Loc]] = field(default_factory=dict)
    # The mappings with a ``<<`` key, where, and their own keys' nodes (see ``_merged_lines``).
    merges: list[tuple[yaml.MappingNode, Loc, frozenset[int]]] = field(default_factory=list)


def _lines(node: yaml.Node, loc: Loc, walk: _Walk, line: int | None = None) -> None:
    """Record the line of every key and item under ``loc`` (``line``: where ``node`` was
    written, when an alias put it there), and each key given twice in one mapping. Keys are
    compared as the loaded mapping compares them (``key_of`` builds a key's value): ``1`` and
    ``"1"`` are two keys, ``1``, ``1.0`` and ``true`` one."""
    walk.out[loc] = line or node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, tuple[int, int]] = {}
        for i, (key, value) in enumerate(node.value):
            at = walk.alias_lines.get((id(node), i, 0)) or key.start_mark.line + 1
            if not isinstance(key, yaml.ScalarNode):
                raise _Refused(
                    at, f"{key_of(loc)}: a key is a list or a mapping here; a key is one value"
                )
            name = key.value
            read = _MERGE if key.tag == _MERGE else walk.key_of(key)
            first = seen.setdefault(read, (i, at))
            if first[0] != i:
                walk.dupes.setdefault((id(node), first[0], i), (first[1], at, (*loc, name)))
            _lines(value, (*loc, name), walk, walk.alias_lines.get((id(node), i, 1)))
            walk.out[(*loc, name)] = at
            if not isinstance(read, str):  # on: is true: pydantic names such a key by its value
                walk.out.setdefault((*loc, read), at)
        if _MERGE in seen:
            walk.merges.append((node, loc, frozenset(id(key) for key, _ in node.value)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*loc, i), walk, walk.alias_lines.get((id(node), i, 0)))


def _merged_lines(walk: _Walk) -> None:
    """Record the line of each key a ``<<`` merged into a mapping, where it was written (in
    the mapping merged in): loaded, it is that mapping's own key. Read after constructing,
    which leaves each such mapping's node holding its merged keys before its own, the last
    of each key the one loaded, so the lines follow what the loader did."""
    i = 0
    while i < len(walk.merges):  # a merged value's own merges join the list as it is walked
        node, loc, own = walk.merges[i]
        i += 1
        loaded = {key.value: (key, value) for key, value in node.value}
        for name, (key, value) in loaded.items():
            if id(key) not in own:
                _lines(value, (*loc, name), walk)
                walk.out[(*loc, name)] = key.start_mark.line + 1


def is_under(loc: Loc, prefixes: Sequence[Loc]) -> bool:
    """Whether ``loc`` is one of ``prefixes`` or inside one."""
    return any(loc[: len(p)] == p for p in prefixes)


def line_of(lines: dict[Loc, int], loc: Loc) -> int:
    """The line of the longest prefix of ``loc`` that the file has (a missing key is reported
    at its parent)."""
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return 1


def read_yaml(path: Path) -> Document:
    """Read ``path`` within the module's bounds; raises ConfigFileError naming file and line."""
    return parse_yaml(_read(path), path)


def parse_yaml(text: str, path: str | Path, max_bytes: int = MAX_BYTES) -> Document:
    """Parse ``text`` (the content of ``path``, which names it in problems: a file, or any
    source such as ``<stdin>``) within the module's bounds; raises ConfigFileError naming the
    line. ``max_bytes``: a run's input has its pipeline's own size limit (checked when it was
    read); aliases, depth and duplicate keys are bounded as for a configuration file."""
    if len(text) > max_bytes:
        too_large = _TOO_LARGE if max_bytes == MAX_BYTES else f"larger than {max_bytes:,} bytes"
        raise ConfigFileError([f"{path}:1: {too_large}"])
    loader = None
    walk = None
    try:
        loader = _Loader(text)  # the pure-Python reader checks the characters here
        node = loader.get_single_node()
        if node is not None:
            # Before constructing, which merges ``<<`` keys into the mapping's own keys.
            walk = _Walk(loader.construct_object, loader.alias_lines)
            _lines(node, (), walk)
        data = None if node is None else loader.construct_document(node)
        if walk is not None:
            _merged_lines(walk)
    except _Refused as exc:
        raise ConfigFileError([f"{path}:{exc.line}: {exc.problem}"]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        if "nesting depth" in (exc.problem or ""):
            # libyaml (PyYAML 6.0.4 on) bounds the nesting itself, below what it scans ahead:
            # the same refusal as ours, in our words.
            raise ConfigFileError(
                [f"{path}:{line}: nested more than {MAX_DEPTH} levels deep"]
            ) from None
        where = ""
        if exc.context and exc.context_mark and exc.context_mark.line + 1 != line:
            where = f" ({exc.context} started on line {exc.context_mark.line + 1})"
        problem = f"{path}:{line}: YAML syntax error: {exc.problem}{where}"
        raise ConfigFileError([problem]) from exc
    except yaml.reader.ReaderError as exc:  # a control character: the reader has no line
        line = text.count("\n", 0, max(text.find(chr(exc.character)), 0)) + 1
        raise ConfigFileError(
            [f"{path}:{line}: character #x{exc.character:04x} is not allowed in YAML"]
        ) from exc
    finally:
        if loader is not None:
            loader.dispose()
    if walk is None:
        return Document(data, {})
    problems = [
        f"{path}:{second}: {key_of(loc)}: duplicate key "
        f"(first on line {first}); YAML would keep only the last one"
        for first, second, loc in walk.dupes.values()
    ]
    return Document(data, walk.out, sorted_problems(problems))


def key_of(loc: Loc) -> str:
    """The key at ``loc`` as a problem names it (``rules.2.id``). A last key YAML did not read
    as text (``on``, read as true) is named by its mapping, as ``not_text`` words it: its
    value, ``True``, is no name the file has."""
    if loc and (isinstance(loc[-1], bool) or not isinstance(loc[-1], str | int)):
        loc = loc[:-1]
    return ".".join(str(p) for p in loc) or "<top>"


def not_text(key: object) -> str:
    """Why ``key``, a mapping's key that YAML read as something other than text, is refused."""
    return (
        f"a key is text; YAML read this one as {json.dumps(key, default=str)} (unquoted on, "
        "off, yes and no are true or false, ~ is null): quote it"
    )


def _no_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"a whole number, not {str(value).lower()}")  # noqa: TRY004 - pydantic reads ValueError
    return value


WholeNumber = Annotated[int, BeforeValidator(_no_bool)]
"""An int field of a YAML file: ``true`` is not 1 (pydantic's lax mode reads it so), while a
string of digits (what ``${VAR}`` substitution gives) still is a number."""


def load_model(
    path: str | Path, model: type[M], *, strict: bool = False
) -> tuple[M, dict[Loc, int]]:
    """Parse ``path`` into ``model``; raises ConfigFileError listing every problem. ``strict``
    takes each value as YAML typed it (a quoted ``"yes"`` is text, not true; ``"5"`` is not a
    number), for a file whose strings no ``${VAR}`` substitution wrote."""
    if not os.fspath(path):  # Path("") is the current folder: "is a directory" would puzzle
        raise ConfigFileError(["'': an empty path names no file"])
    path = Path(path)
    doc = read_yaml(path)
    try:
        found = validate(model, doc.data, path, doc.lines, strict=strict)
    except ConfigFileError as exc:
        raise ConfigFileError(sorted_problems([*doc.problems, *exc.problems])) from exc
    if doc.problems:
        raise ConfigFileError(doc.problems)
    return found, doc.lines


_WHERE = re.compile(r"^(.*?):(\d+): ")


def sorted_problems(problems: Sequence[str]) -> list[str]:
    """``problems`` (``file:line: ...``, or ``file: ...`` for the whole file) in file order:
    files as first named, then by line; the order found within one line."""
    files: dict[str, int] = {}

    def where(problem: str) -> tuple[int, int]:
        match = _WHERE.match(problem)
        name, line = (match[1], int(match[2])) if match else (problem.split(": ", 1)[0], 0)
        return files.setdefault(name, len(files)), line

    keys = [where(p) for p in problems]  # in the order given, so files rank as first named
    return [p for _, p in sorted(zip(keys, problems, strict=True), key=lambda kp: kp[0])]


def validate(
    model: type[M],
    data: Any,
    path: Path,
    lines: dict[Loc, int],
    at: Loc = (),
    *,
    strict: bool = False,
) -> M:
    """Validate ``data`` (found at ``at`` in ``path``) into ``model``, strictly or not (see
    ``load_model``); raises ConfigFileError."""
    try:
        return model.model_validate(data if data is not None else {}, strict=strict or None)
    except ValidationError as exc:
        raise ConfigFileError(problems(exc, path, lines, at, model)) from exc


def problems(
    exc: ValidationError,
    path: Path,
    lines: dict[Loc, int],
    at: Loc = (),
    model: type[BaseModel] | None = None,
    errors: Sequence[ErrorDetails] | None = None,
) -> list[str]:
    """Each error of ``exc`` (or those of its ``errors`` given) as ``file:line: key: reason``;
    an unknown key of ``model`` (or of the nested model it is in) names the closest known
    key."""
    out = []
    if errors is None:
        errors = exc.errors(include_url=False)
    failed = [tuple(err["loc"]) for err in errors]
    for err in errors:
        here = tuple(err["loc"])
        if err["type"] == "too_short" and any(f[: len(here)] == here != f for f in failed):
            # pydantic counts a list's items after dropping the wrong ones: "at least 1 item,
            # not 0" only repeats that an item is wrong.
            continue
        loc: Loc = (*at, *here)
        key = err.get("input")
        if (err["type"] == "invalid_key" or here[-1:] == ("[key]",)) and not isinstance(key, str):
            # pydantic renders the key (true as 1, null as 'None'): found by the value read.
            mapping = loc[:-1] if err["type"] == "invalid_key" else loc[:-2]
            out.append(
                f"{path}:{line_of(lines, (*mapping, key))}: {key_of(mapping)}: {not_text(key)}"
            )
            continue
        out.append(f"{path}:{line_of(lines, loc)}: {key_of(loc)}: {_reason(err, model)}")
    return out


# Words for what pydantic says in a programmer's words: a YAML file has lists, not tuples or
# sets, and mappings, not dictionaries or instances of our classes.
_AS_LIST = {"tuple_type", "set_type", "frozen_set_type", "list_type"}
_AS_MAPPING = {"model_type", "dict_type", "dataclass_type", "model_attributes_type"}


def _reason(err: ErrorDetails, model: type[BaseModel] | None) -> str:
    kind = err["type"]
    given = err.get("input")
    if kind == "extra_forbidden":
        return "unknown key" + did_you_mean(str(err["loc"][-1]), keys_at(model, err["loc"]))
    if kind in _AS_LIST:
        hint = f" (for one: [{given}])" if isinstance(given, str) and given else ""
        return f"Input should be a valid list{hint}"
    if kind in _AS_MAPPING:
        return "Input should be a valid mapping (key: value, ...)"
    if kind in ("bool_type", "int_type") and isinstance(given, str):
        # a strict file's quoted value: say why text is not what YAML writes unquoted
        plain = "true or false" if kind == "bool_type" else "a number"
        return f"{err['msg']}; {json.dumps(given)} is text ({plain}, unquoted)"
    if kind == "too_short" and "ctx" in err and "Tuple" in err["msg"]:
        n = err["ctx"]["min_length"]
        return f"List should have at least {n} item{'' if n == 1 else 's'}"
    return str(err["msg"]).removeprefix("Value error, ")


def keys_at(model: type[BaseModel] | None, loc: Loc) -> list[str]:
    """The keys of the model that holds the last key of ``loc`` (following nested models,
    lists and dicts of models), or none when it cannot be told."""
    for part in loc[:-1]:
        if model is None:
            return []
        if isinstance(part, int):
            continue  # an item of a list: the same item model
        info = model.model_fields.get(part)
        model = _model_in(info.annotation) if info is not None else None
    return [] if model is None else list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model in ``Model``, ``Model | None``, ``list[Model]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
