"""Texts as vectors: the ``Embedder`` protocol a real embedding provider implements, and the
offline one shipped (hashed words and character trigrams: no model, no network, the same
vector for the same text in every process)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Protocol

from .._base.clock import spelt

__all__ = ["MAX_DIMENSIONS", "MIN_DIMENSIONS", "Embedder", "HashingEmbedder", "cosine"]

_WORD = re.compile(r"\w+")
# The hashing embedder's lengths (a pipeline file's ``dimensions`` too).
MIN_DIMENSIONS, MAX_DIMENSIONS = 8, 65536


class Embedder(Protocol):
    """Turns texts into vectors of one length; texts alike in meaning get vectors whose
    cosine is high. ``name`` is kept with the vectors, so that a store refuses to compare
    vectors of two embedders."""

    @property
    def name(self) -> str: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class HashingEmbedder:
    """Words and character trigrams hashed into ``dimensions`` buckets (signed, so that two
    features sharing a bucket tend to cancel rather than add), then normalised. It knows no
    synonyms: it finds texts that share words and word-pieces, which is what offline runs
    and tests need; a real embedding provider plugs in through ``Embedder``."""

    def __init__(self, dimensions: int = 256) -> None:
        # A length, within the bounds a pipeline file's ``dimensions`` has: every text
        # embedded allocates this many floats.
        if (
            isinstance(dimensions, bool)
            or not isinstance(dimensions, int)
            or not MIN_DIMENSIONS <= dimensions <= MAX_DIMENSIONS
        ):
            raise ValueError(
                f"dimensions must be a whole number from {MIN_DIMENSIONS} to {MAX_DIMENSIONS}, "
                f"not {spelt(dimensions)}"
            )
        self.dimensions = dimensions

    @property
    def name(self) -> str:
        return f"hashing-{self.dimensions}"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(t) for t in texts]

    def vector(self, text: str) -> list[float]:
        out = [0.0] * self.dimensions
        words = _WORD.findall(text.lower())
        features = list(words)
        for word in words:
            padded = f"#{word}#"
            features += [padded[i : i + 3] for i in range(len(padded) - 2)]
        for feature in features:
            # blake2b, not hash(): Python salts str hashes per process, and a vector kept in a
            # file must mean the same after a restart.
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dimensions
            out[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(x * x for x in out))
        return [x / norm for x in out] if norm else out


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
