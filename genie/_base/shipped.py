"""The files genie ships (the catalogue's ``config/``: pipelines, policies, sample data), found
by name wherever genie is installed: ``genie run finance``, ``load_policy_file("ai-policy")``
in any folder.

In the wheel they are package data of ``genie_agents`` (``genie_agents/config/``); in a clone
that folder is a link to the repository's ``config/``, so both read the same files, and a
shipped pipeline's relative paths (``../policies/...``, ``../data/...``) hold in both.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .._errors import did_you_mean
from .yamlconf import ConfigFileError

__all__ = ["located", "shipped", "shipped_file", "shipped_pipelines"]


def _config() -> Path | None:
    spec = importlib.util.find_spec("genie_agents")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "config"
        if (folder / "pipelines").is_dir():
            return folder
    return None


def shipped_file(relative: str) -> Path:
    """A shipped file by its path under ``config/`` (``policies/ai-policy.yaml``), or that
    relative path itself when genie ships none (a tree without the catalogue)."""
    folder = _config()
    return folder / relative if folder is not None else Path("config", relative)


def shipped(folder: str) -> dict[str, Path]:
    """Each shipped file of ``config/<folder>`` by name, its file's stem (``finance``,
    ``ai-policy``)."""
    config = _config()
    if config is None:
        return {}
    return {path.stem: path for path in sorted((config / folder).glob("*.yaml"))}


def shipped_pipelines() -> dict[str, Path]:
    """Each shipped pipeline by name (``finance``, ``finance-gather``)."""
    return shipped("pipelines")


def located(path: str | os.PathLike[str], folder: str, kind: str) -> Path:
    """``path``, or the shipped file of ``config/<folder>`` it names (``finance``: no folder,
    no suffix, no such file here); a file that is nowhere is refused naming the shipped ones,
    ``kind`` saying what they are (``pipelines, by name (genie run NAME)``)."""
    path = Path(path)
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        pass  # not here (a NUL is in no file's name): perhaps a shipped file's name
    except OSError as exc:
        # Here or not, it cannot be read: a name too long, a loop of links (which
        # Path.exists() let out as a traceback, or called missing).
        raise ConfigFileError([f"{path}: cannot be read: {exc.strerror or exc}"]) from None
    else:
        return path
    found = shipped(folder)
    if len(path.parts) == 1 and not path.suffix and path.name in found:
        return found[path.name]
    names = ", ".join(found) or "none installed"
    hint = did_you_mean(path.stem, found) if len(path.parts) == 1 else ""
    raise ConfigFileError([f"{path}: does not exist{hint}; the shipped {kind}: {names}"])
