"""Agents that support pipelines rather than a business domain."""

from .fallback import Fallback as Fallback
from .fallback import FallbackNotice as FallbackNotice

__all__ = ["Fallback", "FallbackNotice"]
