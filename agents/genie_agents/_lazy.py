"""Lazy package attributes: a domain package names its classes without importing them, so a
pipeline imports only the agents it uses (and an LLM agent's client only when one is used)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping

__all__ = ["lazy_attribute"]


def lazy_attribute(package: str, where: Mapping[str, str], name: str) -> object:
    """``name`` imported from its module (``where[name]``, relative to ``package``) and kept
    on the package: the body of a package's ``__getattr__``."""
    module = where.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, package), name)
    setattr(sys.modules[package], name, value)
    return value
