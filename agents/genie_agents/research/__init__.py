"""Research agents with static, offline answers (the LLM-backed deep research comes with the
LLM issue)."""

from .outlooks import (
    MacroContext,
    MacroContextResult,
    MacroResearch,
    RateOutlook,
    RateOutlookResult,
    RateWatcher,
)

AGENTS = {"macro_research": MacroResearch, "rate_watcher": RateWatcher}

__all__ = [
    "AGENTS",
    "MacroContext",
    "MacroContextResult",
    "MacroResearch",
    "RateOutlook",
    "RateOutlookResult",
    "RateWatcher",
]
