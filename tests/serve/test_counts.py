"""A served answer counts its own request, as its lists and its stream show it, however many
requests the server's runtime has run: a real server on 127.0.0.1, requests over HTTP.

``tests/pipelines/good/branches.yaml``: one branch handled, one failing three times (a dead
letter), one denied by a rule, two of three deliveries shed by a full mailbox; a gather
bundles what came (tests/pipelines/test_counts.py derives each count)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from genie.pipeline import load_pipeline

from ..pipelines.test_counts import BRANCHES, BRANCHES_STATS, adds_up
from .conftest import ALICE, auth, keyring, serving, sse

ASK = "/v1/pipelines/branches/ask"


def checked(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer's counts, checked against its lists."""
    assert answer["status"] == "partial"
    adds_up(answer["stats"], len(answer["dead_letters"]), len(answer["denials"]))
    assert Counter(d["kind"] for d in answer["dead_letters"]) == {"failed": 1, "shed": 2}
    stats: dict[str, Any] = answer["stats"]
    return stats


async def test_each_answer_counts_its_own_request_and_adds_up(tmp_path: Path) -> None:
    async with serving([load_pipeline(BRANCHES)], keyring(tmp_path)) as client:
        first = await client.post(ASK, json={"n": 1}, headers=auth(ALICE))
        second = await client.post(ASK, json={"n": 1}, headers=auth(ALICE))
        together: list[dict[str, Any]] = []

        async def one() -> None:
            r = await client.post(ASK, json={"n": 1}, headers=auth(ALICE))
            together.append(r.json())

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
        runtime = await client.get("/v1/pipelines/branches/statistics", headers=auth(ALICE))
    assert first.status_code == second.status_code == 200
    assert checked(first.json()) == BRANCHES_STATS
    for answer in (second.json(), *together):
        stats = checked(answer)
        # broken's circuit is open after the first request: its delivery fails uncalled
        assert {k: v for k, v in stats.items() if k not in ("calls", "failed", "retries")} == {
            k: v for k, v in BRANCHES_STATS.items() if k not in ("calls", "failed", "retries")
        }
    assert runtime.json()["delivered"] > 5 * BRANCHES_STATS["delivered"]


async def test_a_streamed_answer_counts_the_events_it_streamed(tmp_path: Path) -> None:
    async with serving([load_pipeline(BRANCHES)], keyring(tmp_path)) as client:
        await client.post(ASK, json={"n": 1}, headers=auth(ALICE))  # counts of its own
        r = await client.post(ASK + "/stream", json={"n": 1}, headers=auth(ALICE))
    frames = sse(r.text)
    assert frames[-1][1] == "result"
    answer: dict[str, Any] = frames[-1][2]
    stats = checked(answer)
    events = Counter(event for _, event, _ in frames)
    for event in ("published", "delivered", "handled", "failed", "denied"):
        assert events[event] == stats[event], event
    assert events["dead_lettered"] == len(answer["dead_letters"])
