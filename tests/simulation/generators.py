"""Input generators for the simulation tests (``simulation.inputs.use``)."""

from __future__ import annotations

import json
import math
import random


def numbered(rng: random.Random, session: int, *, start: int = 0) -> str:
    """``{"n": start + session}``: each session's entry says which session it is."""
    return json.dumps({"n": start + session})


def fails_at(rng: random.Random, session: int, *, session_to_fail: int = 3) -> str:
    if session == session_to_fail:
        raise ValueError("no input for this one")
    return json.dumps({"n": session})


def fails_from(rng: random.Random, session: int) -> str:
    if session >= 2:
        raise ValueError(f"no input for session {session}")
    return json.dumps({"n": session})


def not_text(rng: random.Random, session: int) -> object:
    return {"n": session}


def wrong_shape(rng: random.Random, session: int) -> str:
    return json.dumps({"n": "many"})


# A builtin: inspect cannot read its signature, so the loader cannot check its params.
no_signature = math.hypot


async def awaited(rng: random.Random, session: int) -> str:
    """An async def: its call is a coroutine, never the input text."""
    return json.dumps({"n": session})
