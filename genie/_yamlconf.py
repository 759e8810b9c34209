"""YAML configuration with line numbers: every error names the file, the line and the key."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ._errors import ConfigurationError

__all__ = ["ConfigFileError", "load_model"]

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


class ConfigFileError(ConfigurationError):
    """A configuration file is wrong; ``problems`` lists each as ``file:line: key: reason``."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def _lines(node: yaml.Node, loc: Loc, out: dict[Loc, int]) -> None:
    out[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark.line)
            out[(*loc, name)] = key.start_mark.line + 1
            _lines(value, (*loc, name), out)
            out[(*loc, name)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*loc, i), out)


def line_of(lines: dict[Loc, int], loc: Loc) -> int:
    """The line of the longest prefix of ``loc`` that the file has (a missing key is reported
    at its parent)."""
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return 1


def read_yaml(path: Path) -> tuple[Any, dict[Loc, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError([f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        where = ""
        if exc.context and exc.context_mark and exc.context_mark.line + 1 != line:
            where = f" ({exc.context} started on line {exc.context_mark.line + 1})"
        problem = f"{path}:{line}: YAML syntax error: {exc.problem}{where}"
        raise ConfigFileError([problem]) from exc
    lines: dict[Loc, int] = {}
    if node is not None:
        _lines(node, (), lines)
    return data, lines


def load_model(path: str | Path, model: type[M]) -> tuple[M, dict[Loc, int]]:
    """Parse ``path`` into ``model``; raises ConfigFileError listing every problem."""
    path = Path(path)
    data, lines = read_yaml(path)
    return validate(model, data, path, lines), lines


def validate(model: type[M], data: Any, path: Path, lines: dict[Loc, int], at: Loc = ()) -> M:
    """Validate ``data`` (found at ``at`` in ``path``) into ``model``; raises ConfigFileError."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigFileError(problems(exc, path, lines, at)) from exc


def problems(exc: ValidationError, path: Path, lines: dict[Loc, int], at: Loc = ()) -> list[str]:
    """Each error of ``exc`` as ``file:line: key: reason``."""
    out = []
    for err in exc.errors(include_url=False):
        loc: Loc = (*at, *err["loc"])
        key = ".".join(str(p) for p in loc) or "<top>"
        reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        reason = reason.removeprefix("Value error, ")
        out.append(f"{path}:{line_of(lines, loc)}: {key}: {reason}")
    return out
