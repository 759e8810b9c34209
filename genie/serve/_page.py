"""The live page at ``/``: plain HTML and a small script, no build step."""

from __future__ import annotations

from importlib.resources import files

__all__ = ["PAGE"]

PAGE = files(__package__).joinpath("page.html").read_text(encoding="utf-8")
