"""A request that finds its pipeline's entry mailbox full is told to come back (429 with
``Retry-After``), at once, and nothing of it runs: no dead letter, no runtime audit row."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from genie import MemoryAuditLog, Runtime
from genie._runtime.durable.store import DeliveryStore
from genie.pipeline import Pipeline, load_pipeline
from genie.serve import ServeSettings

from .conftest import ALICE, ROOT, auth, keyring, serving, sse

ASK = "/v1/pipelines/slow/ask"


def one_slot(tmp_path: Path) -> Pipeline:
    """The sleeper (1 s a request) with a mailbox of one: one request runs, one waits."""
    text = (ROOT / "tests/pipelines/good/slow.yaml").read_text()
    text = text.replace("params: {seconds: 1}", "params: {seconds: 1}\n    mailbox: 1")
    text = text.replace("timeout: 50ms", "timeout: 10s")
    path = tmp_path / "slow.yaml"
    path.write_text(text)
    return load_pipeline(path)


async def filled(
    client: httpx.AsyncClient, runtimes: list[Runtime], tg: anyio.abc.TaskGroup
) -> list[int]:
    """Two requests sent: one running, one queued (the mailbox is full); their statuses land
    in the list returned once they are answered."""
    answered: list[int] = []
    assert (await client.get("/readyz")).status_code == 200  # the runtime has started

    async def one() -> None:
        answered.append((await client.post(ASK, json={}, headers=auth(ALICE))).status_code)

    # One at a time: sent together, the second could find the first still queued (not yet
    # taken by an executor) and be refused itself.
    for depth in (0, 1):
        tg.start_soon(one)
        with anyio.fail_after(5):
            while queued(runtimes[0]) != (depth + 1, depth):  # noqa: ASYNC110
                await anyio.sleep(0.01)
    return answered


def queued(rt: Runtime) -> tuple[int, int]:
    """The runtime's deliveries in flight, and those waiting in the sleeper's mailbox."""
    stats = rt.statistics()
    return stats.in_flight, stats.mailboxes["sleeper"].depth


@pytest.mark.parametrize("route", [ASK, ASK + "/stream"], ids=["ask", "stream"])
async def test_a_full_entry_mailbox_is_429_with_retry_after_and_nothing_runs(
    tmp_path: Path, route: str
) -> None:
    runtimes: list[Runtime] = []
    audit = MemoryAuditLog()
    async with serving(
        [one_slot(tmp_path)],
        keyring(tmp_path),
        audit=audit,
        observers=lambda _, rt: runtimes.append(rt),
    ) as client:
        async with anyio.create_task_group() as tg:
            answered = await filled(client, runtimes, tg)
            before = runtimes[0].statistics()
            rows = len(audit.records)
            started = anyio.current_time()
            refused = await client.post(route + "?timeout=5", json={}, headers=auth(ALICE))
            waited = anyio.current_time() - started
            after = runtimes[0].statistics()
            new_rows = list(audit.records)[rows:]
        metrics = (await client.get("/metrics")).text
    assert refused.status_code == 429, refused.text
    assert waited < 0.5  # told at once, not after the sleeper made room
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["content-type"] == "application/json"
    body = refused.json()
    assert body["agent"] == "sleeper"
    assert body["error"] == (
        "pipeline 'slow' is busy: the mailbox of its agent 'sleeper' is full "
        "(capacity 1); retry later"
    )
    # Nothing of the refused request ran: not published, no dead letter, no runtime record.
    assert (after.published, after.dead_lettered) == (before.published, before.dead_lettered)
    assert [(r.actor, r.action, r.target) for r in new_rows] == [("genie-serve", "busy", "alice")]
    assert new_rows[0].details == {"path": route, "agent": "sleeper"}
    assert 'genie_serve_rejected_total{reason="busy"} 1.0' in metrics
    assert sorted(answered) == [200, 200]  # the two that got in are answered as usual


async def test_room_made_again_serves_the_next_request(tmp_path: Path) -> None:
    """The refusal holds nothing: once the mailbox has room, the same client is served."""
    runtimes: list[Runtime] = []
    async with serving(
        [one_slot(tmp_path)], keyring(tmp_path), observers=lambda _, rt: runtimes.append(rt)
    ) as client:
        async with anyio.create_task_group() as tg:
            await filled(client, runtimes, tg)
            refused = await client.post(ASK + "/stream", json={}, headers=auth(ALICE))
        served = await client.post(ASK + "/stream", json={}, headers=auth(ALICE))
        stats = runtimes[0].statistics()
    assert refused.status_code == 429
    assert served.status_code == 200
    assert sse(served.text)[-1][2]["status"] == "ok"
    # Three requests in, each published with its reply; the refused one never was.
    assert (stats.published, stats.dead_lettered, stats.in_flight) == (6, 0, 0)


async def test_with_a_store_the_refused_request_leaves_nothing_to_resume(tmp_path: Path) -> None:
    """A refused request was never kept: the store holds nothing of it once the others ended,
    and a restart on the store has no request to resume."""
    runtimes: list[Runtime] = []
    folder = tmp_path / "store"
    settings = ServeSettings(store=folder, store_sync="always")
    async with (
        serving(
            [one_slot(tmp_path)],
            keyring(tmp_path),
            settings,
            observers=lambda _, rt: runtimes.append(rt),
        ) as client,
        anyio.create_task_group() as tg,
    ):
        answered = await filled(client, runtimes, tg)
        refused = await client.post(ASK, json={}, headers=auth(ALICE))
    assert refused.status_code == 429
    assert sorted(answered) == [200, 200]
    store = DeliveryStore(folder / "slow.db")
    try:
        assert (store.pending(), store.requests()) == ([], [])
    finally:
        store.close()
