"""Memory for agents (docs/memory.md), reached in a handler through ``ctx.memory(name)``:

- ``kv``: values by namespace and key (``get``, ``set``, ``delete``);
- ``episodes``: a session's turns, the older half summarised past ``threshold`` through the
  handler's model (``snapshot(session)`` gives the summary and the recent turns);
- ``semantic``: texts per user found again by meaning (``add``, ``search``), through an
  ``Embedder`` (``HashingEmbedder`` works offline);
- ``facts``: long-term facts per user, a new one superseding the key's last (``record``,
  ``current``, ``current_all``, ``history``).

A ``Store`` keeps them in this process or in a SQLite file (its own, or the runtime's durable
store): ``Runtime(memory=Store(path="memory.db"))``, or a pipeline's ``memory:`` section.
Every write is judged by the runtime's policies as a ``memory_write`` message to
``memory:NAME`` before it is stored, and audited; a denial raises ``MemoryDeniedError``. Text
UTF-8 cannot encode (a lone surrogate) is refused before that, with ``MemoryArgumentError``.
"""

from .._agent.memory import Episode as Episode
from .._agent.memory import Fact as Fact
from .._agent.memory import Hit as Hit
from .._agent.memory import Memory as Memory
from .._agent.memory import MemoryStore as MemoryStore
from .._agent.memory import Snapshot as Snapshot
from .._errors import MemoryArgumentError as MemoryArgumentError
from .._errors import MemoryDeniedError as MemoryDeniedError
from ._embed import Embedder as Embedder
from ._embed import HashingEmbedder as HashingEmbedder
from ._embed import cosine as cosine
from ._store import SUMMARY_PROMPT as SUMMARY_PROMPT
from ._store import SUMMARY_TOKENS as SUMMARY_TOKENS
from ._store import Store as Store

__all__ = [
    "SUMMARY_PROMPT",
    "SUMMARY_TOKENS",
    "Embedder",
    "Episode",
    "Fact",
    "HashingEmbedder",
    "Hit",
    "Memory",
    "MemoryArgumentError",
    "MemoryDeniedError",
    "MemoryStore",
    "Snapshot",
    "Store",
    "cosine",
]
