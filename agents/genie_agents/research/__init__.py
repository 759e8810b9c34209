"""Research agents: static macro and rate outlooks, and deep research (a ReAct loop over a
model whose tool calls are requests to the corpus agent; offline without a model)."""

from .deep import (
    CorpusQuery,
    CorpusSearch,
    CorpusSnippet,
    DeepResearch,
    ResearchBrief,
    ResearchRequest,
)
from .outlooks import (
    MacroContext,
    MacroContextResult,
    MacroResearch,
    RateOutlook,
    RateOutlookResult,
    RateWatcher,
)

AGENTS = {
    "corpus_search": CorpusSearch,
    "deep_research": DeepResearch,
    "macro_research": MacroResearch,
    "rate_watcher": RateWatcher,
}

__all__ = [
    "AGENTS",
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
