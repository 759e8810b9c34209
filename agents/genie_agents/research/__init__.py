"""Research agents with static, offline answers (an LLM-backed deep research needs a model
provider and is not ported)."""

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
