"""Memory in a NATS KV bucket (``NatsTransport.memory``) against a real ``nats-server`` on
127.0.0.1: every area shared by two processes' connections and kept across a restart of both
the runtime and the broker, appends from two processes at once losing no turn, a session
summarised by two at once folded once, any text as a key, governance as in one process, and
the shipped research pipeline remembering across ``genie run --nats`` and a ``genie worker``."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest

from genie import BaseAgent, Context, Message, Payload, Runtime, handler
from genie._errors import ConfigurationError
from genie.memory import Episode, MemoryDeniedError, Store
from genie.nats import NatsMemory
from genie.nats._server import LocalNatsServer
from genie.pipeline import load_pipeline
from genie.policies import ClassificationCeiling, load_policy_file

from ..conftest import requires
from ..memory.test_memory import READS, Worker, fill_the_vault, read_the_vault
from ..memory.test_memory import Go as Asked
from ..memory.test_memory import run as run_by_worker
from .test_nats import GENIE, Workers
from .test_nats import server as server
from .test_nats import workers as workers

ROOT = Path(__file__).parents[2]
RESEARCH = ROOT / "config" / "pipelines" / "research.yaml"
BUCKET = "GENIE_TEST_MEMORY"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


@asynccontextmanager
async def connected(url: str, bucket: str = BUCKET) -> AsyncIterator[NatsMemory]:
    """The memory bucket as one process sees it: a connection of its own."""
    nc = await nats.connect(url)
    memory = NatsMemory(bucket)
    try:
        await memory.bind(nc.jetstream())
        yield memory
    finally:
        with anyio.CancelScope(shield=True):
            await nc.close()


class Go(Payload):
    message_type = "go"


class Done(Payload):
    message_type = "done"
    found: str


class Remembering(BaseAgent):
    """Runs ``work`` with its context and replies with what it returned, as JSON."""

    produces = (Done,)

    def __init__(self, work: Callable[[Context], Awaitable[Any]]) -> None:
        super().__init__("rememberer")
        self.work = work

    @handler
    async def on_go(self, payload: Go, ctx: Context) -> Message:
        return ctx.reply(Done(found=json.dumps(await self.work(ctx))))


async def run(store: Store, work: Callable[[Context], Awaitable[Any]], **runtime: Any) -> Any:
    async with Runtime([Remembering(work)], memory=store, **runtime) as rt:
        result = await rt.ask(rt.message(Go(), recipient="rememberer"), timeout=10)
        assert result.message is not None, result
        payload = result.message.payload
        assert isinstance(payload, Done)
        return json.loads(payload.found)


async def write_everything(ctx: Context) -> None:
    mem = ctx.memory()
    await mem.kv.set("prefs", "tone", {"style": "brief"})
    await mem.episodes.append("s1", "hello")
    await mem.facts.record("u1", "city", "Mumbai", source="chat")
    await mem.facts.record("u1", "city", "Pune", source="chat")
    await mem.facts.record("u1", "employer", "Acme", source="form")
    await mem.semantic.add("u1", "str", "suspicious transaction reports: 7 days")
    await mem.semantic.add("u1", "ctr", "cash transaction reports: by the 15th")
    await mem.semantic.add("u10", "other", "another user's note on transaction reports")


async def read_everything(ctx: Context) -> Any:
    mem = ctx.memory()
    city = await mem.facts.current("u1", "city")
    return {
        "tone": await mem.kv.get("prefs", "tone"),
        "turns": [e.text for e in (await mem.episodes.snapshot("s1")).recent],
        "city": None if city is None else city.value,
        "history": [f.value for f in await mem.facts.history("u1", "city")],
        "current": sorted(f.key for f in await mem.facts.current_all("u1")),
        "found": [h.key for h in await mem.semantic.search("u1", "when is an STR due?", k=5)],
    }


async def test_two_processes_share_every_area_and_it_outlives_them_and_the_broker(
    server: LocalNatsServer,
) -> None:
    async with connected(server.url) as first:
        await run(Store(first), write_everything)
    async with connected(server.url) as second:  # another process: its own connection
        seen = await run(Store(second), read_everything)
    expected = {
        "tone": {"style": "brief"},
        "turns": ["hello"],
        "city": "Pune",
        "history": ["Mumbai", "Pune"],
        "current": ["city", "employer"],
        "found": ["str", "ctr"],  # by meaning; never the entries of "u10"
    }
    assert seen == expected
    server.restart()  # SIGKILL: the bucket is on the broker's disk
    async with connected(server.url) as third:
        assert await run(Store(third), read_everything) == expected


async def test_appends_from_two_processes_at_once_lose_no_turn(server: LocalNatsServer) -> None:
    async with connected(server.url) as a, connected(server.url) as b:
        stores = (Store(a, threshold=1000), Store(b, threshold=1000))

        async def talk(store: Store, who: str) -> None:
            for n in range(25):
                await store.append("s", Episode(who, f"{who} {n}"), "internal", None)

        async with anyio.create_task_group() as tg:
            for store, who in zip(stores, ("a", "b"), strict=True):
                tg.start_soon(talk, store, who)
        snapshot = await stores[0].snapshot("s")
    texts = [t.text for t in snapshot.recent]
    assert sorted(texts) == sorted(f"{w} {n}" for w in "ab" for n in range(25))
    for who in "ab":  # each process's turns in the order it appended them
        assert [t for t in texts if t.startswith(who)] == [f"{who} {n}" for n in range(25)]


async def test_a_session_summarised_by_two_processes_at_once_is_folded_once(
    server: LocalNatsServer,
) -> None:
    async with connected(server.url) as a, connected(server.url) as b:
        for n in range(6):
            await a.append("m", "s", Episode("user", f"turn {n}"), "internal")
        older = (await a.session("m", "s")).recent[:3]
        # Both read the same turns and summarised them; both fold.
        await a.fold("m", "s", older, "the first three")
        await b.fold("m", "s", older, "the first three, again")
        kept = await b.session("m", "s")
        assert kept.summary == "the first three"
        assert [t.text for t in kept.recent] == ["turn 3", "turn 4", "turn 5"]
        # Through the store: past its threshold the older half goes, once.
        store = Store(b, threshold=4)
        store.bind("m", None)
        assert not await store.append("s", Episode("user", "turn 6"), "internal", None)
        assert await store.append("s", Episode("user", "turn 7"), "internal", None)
        snapshot = await store.snapshot("s")
        assert snapshot.summary == "the first three\nuser: turn 3 user: turn 4"
        assert [t.text for t in snapshot.recent] == ["turn 5", "turn 6", "turn 7"]


async def test_any_text_names_one_entry(server: LocalNatsServer) -> None:
    names = ["", ".", "a.b", "*", ">", "spaces and ünïcode", "a/b=c", "x" * 300]
    async with connected(server.url) as memory:
        for n, name in enumerate(names):
            await memory.kv_set(name, name, name, json.dumps(n), "internal")
        for n, name in enumerate(names):
            assert await memory.kv_get(name, name, name) == (json.dumps(n), "internal")
        assert await memory.kv_get("", "", "x") is None
        assert await memory.kv_delete("a.b", "a.b", "a.b")
        assert not await memory.kv_delete("a.b", "a.b", "a.b")
        assert await memory.kv_get("a.b", "a.b", "a.b") is None
        assert await memory.kv_get(".", ".", ".") == (json.dumps(1), "internal")  # kept
        # A memory's name keeps its entries apart from another's in the one bucket.
        await memory.add("m1", "u", ("k", "t", {}, [1.0], "internal"))
        assert await memory.rows("m2", "u") == []
        assert [r[0] for r in await memory.rows("m1", "u")] == ["k"]


async def test_a_write_is_governed_as_in_one_process(server: LocalNatsServer) -> None:
    policies = load_policy_file(ROOT / "config" / "policies" / "ai-policy.yaml").policies

    async def leak(ctx: Context) -> Any:
        try:
            await ctx.memory().kv.set("contacts", "ravi", "ravi.k@example.com")
        except MemoryDeniedError as denied:
            return denied.policy
        return None

    async def peek(ctx: Context) -> Any:
        return await ctx.memory().kv.get("contacts", "ravi")

    async with connected(server.url) as memory:
        assert await run(Store(memory), leak, policies=policies) == "pii_block"
        assert await run(Store(memory), peek) is None  # nothing was stored


async def test_a_read_is_judged_on_the_classification_it_was_written_with(
    server: LocalNatsServer,
) -> None:
    ceiling = ClassificationCeiling({"writer": "pii", "user": "pii", "memory:vault": "pii"})
    async with connected(server.url) as memory:
        vault = Store(memory, threshold=2)
        async with Runtime(memory={"vault": vault}, policies=[ceiling]) as rt:
            rt.add(Worker(fill_the_vault, id="writer"))
            asked = rt.message(Asked(), recipient="writer", classification="pii")
            assert (await rt.ask(asked, timeout=10)).complete
            said = await run_by_worker(rt, read_the_vault)
    assert said == dict.fromkeys(READS, "classification exceeds recipient ceiling")


async def test_a_bucket_not_connected_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"memory bucket B: NatsTransport\.connect"):
        await NatsMemory("B").kv_get("m", "n", "k")


def test_a_nats_memory_outside_a_scale_out_is_named(tmp_path: Path) -> None:
    pipeline = load_pipeline(RESEARCH, variables={"MEMORY": "nats"})
    with pytest.raises(ConfigurationError) as caught:
        pipeline.runtime()
    assert str(caught.value) == (
        f"{RESEARCH}: memory.research.backend: nats is the memory the processes of a "
        "scale-out share: run the pipeline with genie run --nats URL and genie worker --nats URL"
    )


@requires("mcp", extra="mcp")  # the pipeline calls the catalogue's MCP server too
async def test_research_remembers_across_runs_in_the_namespaces_bucket(
    server: LocalNatsServer, workers: Workers
) -> None:
    common = ["--nats", server.url, "--set", "MEMORY=nats"]
    workers.start([os.fspath(GENIE), "worker", os.fspath(RESEARCH), *common])
    runs = []
    for _ in range(2):
        with anyio.fail_after(90):
            out = await anyio.run_process([GENIE, "run", RESEARCH, *common, "--json"], check=False)
        assert out.returncode == 0, out.stderr.decode()
        runs.append(json.loads(out.stdout))
    # (The worker's scripted model goes on through its script: the briefs differ.)
    assert [r["status"] for r in runs] == ["ok", "ok"]
    # What the worker's deep_research kept, read by a third process (the runs name no user).
    async with connected(server.url, "GENIE_RESEARCH_MEMORY") as seen:
        store = Store(seen)
        store.bind("research", None)
        facts = await store.history("anonymous", "last_research_question")
        snapshot = await store.snapshot("anonymous")
    assert [f.source for f in facts] == ["deep_research"] * 2
    assert [t.role for t in snapshot.recent] == ["user", "deep_research"] * 2
