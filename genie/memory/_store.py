"""A memory: its four areas over one backend, the embedder of its semantic memory and the
model its episodic memory summarises through."""

from __future__ import annotations

import json
from collections.abc import Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any, Literal

import anyio

from .._agent.memory import Episode, Fact, Hit, Snapshot, Summarising, transcript
from .._base.clock import spelt
from .._base.log import lazy_logger
from .._base.resilience import NOT_RETRYABLE
from .._errors import ConfigurationError, MemoryDeniedError, described
from ._backends import Backend, InMemoryBackend, SqliteBackend
from ._embed import Embedder, HashingEmbedder, cosine

if TYPE_CHECKING:
    from ..llm._provider import Provider

__all__ = ["SUMMARY_PROMPT", "SUMMARY_TOKENS", "Store"]

# Go's summariser, word for word: a short paragraph that keeps the facts.
SUMMARY_PROMPT = (
    "Summarise the conversation below in one short paragraph. Keep facts; drop pleasantries."
)
SUMMARY_TOKENS = 200
_OFFLINE_CHARS = 80  # of each turn, in the summary made without a model

_log = lazy_logger("genie.runtime")


class Store:
    """One memory (``Runtime(memory=...)``, a pipeline's ``memory:``).

    ``backend``: ``"memory"`` (this process, the default), ``"sqlite"``: the file at
    ``path``, or without one the runtime's durable store file (``Runtime(store=...)``), or a
    backend object: ``NatsTransport.memory``, the namespace's KV bucket that every process of
    a scale-out shares (docs/memory.md).
    ``threshold``: turns a session keeps before the older half is summarised, through
    ``summariser`` (a ``genie.llm`` provider, called as the handler's ``ctx.llm``) or, without
    one, offline (each turn's first words). ``embedder``: the semantic memory's
    (``HashingEmbedder()`` by default: offline)."""

    def __init__(
        self,
        backend: Literal["memory", "sqlite"] | Backend | None = None,
        *,
        path: str | PathLike[str] | None = None,
        threshold: int = 20,
        embedder: Embedder | None = None,
        summariser: Provider | None = None,
        summary_model: str | None = None,
    ) -> None:
        if backend is None:
            backend = "memory" if path is None else "sqlite"
        if isinstance(backend, str) and backend not in ("memory", "sqlite"):
            raise ConfigurationError(f"memory backend must be memory or sqlite, not {backend!r}")
        if backend != "sqlite" and path is not None:
            raise ConfigurationError("a path is for the sqlite backend")
        # A count of turns, as a pipeline file's is: "20" failed at the comparison, and NaN
        # was taken, no count being at most it, to summarise the session at every append.
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 2:
            raise ConfigurationError(
                f"memory threshold must be a whole number of at least 2, not {spelt(threshold)}"
            )
        # Checked here, not at the first summary or the first semantic add: a provider's or an
        # embedder's name (a str) was taken, and failed in a handler with an AttributeError.
        for role, given, kind, calls in (
            (
                "summariser",
                summariser,
                "a genie.llm Provider",
                ("name", "region", "complete", "stream"),
            ),
            ("embedder", embedder, "a genie.memory Embedder", ("name", "embed")),
        ):
            if given is not None and not all(hasattr(given, call) for call in calls):
                raise ConfigurationError(
                    f"memory {role} must be {kind} ({', '.join(calls)}), not "
                    f"{type(given).__name__} ({spelt(given)})"
                )
        self.path = None if path is None else str(path)
        self.threshold = threshold
        self.embedder: Embedder = embedder or HashingEmbedder()
        self._summariser = summariser
        self.summary_model = summary_model
        self.name = "default"
        self._bound: str | None = None  # the memory this store is, once a runtime names it
        self._shared: str | None = None  # the durable store file it keeps its tables in
        # A file's backend is opened at the first call (the path may come from the runtime).
        self._file = backend == "sqlite"
        self._backend: Backend | None = None
        if backend == "memory":
            self._backend = InMemoryBackend()
        elif not isinstance(backend, str):
            self._backend = backend
        self._folding: anyio.Lock | None = None

    @property
    def summariser(self) -> Provider | None:
        return self._summariser

    def bind(self, name: str, durable_path: str | None) -> None:
        """This store is the runtime's memory ``name``; a sqlite store without a path of its
        own keeps its tables in ``durable_path``, the runtime's durable store. A store is one
        memory: its rows are keyed by that name, so under a second name (of this runtime or
        another) the two memories would read each other's entries; it is refused."""
        if self._bound is not None and self._bound != name:
            raise ConfigurationError(
                f"memory {name!r}: this Store is the memory {self._bound!r} already (of this "
                f"runtime or another); a store keeps one memory's entries: give {name!r} a "
                "Store of its own (two stores may share one file)"
            )
        if self._shared is not None and durable_path != self._shared:
            # Its tables are in the first runtime's durable file: the second's entries would
            # be kept there, not in the file its runtime was given.
            raise ConfigurationError(
                f"memory {name!r}: this Store keeps its tables in the durable store file "
                f"{self._shared} already (of the runtime first given it), not this runtime's "
                f"({durable_path or 'none'}); give it a Store('sqlite') of its own, or a "
                "Store(path=...) to share"
            )
        self.name = self._bound = name
        if self._file and self.path is None:
            if durable_path is None:
                raise ConfigurationError(
                    f"memory {name!r}: the sqlite backend needs a path, or a runtime with a "
                    "durable store (Runtime(store=PATH), genie run --store) to share"
                )
            self.path = self._shared = durable_path

    async def aclose(self) -> None:
        if self._file and self._backend is not None:
            await self._backend.aclose()
            self._backend = None  # opened again at the next call

    @property
    def _entries(self) -> Backend:
        if self._backend is None:
            if self.path is None:
                raise ConfigurationError(
                    f"memory {self.name!r}: the sqlite backend needs a path, or a runtime "
                    "with a durable store to share"
                )
            self._backend = SqliteBackend(self.path)
        return self._backend

    # --- key-value -----------------------------------------------------------------------
    async def kv_get(self, namespace: str, key: str) -> tuple[Any, str] | None:
        found = await self._entries.kv_get(self.name, namespace, key)
        if found is None:
            return None
        text, level = found
        return json.loads(text), level

    async def kv_set(self, namespace: str, key: str, value: Any, classification: str) -> None:
        text = json.dumps(value)
        await self._entries.kv_set(self.name, namespace, key, text, classification)

    async def kv_delete(self, namespace: str, key: str) -> bool:
        return await self._entries.kv_delete(self.name, namespace, key)

    # --- episodic ------------------------------------------------------------------------
    async def append(
        self,
        session: str,
        episode: Episode,
        classification: str,
        summarising: Summarising | None,
    ) -> bool:
        count = await self._entries.append(self.name, session, episode, classification)
        if count <= self.threshold:
            return False
        if self._folding is None:
            self._folding = anyio.Lock()
        async with self._folding:  # one summary at a time: two would fold the same turns
            turns = list((await self._entries.session(self.name, session)).recent)
            if len(turns) <= self.threshold:
                return False
            older = turns[: len(turns) // 2]
            try:
                summary = await self._summarise(older, summarising)
                if summarising is not None:
                    summarising.keep(summary, older)
            except MemoryDeniedError:
                # Refused and audited: the turns stay as they are, each readable as it was
                # written, and the next append past the threshold asks again.
                return False
            except NOT_RETRYABLE:
                raise  # a budget's or a policy's refusal: the handler is not retried for it
            except Exception as exc:
                # The turn is kept: failing the append would have the handler retried, and
                # the retry keep the turn again. The next append past the threshold asks again.
                _log.warning(
                    "memory %r: the summary of session %r failed, its turns stay as they are: %s",
                    self.name,
                    session,
                    described(exc),
                    extra={"agent_id": "-", "message_type": "-", "correlation_id": "-"},
                )
                return False
            await self._entries.fold(self.name, session, older, summary)
        return True

    async def _summarise(self, turns: list[Episode], summarising: Summarising | None) -> str:
        model = self._summariser
        if model is None:
            return " ".join(f"{t.role}: {_first_words(t.text)}" for t in turns)
        if summarising is not None:  # None: called outside a handler, ungoverned
            model = summarising.model(model, turns)
        from ..llm._types import ChatMessage, Request  # the caller gave a model: llm is loaded

        answer = await model.complete(
            Request(
                system=SUMMARY_PROMPT,
                messages=(ChatMessage.user(transcript(turns)),),
                model=self.summary_model,
                max_tokens=SUMMARY_TOKENS,
            )
        )
        return answer.text.strip()

    async def snapshot(self, session: str) -> Snapshot:
        return await self._entries.session(self.name, session)

    # --- semantic ------------------------------------------------------------------------
    async def add(
        self, user: str, key: str, text: str, meta: Mapping[str, Any], classification: str
    ) -> None:
        (vector,) = await self.embedder.embed([text])
        row = (key, text, dict(meta), list(vector), classification)
        await self._entries.add(self.name, user, row)

    async def search(self, user: str, query: str, k: int) -> list[Hit]:
        rows = await self._entries.rows(self.name, user)
        if not rows:
            return []
        (wanted,) = await self.embedder.embed([query])
        scored = []
        for key, text, meta, vector, level in rows:
            if len(vector) != len(wanted):
                raise ConfigurationError(
                    f"memory {self.name!r}: entry {user}#{key} was embedded by another "
                    f"embedder ({len(vector)} dimensions, this one gives {len(wanted)})"
                )
            scored.append(Hit(key, text, meta, cosine(wanted, vector), level))
        scored.sort(key=lambda h: (-h.score, h.key))
        return scored[:k]

    # --- long-term facts -----------------------------------------------------------------
    async def record(self, fact: Fact) -> None:
        await self._entries.record(self.name, fact)

    async def current(self, user: str, key: str) -> Fact | None:
        facts = await self.history(user, key)
        return facts[-1] if facts else None

    async def current_all(self, user: str) -> list[Fact]:
        latest: dict[str, Fact] = {}
        for fact in await self._entries.history(self.name, user, None):
            # The last recorded of each key supersedes, and takes its place in the order: at
            # one instant (a clock standing still) the order recorded is the one left.
            latest.pop(fact.key, None)
            latest[fact.key] = fact
        return sorted(latest.values(), key=lambda f: f.recorded_at)  # stable

    async def history(self, user: str, key: str) -> list[Fact]:
        return await self._entries.history(self.name, user, key)


def _first_words(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _OFFLINE_CHARS else flat[: _OFFLINE_CHARS - 1] + "…"
