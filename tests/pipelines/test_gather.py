"""Declared gathers on virtual time: complete, partial at the deadline, or failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio.testing

from genie.pipeline import load_pipeline

GATHER = Path(__file__).parent / "good" / "gather.yaml"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


async def run(**variables: str) -> tuple[Any, Any]:
    pipeline = load_pipeline(GATHER, variables=variables)
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None))
        fan_in = next(a for a in rt.agents() if a.id == "fan_in")
    return result, fan_in


async def test_complete_when_every_sender_answers_in_time() -> None:
    result, fan_in = await run(SLOW="0.5")
    assert result.ok
    assert result.output.payload.text == "complete: got ['fast', 'slow'], missing []"
    assert fan_in.pending == 0


async def test_partial_at_the_deadline() -> None:
    result, fan_in = await run()
    assert result.ok
    assert result.output.payload.text == "partial: got ['fast'], missing ['slow']"
    assert fan_in.pending == 0  # the session ended with the deadline: nothing leaks


async def test_fail_at_the_deadline() -> None:
    result, fan_in = await run(ON_TIMEOUT="fail")
    assert result.status == "failed"
    (missing,) = [m for m in result.missing if m.agent_id == "fan_in"]
    assert missing.kind == "failed"
    assert "gather 'fan_in': slow: did not arrive within the 1s deadline" in missing.reason
    assert fan_in.pending == 0
    assert fan_in.late == 1  # slow's answer came after the gather had closed
