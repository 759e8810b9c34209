"""The pipelines genie ships (the catalogue's ``config/``: pipelines, policies, sample data),
found by name wherever genie is installed: ``genie run finance`` in any folder.

In the wheel they are package data of ``genie_agents`` (``genie_agents/config/``); in a clone
that folder is a link to the repository's ``config/``, so both read the same files, and a
shipped pipeline's relative paths (``../policies/...``, ``../data/...``) hold in both.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["shipped_file", "shipped_pipelines"]


def _config() -> Path | None:
    spec = importlib.util.find_spec("genie_agents")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "config" / "pipelines"
        if folder.is_dir():
            return folder
    return None


def shipped_file(relative: str) -> Path:
    """A shipped file by its path under ``config/`` (``policies/ai-policy.yaml``), or that
    relative path itself when genie ships none (a tree without the catalogue)."""
    folder = _config()
    return folder.parent / relative if folder is not None else Path("config", relative)


def shipped_pipelines() -> dict[str, Path]:
    """Each shipped pipeline by name (its file's stem: ``finance``, ``finance-gather``)."""
    folder = _config()
    if folder is None:
        return {}
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}
