"""The hierarchical supervisor: one level of semantic routing, a query to the closest route."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from genie import BaseAgent, Classification, Context, Message, Payload, Risk, handler

from .._go import go_text
from .embeddings import Embedder, EmbeddingError, HashEmbedder, cosine

__all__ = ["HSuperviseRequest", "HSupervisor", "HUnrouted", "SemanticRoute"]


@dataclass(frozen=True)
class SemanticRoute:
    """Where a query goes when it is most like one of ``exemplars``: a ``payload`` built with
    the query in its ``field``, plus ``fixed`` values for the payload's other fields, sent
    to ``agent``."""

    agent: str
    payload: type[Payload]
    exemplars: tuple[str, ...]
    field: str = "text"
    fixed: Mapping[str, object] | None = None

    def __post_init__(self) -> None:
        if not self.agent:
            raise ValueError("a route needs a target agent")
        if not self.exemplars or not all(e.strip() for e in self.exemplars):
            raise ValueError(f"the route to {self.agent!r} needs non-empty exemplars")
        if self.field not in self.payload.model_fields:
            raise ValueError(
                f"the route to {self.agent!r}: {self.payload.__name__} has no field {self.field!r}"
            )

    def build(self, query: str) -> Payload:
        return self.payload.model_validate({**(self.fixed or {}), self.field: query})


class HSuperviseRequest(Payload):
    message_type = "h_supervise_request"
    query: str = Field(min_length=1, max_length=10_000)

    _go = go_text("query")  # Go's content was the query itself


class HUnrouted(Payload):
    message_type = "h_unrouted"
    query: str
    best_route: str | None
    best_score: float | None
    reason: str


class HSupervisor(BaseAgent):
    """Routes a query to one agent: embeds it (``embedder``, default a built-in hashing
    embedder; ``OllamaEmbedder`` for a real model), scores each of ``routes`` by the best
    cosine similarity to its exemplars (embedded once, on the first query), and sends the
    best route's payload to its agent (metadata ``h_route_id`` and ``h_route_score``,
    classified internal; equal scores go to the route declared first). A best score not above
    ``min_score`` (0.1, set for the hash embedder: unrelated texts score near 0 there) answers
    the caller ``h_unrouted`` instead, as does having no routes."""

    capabilities = ("hierarchical_supervise",)
    risk = Risk.MEDIUM
    produces: ClassVar[tuple[type[Payload], ...]] = (HUnrouted,)

    def __init__(
        self,
        id: str,
        *,
        routes: Mapping[str, SemanticRoute] | None = None,
        embedder: Embedder | None = None,
        min_score: float = 0.1,
    ) -> None:
        super().__init__(id)
        self.routes = dict(routes or {})
        self.embedder: Embedder = embedder if embedder is not None else HashEmbedder()
        self.min_score = min_score
        # Each instance emits its own routes' payloads, and the runtime registers an agent's
        # output types from the instance: shadow the class's list (which the catalogue reads).
        payloads = dict.fromkeys(r.payload for r in self.routes.values())
        self.produces = (HUnrouted, *payloads)  # type: ignore[misc]
        self._exemplars: dict[str, list[list[float]]] | None = None

    async def scores(self, query: str) -> list[tuple[str, float]]:
        """Each route's score for ``query``, best first (stable: declared order on ties)."""
        if self._exemplars is None:
            texts = [(rid, e) for rid, route in self.routes.items() for e in route.exemplars]
            vectors = await self.embedder.embed([text for _, text in texts])
            if len(vectors) != len(texts):
                raise EmbeddingError(
                    f"the embedder returned {len(vectors)} vectors for {len(texts)} exemplars"
                )
            grouped: dict[str, list[list[float]]] = {rid: [] for rid in self.routes}
            for (rid, _), vector in zip(texts, vectors, strict=True):
                grouped[rid].append(vector)
            self._exemplars = grouped
        answer = await self.embedder.embed([query])
        if len(answer) != 1:
            raise EmbeddingError(f"the embedder returned {len(answer)} vectors for 1 query")
        q = answer[0]
        scored = [
            (rid, max(cosine(q, v) for v in vectors)) for rid, vectors in self._exemplars.items()
        ]
        return sorted(scored, key=lambda item: -item[1])

    @handler
    async def on_request(self, payload: HSuperviseRequest, ctx: Context) -> Message:
        if not self.routes:
            return ctx.reply(
                HUnrouted(
                    query=payload.query,
                    best_route=None,
                    best_score=None,
                    reason="h_supervisor: no routes configured",
                )
            )
        ranked = await self.scores(payload.query)
        best, score = ranked[0]
        if score <= self.min_score:
            return ctx.reply(
                HUnrouted(
                    query=payload.query,
                    best_route=best,
                    best_score=round(score, 4),
                    reason=f"no route scores above {self.min_score}",
                )
            )
        route = self.routes[best]
        return ctx.emit(
            route.build(payload.query),
            recipient=route.agent,
            classification=Classification.INTERNAL,
            metadata={"h_route_id": best, "h_route_score": round(score, 4)},
        )
