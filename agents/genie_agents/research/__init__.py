"""Research agents: static macro and rate outlooks, and deep research (a ReAct loop over a
model whose tool calls are requests to the corpus agent; offline without a model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
    from .deep import CorpusQuery as CorpusQuery
    from .deep import CorpusSearch as CorpusSearch
    from .deep import CorpusSnippet as CorpusSnippet
    from .deep import DeepResearch as DeepResearch
    from .deep import ResearchBrief as ResearchBrief
    from .deep import ResearchRequest as ResearchRequest
    from .outlooks import MacroContext as MacroContext
    from .outlooks import MacroContextResult as MacroContextResult
    from .outlooks import MacroResearch as MacroResearch
    from .outlooks import RateOutlook as RateOutlook
    from .outlooks import RateOutlookResult as RateOutlookResult
    from .outlooks import RateWatcher as RateWatcher

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "CorpusQuery": ".deep",
    "CorpusSearch": ".deep",
    "CorpusSnippet": ".deep",
    "DeepResearch": ".deep",
    "ResearchBrief": ".deep",
    "ResearchRequest": ".deep",
    "MacroContext": ".outlooks",
    "MacroContextResult": ".outlooks",
    "MacroResearch": ".outlooks",
    "RateOutlook": ".outlooks",
    "RateOutlookResult": ".outlooks",
    "RateWatcher": ".outlooks",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "corpus_search": "CorpusSearch",
    "deep_research": "DeepResearch",
    "macro_research": "MacroResearch",
    "rate_watcher": "RateWatcher",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
    "CorpusQuery",
    "CorpusSearch",
    "CorpusSnippet",
    "DeepResearch",
    "MacroContext",
    "MacroContextResult",
    "MacroResearch",
    "RateOutlook",
    "RateOutlookResult",
    "RateWatcher",
    "ResearchBrief",
    "ResearchRequest",
]
