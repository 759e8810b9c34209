"""What the catalogue's agents remember of a client (``ctx.memory``): whose request it is, the
session it belongs to, and the context a model is shown from memory instead of the whole
conversation replayed."""

from __future__ import annotations

import hashlib

from genie import Context
from genie.memory import Fact, Hit, Snapshot

__all__ = ["recalled_context", "session_of", "topic_key", "user_of"]

RELEVANT = 0.35  # cosine below which an earlier brief is about something else


def user_of(ctx: Context) -> str:
    """The client: the request's ``user_id`` (what consent and RBAC read), else anonymous."""
    return str(ctx.message.metadata.get("user_id") or "anonymous")


def session_of(ctx: Context) -> str:
    """The conversation: the request's ``session_id``, else one per client."""
    return str(ctx.message.metadata.get("session_id") or user_of(ctx))


def topic_key(text: str) -> str:
    """A stable key for a question, so that asking it again replaces its earlier answer."""
    return hashlib.blake2b(" ".join(text.lower().split()).encode(), digest_size=8).hexdigest()


def recalled_context(snapshot: Snapshot, hits: list[Hit], facts: list[Fact]) -> str:
    """What memory tells a model before the question: the facts on record, the briefs that
    bear on it, the conversation's summary and its recent turns."""
    parts = [f"Known: {f.key} = {f.value} (from {f.source or 'unknown'})" for f in facts]
    parts += [f"Earlier finding: {h.text}" for h in hits if h.score >= RELEVANT]
    if snapshot.summary:
        parts.append(f"Conversation so far (summary): {snapshot.summary}")
    parts += [f"{e.role}: {e.text}" for e in snapshot.recent]
    return "\n".join(parts)
