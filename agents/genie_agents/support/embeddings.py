"""Text embedders for the semantic router: a deterministic hashing embedder built in, and
Ollama's embeddings endpoint over HTTP."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import httpx

__all__ = ["EmbeddingError", "Embedder", "HashEmbedder", "OllamaEmbedder", "cosine"]


class EmbeddingError(Exception):
    """An embedder could not embed: the service refused, failed or answered nonsense."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors whose cosine similarity says how alike the texts are."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order, all of the same length.

        Raises ``EmbeddingError`` when the texts cannot be embedded.
        """
        ...


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity; 0 when either vector is all zeros. Vectors of different lengths or
    with non-finite values raise ``EmbeddingError`` (a NaN score would compare as neither
    high nor low and could win a route)."""
    if len(a) != len(b):
        raise EmbeddingError(f"vectors of different lengths ({len(a)} and {len(b)})")
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    score = 0.0 if na == 0 or nb == 0 else dot / (na * nb)
    if not math.isfinite(score):
        raise EmbeddingError("an embedding holds a non-finite value (nan or infinity)")
    return score


WORD = re.compile(r"[a-z0-9]+")


class HashEmbedder:
    """Feature hashing, no model: each word and each character trigram of each word (padded,
    so "loan" and "loans" share most of theirs) adds +1 or -1 to one of ``dim`` slots, chosen
    by BLAKE2b; the vector is scaled to unit length. The same text gives the same vector in
    every process (no use of Python's salted ``hash``)."""

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ValueError("dim must be at least 8")
        self.dim = dim

    def vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        for word in WORD.findall(text.casefold()):
            padded = f"#{word}#"
            features = [f"w:{word}", *(f"t:{padded[i : i + 3]}" for i in range(len(padded) - 2))]
            for feature in features:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "big")
                vec[value % self.dim] += 1.0 if value >> 63 else -1.0
        norm = math.sqrt(sum(x * x for x in vec))
        return [x / norm for x in vec] if norm else vec

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(t) for t in texts]


class OllamaEmbedder:
    """Ollama's ``POST {url}/api/embed`` with ``{"model", "input": [texts]}``, answered by
    ``{"embeddings": [[...], ...]}``. One HTTP client per call (nothing to close); pass
    ``transport`` to route the calls elsewhere (a proxy, or ``httpx.MockTransport`` in tests)."""

    def __init__(
        self,
        url: str = "http://localhost:11434",
        model: str = "nomic-embed-text",
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/api/embed"
        self.model, self.timeout, self.transport = model, timeout, transport

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        where = f"ollama embed at {self.endpoint} (model {self.model!r})"
        body = {"model": self.model, "input": list(texts)}
        try:
            async with httpx.AsyncClient(transport=self.transport, timeout=self.timeout) as client:
                response = await client.post(self.endpoint, json=body)
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"{where}: {type(exc).__name__}: {exc}") from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code != httpx.codes.OK:
            detail = data.get("error") if isinstance(data, dict) else None
            raise EmbeddingError(
                f"{where}: HTTP {response.status_code}: {detail or response.text[:200]}"
            )
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if (
            not isinstance(vectors, list)
            or len(vectors) != len(texts)
            or not all(
                isinstance(v, list) and v and all(isinstance(x, int | float) for x in v)
                for v in vectors
            )
        ):
            raise EmbeddingError(
                f"{where}: expected {len(texts)} embeddings in the answer's 'embeddings'"
            )
        return [[float(x) for x in v] for v in vectors]
