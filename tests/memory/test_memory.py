"""``ctx.memory``: the four areas on both backends, through a real runtime; every write judged
by the policies before it is stored, reads and writes in the audit log, summaries through the
handler's budgeted model, and a file that outlives its runtime."""

from __future__ import annotations

import math
import sqlite3
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import anyio
import pytest

from genie import (
    AgentOptions,
    BaseAgent,
    Clock,
    ConfigurationError,
    Context,
    DeniedError,
    Limits,
    MemoryArgumentError,
    MemoryAuditLog,
    MemoryDeniedError,
    Message,
    Payload,
    RetryPolicy,
    Runtime,
    TestContext,
    handler,
)
from genie.llm import (
    BudgetExceededError,
    ProviderUnavailableError,
    Request,
    Residency,
    Response,
    ScriptedProvider,
)
from genie.memory import SUMMARY_PROMPT, Episode, HashingEmbedder, Memory, Store, cosine
from genie.memory._backends import Backend, InMemoryBackend, SqliteBackend
from genie.policies import ClassificationCeiling, PIIBlock
from genie.simulation._run import EPOCH
from genie.simulation._virtual import VirtualTimeLoop

Work = Callable[[Context], Awaitable[Any]]
_workers: weakref.WeakKeyDictionary[Runtime, Worker] = weakref.WeakKeyDictionary()


class Go(Payload):
    message_type = "memory_go"


class Done(Payload):
    message_type = "memory_done"
    result: Any = None


class Worker(BaseAgent):
    """Runs the test's ``work`` with its context and answers with what it returned."""

    produces = (Done,)

    def __init__(self, work: Work, id: str = "worker") -> None:
        super().__init__(id)
        self.work = work

    @handler
    async def on_go(self, p: Go, ctx: Context) -> Message:
        return ctx.reply(Done(result=await self.work(ctx)))


async def run(rt: Runtime, work: Work, classification: str = "internal") -> Any:
    """``work``'s result in a handler of ``rt`` (on a request of ``classification``), or the
    reason it failed."""
    worker = _workers.get(rt)
    if worker is None:
        worker = _workers[rt] = Worker(work)
        rt.add(worker)
    worker.work = work
    asked = rt.message(Go(), recipient="worker", classification=classification)
    result = await rt.ask(asked, timeout=10)
    if not result.complete:
        return result.missing[0].reason
    done = result.message.payload
    assert isinstance(done, Done)
    return done.result


def store_of(kind: str, tmp_path: Path, **options: Any) -> Store:
    return Store(path=tmp_path / "memory.db", **options) if kind == "sqlite" else Store(**options)


BACKENDS = pytest.mark.parametrize("kind", ["memory", "sqlite"])


@BACKENDS
async def test_key_values_per_namespace(kind: str, tmp_path: Path) -> None:
    async def work(ctx: Context) -> Any:
        kv = ctx.memory().kv
        await kv.set("prefs", "tone", "brief")
        await kv.set("limits", "tone", {"max": 3})
        first = [await kv.get("prefs", "tone"), await kv.get("limits", "tone")]
        gone = await kv.delete("prefs", "tone")
        return [*first, gone, await kv.get("prefs", "tone"), await kv.delete("prefs", "tone")]

    async with Runtime(memory=store_of(kind, tmp_path)) as rt:
        assert await run(rt, work) == ["brief", {"max": 3}, True, None, False]


@BACKENDS
async def test_episodes_past_the_threshold_are_summarised_through_the_handlers_model(
    kind: str, tmp_path: Path
) -> None:
    model = ScriptedProvider(["turns 1 to 3 summarised", "turns 4 to 6 summarised"])
    store = store_of(kind, tmp_path, threshold=5, summariser=model)

    async def work(ctx: Context) -> Any:
        folded = [await ctx.memory().episodes.append("s1", f"turn {i}") for i in range(1, 9)]
        snap = await ctx.memory().episodes.snapshot("s1")
        other = await ctx.memory().episodes.snapshot("s2")
        return [folded, snap.summary, [e.text for e in snap.recent], other.summary]

    async with Runtime(memory=store) as rt:
        folded, summary, recent, other = await run(rt, work)
    # The sixth turn passes the threshold of 5: its older half (3) is summarised.
    assert folded == [False] * 5 + [True, False, False]
    assert summary == "turns 1 to 3 summarised"
    assert recent == [f"turn {i}" for i in range(4, 9)]
    assert other == ""
    (request,) = model.requests
    assert request.system == SUMMARY_PROMPT
    assert request.max_tokens == 200
    assert request.messages[0].text == "user: turn 1\nuser: turn 2\nuser: turn 3"
    assert request.context.correlation_id  # the handler's ctx.llm gave it the request's context


@BACKENDS
async def test_a_summary_that_fails_keeps_the_turn_once_and_asks_again(
    kind: str, tmp_path: Path
) -> None:
    # The append raised the model's 503 after the turn was kept: the handler was retried, and
    # its retry kept the turn a second time.
    busy = ProviderUnavailableError(provider="s", status=503, request_id=None, excerpt="busy")
    model = ScriptedProvider([busy, "one and two"])
    store = store_of(kind, tmp_path, threshold=2, summariser=model)

    def append(text: str) -> Callable[[Context], Awaitable[Any]]:
        async def work(ctx: Context) -> Any:
            folded = await ctx.memory().episodes.append("s1", text)
            snap = await ctx.memory().episodes.snapshot("s1")
            return [folded, snap.summary, [e.text for e in snap.recent]]

        return work

    async with Runtime(memory=store) as rt:
        _workers[rt] = worker = Worker(append("one"))
        rt.add(worker, options=AgentOptions(retry=RetryPolicy(attempts=3, backoff=0)))
        for text in ("one", "two"):
            await run(rt, append(text))
        unsummarised = await run(rt, append("three"))
        summarised = await run(rt, append("four"))
    assert unsummarised == [False, "", ["one", "two", "three"]]
    assert summarised == [True, "one and two", ["three", "four"]]
    assert len(model.requests) == 2


async def test_a_summary_counts_against_the_requests_token_budget() -> None:
    store = Store(threshold=2, summariser=ScriptedProvider(["a summary"]))

    async def work(ctx: Context) -> Any:
        for i in range(3):
            await ctx.memory().episodes.append("s", f"turn {i}")

    async with Runtime(memory=store, limits=Limits(correlation_tokens=50)) as rt:
        reason = await run(rt, work)
    assert BudgetExceededError.__name__ in reason


def turn(text: str) -> Work:
    """A handler's work: ``text`` appended to session s1, then what the session holds."""

    async def work(ctx: Context) -> Any:
        episodes = ctx.memory().episodes
        await episodes.append("s1", text)
        snap = await episodes.snapshot("s1")
        return [snap.summary, [e.text for e in snap.recent]]

    return work


@BACKENDS
async def test_a_summarys_model_call_is_classified_as_the_turns_it_summarises(
    kind: str, tmp_path: Path
) -> None:
    """A PII turn summarised on a public request: the model is sent PII, so the call is
    classified as the turns are, not as the request that happens to pass the threshold, and
    the turns read for it are judged and audited as a read."""
    model = ScriptedProvider(["a summary"], region="in")
    audit = MemoryAuditLog()
    store = store_of(kind, tmp_path, threshold=2, summariser=model)
    async with Runtime(memory=store, audit=audit) as rt:
        await run(rt, turn("my PAN is ABCDE1234F"), classification="pii")
        await run(rt, turn("hello"), classification="public")
        summary, recent = await run(rt, turn("how are you"), classification="public")
    assert (summary, recent) == ("a summary", ["hello", "how are you"])
    (request,) = model.requests
    assert request.messages[0].text == "user: my PAN is ABCDE1234F"
    assert request.context.classification == "pii"
    reads = [r for r in audit.records if r.action == "memory_read"]
    assert [r.details["reason"] for r in reads][:3] == ["episode s1", "episode s1", "summary s1"]


async def test_pii_turns_are_never_summarised_by_a_model_outside_the_home_region() -> None:
    cloud = ScriptedProvider(["a summary"], region="us")
    store = Store(threshold=2, summariser=Residency(cloud, home_region="in"))
    async with Runtime(memory=store) as rt:
        await run(rt, turn("my PAN is ABCDE1234F"), classification="pii")
        await run(rt, turn("hello"), classification="public")
        reason = await run(rt, turn("how are you"), classification="public")
    assert cloud.requests == []
    assert "ResidencyDeniedError" in reason, reason
    assert 'classification "pii" cannot leave region "in"' in reason
    # The refused summary lost nothing: the turns are all there, unsummarised.
    snap = await store.snapshot("s1")
    assert [e.text for e in snap.recent] == ["my PAN is ABCDE1234F", "hello", "how are you"]


async def test_a_summary_refused_by_residency_is_not_retried_so_the_turn_is_kept_once() -> None:
    """The residency rule refuses the same turns the same way on every attempt: an agent that
    retries its failures does not run the handler again for it (each run would keep its turn
    again), and the handler can catch the refusal as a policy's denial."""
    cloud = ScriptedProvider(["a summary"], region="us")
    store = Store(threshold=2, summariser=Residency(cloud, home_region="in"))
    retry = AgentOptions(retry=RetryPolicy(attempts=3, backoff=0))
    async with Runtime(memory=store) as rt:
        rt.add(worker := Worker(turn("my PAN is ABCDE1234F")), options=retry)
        _workers[rt] = worker  # ``run`` uses it
        await run(rt, turn("my PAN is ABCDE1234F"), classification="pii")
        await run(rt, turn("hello"), classification="public")
        reason = await run(rt, turn("how are you"), classification="public")
    [dead] = rt.dead_letters
    assert dead.attempts == 1, reason
    assert dead.error_type == "ResidencyDeniedError"
    snap = await store.snapshot("s1")
    assert [e.text for e in snap.recent] == ["my PAN is ABCDE1234F", "hello", "how are you"]

    async def caught(ctx: Context) -> Any:
        try:
            await ctx.memory().episodes.append("s1", "and you?")
        except DeniedError as denied:  # any policy's refusal, the residency rule's too
            return denied.policy, denied.reason
        return "summarised"

    async with Runtime(memory=store) as rt:
        policy, why = await run(rt, caught, classification="public")
    assert policy == "residency"
    assert 'classification "pii" cannot leave region "in"' in why


async def test_an_agent_that_may_not_read_the_turns_does_not_summarise_them() -> None:
    """The turns a summary is made of are read for the agent whose append passed the threshold
    (its model is sent them): a ceiling that keeps PII from it refuses the read, audited, no
    model is called and the turns stay as they are."""
    model = ScriptedProvider(["a summary"])
    ceiling = ClassificationCeiling({"writer": "pii", "user": "pii", "memory:default": "pii"})
    audit = MemoryAuditLog()
    store = Store(threshold=2, summariser=model)
    async with Runtime(memory=store, policies=[ceiling], audit=audit) as rt:
        rt.add(Worker(turn("my PAN is ABCDE1234F"), id="writer"))
        asked = rt.message(Go(), recipient="writer", classification="pii")
        assert (await rt.ask(asked, timeout=10)).complete

        async def append(ctx: Context) -> Any:
            return [await ctx.memory().episodes.append("s1", t) for t in ("hello", "bye")]

        assert await run(rt, append) == [False, False]
    assert model.requests == []
    denied = [r for r in audit.records if r.action == "denied" and r.target == "worker"]
    assert [(r.details["message_type"], r.details["reason"]) for r in denied] == [
        ("memory_read", "classification exceeds recipient ceiling")
    ]
    snap = await store.snapshot("s1")
    assert (snap.summary, len(snap.recent)) == ("", 3)


async def test_a_summary_is_judged_and_audited_before_it_is_kept() -> None:
    """The summary is a write, of what the model answered: a policy that refuses it leaves the
    turns as they were (the session stays readable) and the next append asks again."""
    model = ScriptedProvider(
        ["reach the client at bob@example.com", "the client asked about budgets"]
    )
    audit = MemoryAuditLog()
    store = Store(threshold=2, summariser=model)

    async def work(ctx: Context) -> Any:
        episodes = ctx.memory().episodes
        folded = [await episodes.append("s1", f"turn {i} about budgets") for i in range(4)]
        snap = await episodes.snapshot("s1")
        return [folded, snap.summary, [e.text for e in snap.recent]]

    async with Runtime(memory=store, policies=[PIIBlock()], audit=audit) as rt:
        folded, summary, recent = await run(rt, work)
    assert folded == [False, False, False, True]
    assert summary == "the client asked about budgets"
    assert recent == ["turn 2 about budgets", "turn 3 about budgets"]
    assert len(model.requests) == 2
    rows = [(r.actor, r.action, r.details["reason"]) for r in audit.records]
    summaries = [row for row in rows if row[2].startswith("summary") or row[1] == "denied"]
    assert summaries == [
        ("worker", "memory_read", "summary s1"),
        ("pii_block", "denied", "content matched PII pattern: e-mail address"),
        ("worker", "memory_read", "summary s1"),
        ("worker", "memory_write", "summary s1"),
    ]
    denied = next(r for r in audit.records if r.action == "denied")
    assert (denied.target, denied.details["message_type"]) == ("memory:default", "memory_write")


def summary_naming_its_turns(request: Request) -> Response:
    turns = [line.split(": ", 1)[1] for line in request.messages[0].text.splitlines()]
    return Response(text="[" + ",".join(turns) + "]")


class SlowSummariser(ScriptedProvider):
    """Names the turns it summarised, after a while: two stores summarising one session at once
    both read the same older turns."""

    def __init__(self) -> None:
        super().__init__([summary_naming_its_turns])

    async def complete(self, request: Request) -> Response:
        await anyio.sleep(0.05)
        return await super().complete(request)


async def test_two_stores_on_one_file_summarise_one_session_keeping_every_turn_once(
    tmp_path: Path,
) -> None:
    """Two runtimes on one SQLite file append to one session at once, each folding it: a fold
    drops the turns it summarised only if they are still there, so none is lost (dropped, in
    no summary) or summarised twice."""
    path = tmp_path / "memory.db"

    def turns(who: str) -> Work:
        async def work(ctx: Context) -> Any:
            for n in range(10):
                await ctx.memory().episodes.append("s", f"{who}{n}")

        return work

    stores = [Store(path=path, threshold=4, summariser=SlowSummariser()) for _ in "ab"]
    async with (
        Runtime(memory=stores[0]) as a,
        Runtime(memory=stores[1]) as b,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(run, a, turns("A"))
        tg.start_soon(run, b, turns("B"))
    snap = await Store(path=path).snapshot("s")
    summarised = [t for part in snap.summary.splitlines() for t in part.strip("[]").split(",")]
    kept = summarised + [e.text for e in snap.recent]
    assert sorted(kept) == sorted(f"{who}{n}" for who in "AB" for n in range(10)), snap


def open_at_once(path: Path, stores: int = 3) -> list[BaseException]:
    """Open ``stores`` memory stores on the file at ``path`` at the same moment, each from a
    thread of its own; what their opening raised."""
    start = threading.Barrier(stores)
    failed: list[BaseException] = []

    def open_memory() -> None:
        backend = SqliteBackend(path)
        start.wait()
        try:
            backend._in_thread(lambda db: db.execute("SELECT 1"))
        except BaseException as exc:  # every failure is the test's finding
            failed.append(exc)
        finally:
            backend._close()

    threads = [threading.Thread(target=open_memory) for _ in range(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failed


def test_stores_opened_at_once_on_a_new_file_all_open(tmp_path: Path) -> None:
    """SQLite does not wait for a lock to turn a file's journal to WAL: three memory stores
    opening one new file at the same moment (runtimes sharing a memory file, started at once)
    each open, rather than one failing with "database is locked" for its timing alone."""
    failed = [exc for n in range(60) for exc in open_at_once(tmp_path / f"shared-{n}.db")]
    assert failed == []


def test_stores_opened_at_once_on_an_older_file_bring_it_up_to_date_once(
    tmp_path: Path,
) -> None:
    """A file made before a summary kept its classification gains that column when a store
    opens it; three stores opening it at once add it once ("duplicate column name" failed
    the others), and its summaries read as internal."""
    failed: list[BaseException] = []
    for n in range(30):
        path = tmp_path / f"older-{n}.db"
        assert open_at_once(path, stores=1) == []
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO memory_sessions VALUES ('m', 's', 'old summary', 'pii')")
            db.execute("ALTER TABLE memory_sessions DROP COLUMN classification")
        failed += open_at_once(path)
    assert failed == []
    backend = SqliteBackend(tmp_path / "older-0.db")
    snap = anyio.run(backend.session, "m", "s")
    backend._close()
    assert (snap.summary, snap.classification) == ("old summary", "internal")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_fold_of_turns_another_store_folded_first_changes_nothing(
    kind: str, tmp_path: Path
) -> None:
    """Two stores on one backend (a file, or one in-memory backend given to both) read the same
    older turns and both fold them: the second finds them gone and changes nothing."""
    if kind == "sqlite":
        first: Backend = SqliteBackend(tmp_path / "memory.db")
        second: Backend = SqliteBackend(tmp_path / "memory.db")
    else:
        first = second = InMemoryBackend()
    for n in range(6):
        await first.append("m", "s", Episode("user", f"turn {n}"), "internal")
    older = (await first.session("m", "s")).recent[:3]
    await first.fold("m", "s", older, "the first three")
    await second.append("m", "s", Episode("user", "turn 6"), "internal")
    await second.fold("m", "s", older, "the first three, again")
    kept = await second.session("m", "s")
    assert kept.summary == "the first three"
    assert [t.text for t in kept.recent] == ["turn 3", "turn 4", "turn 5", "turn 6"]
    # Turns that are there, but not the oldest, are not dropped either.
    await first.fold("m", "s", kept.recent[1:3], "turns 4 and 5")
    assert await first.session("m", "s") == kept
    for backend in {id(first): first, id(second): second}.values():
        await backend.aclose()


async def test_without_a_model_the_summary_is_each_turns_first_words() -> None:
    async def work(ctx: Context) -> Any:
        for i in range(3):
            await ctx.memory().episodes.append("s", f"turn {i} " + "word " * 30, role="user")
        return (await ctx.memory().episodes.snapshot("s")).summary

    async with Runtime(memory=Store(threshold=2)) as rt:
        summary = await run(rt, work)
    assert summary.startswith("user: turn 0 word word")
    assert summary.endswith("…")


@BACKENDS
async def test_semantic_search_ranks_by_meaning_per_user(kind: str, tmp_path: Path) -> None:
    async def work(ctx: Context) -> Any:
        sem = ctx.memory().semantic
        await sem.add("u1", "str", "suspicious transaction reports go to FIU-IND in 7 days")
        await sem.add("u1", "kyc", "KYC master directions of the RBI", {"source": "rbi"})
        await sem.add("u1", "aa", "account aggregators share financial data with consent")
        await sem.add("u2", "other", "suspicious transaction report deadline")
        hits = await sem.search("u1", "deadline for a suspicious transaction report", k=2)
        return [[h.key for h in hits], hits[0].score > hits[1].score, await sem.search("u3", "x")]

    async with Runtime(memory=store_of(kind, tmp_path)) as rt:
        keys, ordered, nobody = await run(rt, work)
    assert keys[0] == "str"
    assert len(keys) == 2
    assert ordered
    assert nobody == []


@BACKENDS
async def test_an_entrys_meta_changes_only_by_a_judged_write(kind: str, tmp_path: Path) -> None:
    meta: dict[str, Any] = {"tags": ["rbi"]}

    async def work(ctx: Context) -> Any:
        sem = ctx.memory().semantic
        await sem.add("u1", "kyc", "KYC master directions", meta)
        meta["tags"].append("mail alice@example.com")  # the caller's, after the write
        [hit] = await sem.search("u1", "KYC")
        hit.meta["tags"].append("changed by a reader")
        [again] = await sem.search("u1", "KYC")
        return again.meta

    async with Runtime(memory=store_of(kind, tmp_path), policies=[PIIBlock()]) as rt:
        assert await run(rt, work) == {"tags": ["rbi"]}


@BACKENDS
async def test_a_read_is_judged_on_all_it_gives_the_agent(kind: str, tmp_path: Path) -> None:
    store = store_of(kind, tmp_path)
    msg = Runtime().message(Go(), recipient="clerk")
    kept = TestContext("clerk", msg, memory=store)
    # Written where no policy judged it (a unit test, another process with other policies):
    # the address is in the entry's meta, and in the fact's source.
    await kept.memory().semantic.add("u1", "kyc", "KYC checked", {"by": "alice@example.com"})
    await kept.memory().facts.record("u1", "city", "Pune", source="alice@example.com")

    async def work(ctx: Context) -> Any:
        facts = ctx.memory().facts
        reads: dict[str, Callable[[], Awaitable[object]]] = {
            "search": lambda: ctx.memory().semantic.search("u1", "KYC"),
            "current": lambda: facts.current("u1", "city"),
            "current_all": lambda: facts.current_all("u1"),
            "history": lambda: facts.history("u1", "city"),
        }
        said = {}
        for name, read in reads.items():
            try:
                await read()
            except MemoryDeniedError as exc:
                said[name] = exc.policy
            else:
                said[name] = "read"
        return said

    async with Runtime(memory=store, policies=[PIIBlock()]) as rt:
        assert await run(rt, work) == dict.fromkeys(
            ["search", "current", "current_all", "history"], "pii_block"
        )


async def test_the_offline_embedder_is_deterministic_and_normalised() -> None:
    embedder = HashingEmbedder(64)
    (a, b) = await embedder.embed(["reporting deadlines", "reporting deadlines"])
    assert a == b
    assert cosine(a, b) == pytest.approx(1.0)
    assert sum(x * x for x in a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="dimensions must be a whole number from 8 to 65536"):
        HashingEmbedder(2)


@pytest.mark.parametrize("dimensions", ["256", 2.5, True, 10**7])
def test_hashing_dimensions_that_are_no_length_are_named(dimensions: object) -> None:
    # As a pipeline file's `dimensions` are checked: "256" raised a bare TypeError, and ten
    # million buckets were taken, to be allocated at every text embedded.
    with pytest.raises(ValueError, match="dimensions must be a whole number from 8 to 65536"):
        HashingEmbedder(dimensions)  # type: ignore[arg-type]


@BACKENDS
async def test_a_fact_supersedes_the_earlier_one_and_both_stay_in_history(
    kind: str, tmp_path: Path
) -> None:
    async def work(ctx: Context) -> Any:
        facts = ctx.memory().facts
        await facts.record("u1", "risk", "low", confidence=0.6, source="form")
        await ctx.sleep(1)
        await facts.record("u1", "city", "Pune", source="chat")
        await ctx.sleep(1)
        await facts.record("u1", "risk", "moderate", confidence=0.9, source="advisor")
        current = await facts.current("u1", "risk")
        assert current is not None
        return [
            (current.value, current.confidence, current.source),
            [(f.key, f.value) for f in await facts.current_all("u1")],
            [f.value for f in await facts.history("u1", "risk")],
            await facts.current("u2", "risk"),
        ]

    async with Runtime(memory=store_of(kind, tmp_path)) as rt:
        current, everything, history, nobody = await run(rt, work)
    assert current == ("moderate", 0.9, "advisor")
    assert everything == [("city", "Pune"), ("risk", "moderate")]
    assert history == ["low", "moderate"]
    assert nobody is None


@BACKENDS
def test_facts_recorded_at_one_instant_are_current_in_the_order_recorded(
    kind: str, tmp_path: Path
) -> None:
    # On a clock that stands still (a simulation's virtual time, whose agents are given no
    # latency) every fact has one recorded_at: current_all must still give the order they were
    # recorded in. It gave a superseded key's first place, before a key recorded after it.
    async def work(ctx: Context) -> Any:
        facts = ctx.memory().facts
        await facts.record("u1", "city", "Pune")
        await facts.record("u1", "risk", "low")
        await facts.record("u1", "city", "Mumbai")
        return [(f.key, f.value) for f in await facts.current_all("u1")]

    async def main() -> Any:
        async with Runtime(memory=store_of(kind, tmp_path), clock=Clock(EPOCH)) as rt:
            return await run(rt, work)

    everything = anyio.run(main, backend_options={"loop_factory": VirtualTimeLoop})
    assert everything == [("risk", "low"), ("city", "Mumbai")]


async def test_a_write_with_pii_is_denied_before_it_is_stored_and_audited() -> None:
    audit = MemoryAuditLog()

    async def write(ctx: Context) -> Any:
        try:
            await ctx.memory().kv.set("contacts", "alice", "alice@example.com")
        except MemoryDeniedError as exc:
            return [str(exc), exc.policy, exc.direction]
        return "stored"

    async def read(ctx: Context) -> Any:
        return await ctx.memory().kv.get("contacts", "alice")

    async with Runtime(memory=Store(), policies=[PIIBlock()], audit=audit) as rt:
        message, policy, direction = await run(rt, write)
        found = await run(rt, read)
    assert policy == "pii_block"
    assert direction == "out"
    assert message.startswith("memory write to 'default' denied by pii_block:")
    assert found is None  # nothing was kept
    actions = [(r.actor, r.action, r.target) for r in audit.records]
    assert ("pii_block", "denied", "memory:default") in actions
    assert ("worker", "memory_read", "memory:default") in actions


async def test_an_unhandled_denial_fails_the_handler_once_naming_the_policy() -> None:
    async def write(ctx: Context) -> Any:
        await ctx.memory().episodes.append("s", "call me on +91 98200 12345")

    async with Runtime(memory=Store(), policies=[PIIBlock()]) as rt:
        reason = await run(rt, write)
    assert "MemoryDeniedError: memory write to 'default' denied by pii_block" in reason


async def test_writes_and_reads_are_audited_with_their_kind_and_key() -> None:
    audit = MemoryAuditLog()

    async def work(ctx: Context) -> Any:
        await ctx.memory("notes").facts.record("u1", "city", "Pune")
        return (await ctx.memory("notes").facts.current("u1", "city")) is not None

    async with Runtime(memory={"notes": Store()}, audit=audit) as rt:
        assert await run(rt, work) is True
    mine = [r for r in audit.records if r.action.startswith("memory_")]
    assert [(r.actor, r.action, r.target, r.details["reason"]) for r in mine] == [
        ("worker", "memory_write", "memory:notes", "fact u1/city"),
        ("worker", "memory_read", "memory:notes", "fact u1/city"),
    ]


async def test_the_entry_keeps_the_classification_it_was_judged_with() -> None:
    async def work(ctx: Context) -> Any:
        fact = await ctx.memory().facts.record("u1", "income", "12 lakh")
        return fact.classification

    async with Runtime(memory=Store()) as rt:
        rt.add(Worker(work))
        msg = rt.message(Go(), recipient="worker", classification="pii")
        result = await rt.ask(msg, timeout=10)
    assert result.message.payload == Done(result="pii")


async def test_an_unknown_memory_is_named() -> None:
    async def work(ctx: Context) -> Any:
        return await ctx.memory("nope").kv.get("a", "b")

    async with Runtime(memory={"notes": Store()}) as rt:
        reason = await run(rt, work)
    assert "no memory 'nope' in this runtime (declared: notes)" in reason


async def test_two_runtimes_never_share_their_default_memory() -> None:
    async def write(ctx: Context) -> Any:
        await ctx.memory().kv.set("n", "k", "one")

    async def read(ctx: Context) -> Any:
        return await ctx.memory().kv.get("n", "k")

    async with Runtime() as first, Runtime() as second:
        await run(first, write)
        assert await run(first, read) == "one"
        assert await run(second, read) is None


@BACKENDS
async def test_one_store_keeps_one_memory_and_is_refused_under_a_second_name(
    kind: str, tmp_path: Path
) -> None:
    """A store's rows are keyed by the memory's name: one store given under two names (to one
    runtime or two) took the last name given, and both memories read each other's entries."""
    store = store_of(kind, tmp_path)
    with pytest.raises(ConfigurationError) as refused:
        Runtime(memory={"notes": store, "scratch": store})
    assert str(refused.value) == (
        "memory 'scratch': this Store is the memory 'notes' already (of this runtime or "
        "another); a store keeps one memory's entries: give 'scratch' a Store of its own "
        "(two stores may share one file)"
    )

    async def write(ctx: Context) -> Any:
        await ctx.memory("notes").kv.set("n", "k", "a note")

    async def read(ctx: Context) -> Any:
        return await ctx.memory("notes").kv.get("n", "k")

    # Under the name it has, it is shared, as a store given to two runtimes is.
    async with (
        Runtime(memory={"notes": store}) as first,
        Runtime(memory={"notes": store}) as second,
    ):
        await run(first, write)
        assert await run(second, read) == "a note"
    with pytest.raises(ConfigurationError, match="memory 'private': this Store is the memory"):
        Runtime(memory={"private": store})
    with pytest.raises(ConfigurationError, match="memory 'default': this Store is the memory"):
        TestContext("worker", Runtime().message(Go(), recipient="worker"), memory=store)


async def test_a_file_outlives_its_runtime(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"

    async def write(ctx: Context) -> Any:
        mem = ctx.memory()
        await mem.kv.set("prefs", "tone", "brief")
        await mem.episodes.append("s1", "hello")
        await mem.semantic.add("u1", "k", "reporting deadlines")
        await mem.facts.record("u1", "city", "Pune")

    async def read(ctx: Context) -> Any:
        mem = ctx.memory()
        city = await mem.facts.current("u1", "city")
        return [
            await mem.kv.get("prefs", "tone"),
            [e.text for e in (await mem.episodes.snapshot("s1")).recent],
            [h.key for h in await mem.semantic.search("u1", "deadlines")],
            None if city is None else city.value,
        ]

    async with Runtime(memory=Store(path=path)) as rt:
        await run(rt, write)
    async with Runtime(memory=Store(path=path)) as rt:
        assert await run(rt, read) == ["brief", ["hello"], ["k"], "Pune"]


async def test_a_sqlite_store_without_a_path_shares_the_durable_store_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "durable.db"

    async def write(ctx: Context) -> Any:
        await ctx.memory().kv.set("n", "k", [1, 2])

    async def read(ctx: Context) -> Any:
        return await ctx.memory().kv.get("n", "k")

    async with Runtime(memory=Store("sqlite"), store=path) as rt:
        await run(rt, write)
    async with Runtime(memory=Store("sqlite"), store=path) as rt:
        assert await run(rt, read) == [1, 2]


async def test_a_store_in_one_durable_file_is_refused_by_a_runtime_of_another(
    tmp_path: Path,
) -> None:
    # Store("sqlite") keeps its tables in the durable store file of the runtime it is given.
    # Given to a second runtime with a durable file of its own, it kept the second's entries
    # in the first's file, silently: the second runtime's store file never held its memory.
    store = Store("sqlite")
    async with Runtime(memory=store, store=tmp_path / "a.db"):
        with pytest.raises(ConfigurationError, match=r"durable store file .*a\.db already"):
            Runtime(memory=store, store=tmp_path / "b.db")
        with pytest.raises(ConfigurationError, match=r"durable store file .*a\.db already"):
            Runtime(memory=store)
    # The refused runtime took no lock on its file: a runtime may use it at once.
    async with Runtime(memory=Store("sqlite"), store=tmp_path / "b.db"):
        pass


async def test_a_memory_mistake_leaves_the_durable_store_file_free(tmp_path: Path) -> None:
    # The durable store's lock was taken before the memory was checked: a runtime refused for
    # its memory held the file, while its traceback lived, and left its lock file unclosed.
    with pytest.raises(ConfigurationError, match="memory name must not be empty"):
        Runtime(memory={"": Store()}, store=tmp_path / "run.db")
    async with Runtime(store=tmp_path / "run.db"):
        pass


def test_bad_store_settings_are_named() -> None:
    with pytest.raises(ConfigurationError, match="the sqlite backend needs a path"):
        Runtime(memory=Store("sqlite"))
    with pytest.raises(ConfigurationError, match="threshold must be a whole number of at least 2"):
        Store(threshold=1)
    with pytest.raises(ConfigurationError, match="a path is for the sqlite backend"):
        Store("memory", path="x.db")


def test_a_summariser_or_embedder_that_is_none_is_named_when_the_store_is_made() -> None:
    # A stack's name was taken as the summariser, and an embedder's as the embedder: the first
    # summary or semantic add then failed in a handler with an AttributeError.
    with pytest.raises(
        ConfigurationError,
        match=r"memory summariser must be a genie.llm Provider \(name, region, complete, "
        r"stream\), not str \('fast'\)",
    ):
        Store(summariser="fast")  # type: ignore[arg-type]
    with pytest.raises(
        ConfigurationError,
        match=r"memory embedder must be a genie.memory Embedder \(name, embed\), not str",
    ):
        Store(embedder="hashing")  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", ["20", float("nan"), float("inf"), 2.5, None])
def test_a_threshold_that_is_no_count_of_turns_is_named(threshold: object) -> None:
    # "20" raised a bare TypeError; NaN was taken, and as no count is at most NaN, every
    # append summarised the session (an empty older half, a summary call each time).
    with pytest.raises(ConfigurationError, match="threshold must be a whole number of at least 2"):
        Store(threshold=threshold)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (
            "notes\ud800",
            "memory name 'notes\\ud800' is not valid UTF-8 text: it holds a lone "
            "surrogate (U+D800 at index 5)",
        ),
        (
            "",
            "a memory name must not be empty (ctx.memory(name) names the store; one store "
            "given alone is 'default')",
        ),
        (1, "a memory name must be text, not int (1)"),
    ],
)
def test_a_memory_name_no_store_can_keep_is_refused_when_given(
    name: Any, problem: str, tmp_path: Path
) -> None:
    """SQLite keeps the name in every row (it raised UnicodeEncodeError at the first write),
    NATS in every key and the policies judge writes for ``memory:NAME``: a name that cannot be
    one is a configuration mistake, named when the runtime is made."""
    stores = {"fine": Store(), name: Store(path=tmp_path / "memory.db")}
    with pytest.raises(ConfigurationError) as refused:
        Runtime(memory=stores)
    assert str(refused.value) == f"Runtime(memory=...): {problem}"
    msg = Runtime().message(Go(), recipient="worker")
    with pytest.raises(ConfigurationError) as refused:
        TestContext("worker", msg, memory=stores)
    assert str(refused.value) == f"TestContext(memory=...): {problem}"


class HalfStore:
    """Meant as a store, but with only some of a store's calls."""

    def bind(self, name: str, durable_path: str | None) -> None: ...

    async def aclose(self) -> None: ...

    def __repr__(self) -> str:
        return "HalfStore()"


STORE_IS = (
    "must be a genie.memory.Store (or another object with every genie.memory.MemoryStore call), not"
)


@pytest.mark.parametrize(
    ("memory", "problem"),
    [
        ({"notes": "memory.db"}, f"memory 'notes' {STORE_IS} str ('memory.db')"),
        ("sqlite", f"the memory store {STORE_IS} str ('sqlite')"),
        (
            {"notes": Store},
            f"memory 'notes' {STORE_IS} the class Store itself (make one: Store(...))",
        ),
        (
            {"notes": HalfStore()},
            f"memory 'notes' {STORE_IS} HalfStore (HalfStore()): it has no summariser, kv_get, "
            "kv_set, kv_delete, append, snapshot, add, search, record, current, current_all, "
            "history",
        ),
    ],
)
def test_a_memory_that_is_no_store_is_refused_when_given(memory: Any, problem: str) -> None:
    """It failed at the first handler call that reached it, with an AttributeError."""
    with pytest.raises(ConfigurationError) as refused:
        Runtime(memory=memory)
    assert str(refused.value) == f"Runtime(memory=...): {problem}"
    msg = Runtime().message(Go(), recipient="worker")
    with pytest.raises(ConfigurationError) as refused:
        TestContext("worker", msg, memory=memory)
    assert str(refused.value) == f"TestContext(memory=...): {problem}"


class OwnStore:
    """A program's own store: not a ``genie.memory.Store``, but with every call of one."""

    def __init__(self) -> None:
        self.kept = Store()

    def __getattr__(self, call: str) -> Any:
        return getattr(self.kept, call)


async def test_a_store_of_a_programs_own_with_every_call_is_taken() -> None:
    async def work(ctx: Context) -> Any:
        await ctx.memory("notes").kv.set("n", "k", "kept")
        return await ctx.memory("notes").kv.get("n", "k")

    async with Runtime(memory={"notes": OwnStore()}) as rt:
        assert await run(rt, work) == "kept"


async def test_a_name_utf8_holds_is_any_text(tmp_path: Path) -> None:
    name = "notes of Zo\u00eb \U0001f600"

    async def work(ctx: Context) -> Any:
        await ctx.memory(name).kv.set("n", "k", "kept")
        return await ctx.memory(name).kv.get("n", "k")

    async with Runtime(memory={name: Store(path=tmp_path / "memory.db")}) as rt:
        assert await run(rt, work) == "kept"


async def test_a_test_context_uses_a_store_ungoverned() -> None:
    msg = Runtime().message(Go(), recipient="worker")
    ctx = TestContext("worker", msg, memory=Store())
    await ctx.memory().kv.set("n", "k", "alice@example.com")  # no policies here
    assert await ctx.memory().kv.get("n", "k") == "alice@example.com"
    with pytest.raises(ConfigurationError, match="no memory 'x' in TestContext"):
        ctx.memory("x")


async def test_a_ceiling_decides_which_memory_may_hold_pii() -> None:
    async def work(ctx: Context) -> Any:
        await ctx.memory("vault").kv.set("clients", "u1", "income 12 lakh")
        try:
            await ctx.memory("default").kv.set("clients", "u1", "income 12 lakh")
        except MemoryDeniedError as exc:
            return [exc.policy, exc.reason]
        return "kept in both"

    ceiling = ClassificationCeiling({"worker": "pii", "user": "pii", "memory:vault": "pii"})
    stores = {"default": Store(), "vault": Store()}
    async with Runtime(memory=stores, policies=[ceiling]) as rt:
        rt.add(Worker(work))
        result = await rt.ask(rt.message(Go(), recipient="worker", classification="pii"))
    assert result.message.payload == Done(
        result=["classification", "classification exceeds recipient ceiling"]
    )


# --- text UTF-8 cannot encode -----------------------------------------------------------------
BAD = "ab\ud800"  # a lone surrogate: Python text, but no UTF-8, so no file or bucket holds it
Call = Callable[[Memory], Awaitable[Any]]
CALLS: list[tuple[str, str, Call]] = [
    ("kv.get", "namespace", lambda m: m.kv.get(BAD, "k")),
    ("kv.get", "key", lambda m: m.kv.get("n", BAD)),
    ("kv.set", "namespace", lambda m: m.kv.set(BAD, "k", 1)),
    ("kv.set", "key", lambda m: m.kv.set("n", BAD, 1)),
    ("kv.set", "value", lambda m: m.kv.set("n", "k", BAD)),
    ("kv.delete", "namespace", lambda m: m.kv.delete(BAD, "k")),
    ("kv.delete", "key", lambda m: m.kv.delete("n", BAD)),
    ("episodes.append", "session", lambda m: m.episodes.append(BAD, "hello")),
    ("episodes.append", "text", lambda m: m.episodes.append("s1", BAD)),
    ("episodes.append", "role", lambda m: m.episodes.append("s1", "hello", role=BAD)),
    ("episodes.snapshot", "session", lambda m: m.episodes.snapshot(BAD)),
    ("semantic.add", "user", lambda m: m.semantic.add(BAD, "k", "text")),
    ("semantic.add", "key", lambda m: m.semantic.add("u1", BAD, "text")),
    ("semantic.add", "text", lambda m: m.semantic.add("u1", "k", BAD)),
    ("semantic.search", "user", lambda m: m.semantic.search(BAD, "text")),
    ("semantic.search", "query", lambda m: m.semantic.search("u1", BAD)),
    ("facts.record", "user", lambda m: m.facts.record(BAD, "city", "Pune")),
    ("facts.record", "key", lambda m: m.facts.record("u1", BAD, "Pune")),
    ("facts.record", "value", lambda m: m.facts.record("u1", "city", BAD)),
    ("facts.record", "source", lambda m: m.facts.record("u1", "city", "Pune", source=BAD)),
    ("facts.current", "user", lambda m: m.facts.current(BAD, "city")),
    ("facts.current", "key", lambda m: m.facts.current("u1", BAD)),
    ("facts.current_all", "user", lambda m: m.facts.current_all(BAD)),
    ("facts.history", "user", lambda m: m.facts.history(BAD, "city")),
    ("facts.history", "key", lambda m: m.facts.history("u1", BAD)),
]


def nested(levels: int) -> list[Any]:
    """A list ``levels`` deep."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def itself() -> list[Any]:
    """A list that holds itself."""
    value: list[Any] = []
    value.append(value)
    return value


NOT_JSON: list[tuple[str, str, Call, str]] = [
    ("kv.set", "value", lambda m: m.kv.set("n", "k", math.nan), "has no JSON form"),
    # An integer Python will not write as text, and nesting past what a reader recurses into,
    # raised a bare ValueError and RecursionError, which an agent's retry policy retried.
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", {"n": 10**5000}),
        "holds an integer of more than 4300 digits",
    ),
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", nested(100_000)),
        "is nested deeper than 64 levels",
    ),
    ("kv.set", "value", lambda m: m.kv.set("n", "k", nested(65)), "is nested deeper than 64"),
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", itself()),
        "has no JSON form: it holds itself",
    ),
    (
        "semantic.add",
        "meta",
        lambda m: m.semantic.add("u1", "k", "t", {"deep": nested(100_000)}),
        "is nested deeper than 64 levels",
    ),
    ("kv.set", "value", lambda m: m.kv.set("n", "k", {"x": [math.inf]}), "has no JSON form"),
    ("semantic.add", "meta", lambda m: m.semantic.add("u1", "k", "t", {"w": -math.inf}), "has"),
    (
        "kv.set",
        "key",
        lambda m: m.kv.set("n", 5, "v"),  # type: ignore[arg-type]
        "is not text (a str): got int",
    ),
    (
        "facts.record",
        "value",
        lambda m: m.facts.record("u1", "age", 41),  # type: ignore[arg-type]
        "is not text",
    ),
]


@BACKENDS
async def test_values_json_cannot_hold_and_keys_that_are_no_text_are_refused(
    kind: str, tmp_path: Path
) -> None:
    """NaN and infinity were stored (no JSON has them, as memory's values are said to be) and a
    key of 5 kept as another kind of key: each is refused, nothing stored or judged."""
    audit = MemoryAuditLog()
    refused: list[Any] = []

    async def work(ctx: Context) -> Any:
        mem = ctx.memory()
        for _, _, call, _ in NOT_JSON:
            try:
                await call(mem)
            except MemoryArgumentError as exc:
                refused.append((exc.call, exc.argument, exc.problem))
            else:
                refused.append("not refused")
        return await mem.kv.get("n", "k")

    async with Runtime(memory=store_of(kind, tmp_path), audit=audit) as rt:
        before = len(audit.records)
        assert await run(rt, work) is None  # nothing was kept
    assert [(c, a) for c, a, _ in refused] == [(c, a) for c, a, _, _ in NOT_JSON]
    for (_, _, problem), (_, _, _, said) in zip(refused, NOT_JSON, strict=True):
        assert problem.startswith(said), problem
    # Judged (and so audited) are only the reads at the end: nothing refused was judged.
    judged = [r.details["reason"] for r in list(audit.records)[before:]]
    assert judged == ["kv n/k"]


@BACKENDS
async def test_text_utf8_cannot_encode_is_refused_naming_the_argument(
    kind: str, tmp_path: Path
) -> None:
    """SQLite raised a bare UnicodeEncodeError from its worker thread, the in-memory store kept
    what the file could not (and a policy failed on it, closed): every call now refuses it
    first, on every backend, with nothing judged, stored or audited."""
    audit = MemoryAuditLog()
    refused: list[Any] = []

    async def work(ctx: Context) -> Any:
        # An entry of each area, so a read that went through would find something.
        mem = ctx.memory()
        await mem.kv.set("n", "k", "kept")
        await mem.episodes.append("s1", "kept")
        await mem.semantic.add("u1", "k", "kept")
        await mem.facts.record("u1", "city", "kept")
        for _, _, call in CALLS:
            try:
                await call(mem)
            except MemoryArgumentError as exc:
                refused.append((exc.call, exc.argument, str(exc)))
            else:
                refused.append("not refused")
        return "done"

    async with Runtime(memory=store_of(kind, tmp_path), audit=audit) as rt:
        before = len(audit.records)
        assert await run(rt, work) == "done"
    assert refused == [
        (
            call,
            argument,
            f"memory 'default': {call}: argument {argument!r} is not valid UTF-8 text: "
            "'ab\\ud800' holds a lone surrogate (U+D800 at index 2)",
        )
        for call, argument, _ in CALLS
    ]
    # The four writes above, and no write or read of the refused calls.
    records = list(audit.records)[before:]
    judged = [r.details["reason"] for r in records if r.action.startswith("memory_")]
    assert judged == ["kv n/k", "episode s1", "semantic u1#k", "fact u1/city"]


@BACKENDS
async def test_a_value_is_refused_naming_where_it_holds_such_text(
    kind: str, tmp_path: Path
) -> None:
    async def work(ctx: Context) -> Any:
        mem, said = ctx.memory(), []
        for call in (
            mem.kv.set("n", "k", {"notes": ["fine", {"by": BAD}]}),
            mem.kv.set("n", "k", {"tags": {BAD: 1}}),
            mem.semantic.add("u1", "k", "text", {"source": BAD}),
            mem.semantic.add("u1", "k", "text", {BAD: "x"}),
        ):
            try:
                await call
            except MemoryArgumentError as exc:
                said.append(exc.problem)
        return said

    async with Runtime(memory=store_of(kind, tmp_path)) as rt:
        said = await run(rt, work)
    holds = "'ab\\ud800', holds a lone surrogate (U+D800 at index 2)"
    assert said == [
        f"is not valid UTF-8 text: value['notes'][1]['by'], {holds}",
        f"is not valid UTF-8 text: a key of value['tags'], {holds}",
        f"is not valid UTF-8 text: meta['source'], {holds}",
        f"is not valid UTF-8 text: a key of meta, {holds}",
    ]


# --- a value JSON would read back as another, or cannot hold: named with where it is -----------
NOT_TEXT = "which JSON keeps as text (another key)"
WHERE: list[tuple[str, str, Call, str]] = [
    # A key that is not text was stored as its JSON text: {1: "a"} read back as {"1": "a"}.
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", {1: "a"}),
        f"has a key that is not text (a str) in value: got int, {NOT_TEXT}",
    ),
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", {"a": [{"b": {True: 1}}]}),
        f"has a key that is not text (a str) in value['a'][0]['b']: got bool, {NOT_TEXT}",
    ),
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", {"a": {None: 1}}),
        f"has a key that is not text (a str) in value['a']: got NoneType, {NOT_TEXT}",
    ),
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", {"a": {2.5: 1}}),
        f"has a key that is not text (a str) in value['a']: got float, {NOT_TEXT}",
    ),
    (
        "semantic.add",
        "meta",
        lambda m: m.semantic.add("u1", "k", "t", {3: "x"}),  # type: ignore[dict-item]
        f"has a key that is not text (a str) in meta: got int, {NOT_TEXT}",
    ),
    (
        "semantic.add",
        "meta",
        lambda m: m.semantic.add("u1", "k", "t", {"w": [{3: "x"}]}),
        f"has a key that is not text (a str) in meta['w'][0]: got int, {NOT_TEXT}",
    ),
    # What was refused without saying where, or (a set) with a bare TypeError, names it now.
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", {"x": [1, math.nan]}),
        "has no JSON form: it holds NaN or infinity (nan at value['x'][1])",
    ),
    (
        "semantic.add",
        "meta",
        lambda m: m.semantic.add("u1", "k", "t", {"w": -math.inf}),
        "has no JSON form: it holds NaN or infinity (-inf at meta['w'])",
    ),
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", {"tags": {"a", "b"}}),
        "has no JSON form: it holds a value of type set (at value['tags']); JSON holds "
        "mappings with text keys, lists, text, finite numbers, booleans and None",
    ),
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", {"n": [10**5000]}),
        "holds an integer of more than 4300 digits (at value['n'][0]), which Python does not "
        "write as text (sys.get_int_max_str_digits())",
    ),
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", {"loop": itself()}),
        "has no JSON form: it holds itself (at value['loop'][0])",
    ),
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", {"deep": nested(64)}),  # 65 levels with the mapping
        "is nested deeper than 64 levels of lists and mappings "
        "(at value['deep'][0][0][0][0][0]...)",
    ),
    (
        "semantic.add",
        "meta",
        lambda m: m.semantic.add("u1", "k", "t", {"deep": nested(100_000)}),
        "is nested deeper than 64 levels of lists and mappings (at meta['deep'][0][0][0][0][0]...)",
    ),
    (
        "kv.set",
        "value",
        lambda m: m.kv.set("n", "k", {"notes": ["a", "b", BAD]}),
        "is not valid UTF-8 text: value['notes'][2], 'ab\\ud800', holds a lone surrogate "
        "(U+D800 at index 2)",
    ),
]


@BACKENDS
async def test_a_value_json_would_change_or_cannot_hold_is_refused_naming_where(
    kind: str, tmp_path: Path
) -> None:
    """Each is a ``MemoryArgumentError`` (a ``ValueError``, never retried) naming the argument
    and where in it the problem is; nothing is judged or kept."""
    audit = MemoryAuditLog()
    refused: list[Any] = []

    async def work(ctx: Context) -> Any:
        mem = ctx.memory()
        for _, _, call, _ in WHERE:
            try:
                await call(mem)
            except MemoryArgumentError as exc:
                refused.append((exc.call, exc.argument, exc.problem))
            else:
                refused.append("not refused")
        return [await mem.kv.get("n", "k"), await mem.semantic.search("u1", "t")]

    async with Runtime(memory=store_of(kind, tmp_path), audit=audit) as rt:
        before = len(audit.records)
        assert await run(rt, work) == [None, []]  # nothing was kept
    assert refused == [(c, a, said) for c, a, _, said in WHERE]
    judged = [r.details["reason"] for r in list(audit.records)[before:]]
    assert judged == ["kv n/k", "semantic u1"]


@BACKENDS
async def test_what_json_carries_is_kept_and_a_tuple_is_read_back_as_a_list(
    kind: str, tmp_path: Path
) -> None:
    """JSON has no tuple: one is kept as the list JSON writes (as a tool's arguments are
    sent), and read back as that list. The deepest value allowed and a list held twice (no
    cycle) are kept."""
    shared = [1, 2]
    kept = [
        ({"pair": (1, "a"), "empty": ()}, {"pair": [1, "a"], "empty": []}),
        ((1, 2), [1, 2]),
        (nested(64), nested(64)),
        ({"a": shared, "b": shared}, {"a": [1, 2], "b": [1, 2]}),
        ({"n": 10**4300 - 1, "x": -0.0, "t": True, "z": None}, None),
    ]

    async def work(ctx: Context) -> Any:
        mem, read = ctx.memory(), []
        for value, _ in kept:
            await mem.kv.set("n", "k", value)
            read.append(await mem.kv.get("n", "k"))
        return read

    async with Runtime(memory=store_of(kind, tmp_path)) as rt:
        read = await run(rt, work)
    assert read == [value if back is None else back for value, back in kept]


async def test_such_text_fails_a_handler_once_and_a_reply_quoting_it_passes_the_policies() -> None:
    """The error is never retried (the same call would be refused again), and its text quotes
    the argument escaped: a handler that replies with it is not denied by the policies."""

    async def unhandled(ctx: Context) -> Any:
        await ctx.memory().kv.set("contacts", BAD, "x")

    async def handled(ctx: Context) -> Any:
        try:
            await ctx.memory().kv.set("contacts", BAD, "x")
        except ValueError as exc:  # a MemoryArgumentError is a ValueError too
            return str(exc)
        return "stored"

    retry = AgentOptions(retry=RetryPolicy(attempts=3, backoff=0))
    async with Runtime(memory=Store(), policies=[PIIBlock()]) as rt:
        rt.add(worker := Worker(unhandled), options=retry)
        _workers[rt] = worker  # ``run`` uses it
        reason = await run(rt, unhandled)
        said = await run(rt, handled)
    [dead] = rt.dead_letters
    assert dead.attempts == 1
    assert dead.error_type == "MemoryArgumentError"
    assert reason == dead.reason
    assert reason == (
        "MemoryArgumentError: memory 'default': kv.set: argument 'key' is not valid UTF-8 "
        "text: 'ab\\ud800' holds a lone surrogate (U+D800 at index 2)"
    )
    assert said == reason.removeprefix("MemoryArgumentError: ")


async def test_a_k_that_is_no_count_or_a_confidence_out_of_range_is_refused_naming_it() -> None:
    async def work(ctx: Context) -> Any:
        mem, said = ctx.memory(), []
        for call in (
            mem.semantic.search("u1", "text", k=0),
            # not a count: 2.5 and "3" failed in the store (TypeError), True found one hit
            mem.semantic.search("u1", "text", k=cast(Any, 2.5)),
            mem.semantic.search("u1", "text", k=cast(Any, "3")),
            mem.semantic.search("u1", "text", k=True),
            mem.facts.record("u1", "city", "Pune", confidence=1.5),
            mem.facts.record("u1", "city", "Pune", confidence=float("nan")),
            # not a number: "0.5" failed at the comparison (TypeError), True was kept as a bool
            mem.facts.record("u1", "city", "Pune", confidence=cast(Any, "0.5")),
            mem.facts.record("u1", "city", "Pune", confidence=True),
        ):
            try:
                await call
            except MemoryArgumentError as exc:
                said.append(str(exc))
        return [said, await mem.facts.current("u1", "city")]

    async with Runtime(memory=Store()) as rt:
        said, kept = await run(rt, work)
    k_is = "memory 'default': semantic.search: argument 'k' must be a whole number of at least 1"
    confidence_is = (
        "memory 'default': facts.record: argument 'confidence' must be a number between 0 and 1"
    )
    assert said == [
        f"{k_is}, not 0",
        f"{k_is}, not 2.5",
        f"{k_is}, not '3'",
        f"{k_is}, not True",
        f"{confidence_is}, not 1.5",
        f"{confidence_is}, not nan",
        f"{confidence_is}, not '0.5'",
        f"{confidence_is}, not True",
    ]
    assert kept is None


async def test_a_whole_number_confidence_is_kept_as_the_number_it_is() -> None:
    async def work(ctx: Context) -> Any:
        mem = ctx.memory()
        await mem.facts.record("u1", "city", "Pune", confidence=1)
        return await mem.facts.current("u1", "city")

    async with Runtime(memory=Store()) as rt:
        fact = await run(rt, work)
    assert fact.confidence == 1.0
    assert type(fact.confidence) is float


async def test_a_test_context_refuses_such_text_as_the_runtime_does() -> None:
    ctx = TestContext("worker", Runtime().message(Go(), recipient="worker"), memory=Store())
    with pytest.raises(MemoryArgumentError, match=r"kv\.set: argument 'key' is not valid UTF-8"):
        await ctx.memory().kv.set("n", BAD, 1)


# --- a read is judged on what was stored --------------------------------------------------------
READS: dict[str, Work] = {
    "kv.get": lambda ctx: ctx.memory("vault").kv.get("clients", "u1"),
    "episodes.snapshot": lambda ctx: ctx.memory("vault").episodes.snapshot("s1"),
    "semantic.search": lambda ctx: ctx.memory("vault").semantic.search("u1", "income"),
    "facts.current": lambda ctx: ctx.memory("vault").facts.current("u1", "income"),
    "facts.current_all": lambda ctx: ctx.memory("vault").facts.current_all("u1"),
    "facts.history": lambda ctx: ctx.memory("vault").facts.history("u1", "income"),
}


async def fill_the_vault(ctx: Context) -> None:
    vault = ctx.memory("vault")
    await vault.kv.set("clients", "u1", "income 12 lakh")
    for turn in range(3):  # past the threshold of 2: the first turns are in the summary
        await vault.episodes.append("s1", f"income 12 lakh, turn {turn}")
    await vault.semantic.add("u1", "income", "income 12 lakh")
    await vault.facts.record("u1", "income", "12 lakh")


async def read_the_vault(ctx: Context) -> dict[str, str]:
    said = {}
    for name, read in READS.items():
        try:
            await read(ctx)
        except MemoryDeniedError as exc:
            said[name] = exc.reason
        else:
            said[name] = "read"
    return said


@BACKENDS
@pytest.mark.parametrize("written", ["pii", "internal"])
async def test_a_read_is_judged_on_the_classification_its_entries_were_written_with(
    kind: str, written: str, tmp_path: Path
) -> None:
    # The writer may hold PII, and so may the vault; the reader, on an internal request, may
    # not: what it reads is the data as it was written, not its own request's.
    ceiling = ClassificationCeiling({"writer": "pii", "user": "pii", "memory:vault": "pii"})
    audit = MemoryAuditLog()
    stores = {"vault": store_of(kind, tmp_path, threshold=2)}
    async with Runtime(memory=stores, policies=[ceiling], audit=audit) as rt:
        rt.add(Worker(fill_the_vault, id="writer"))
        asked = rt.message(Go(), recipient="writer", classification=written)
        assert (await rt.ask(asked, timeout=10)).complete
        said = await run(rt, read_the_vault)
    if written == "pii":
        assert said == dict.fromkeys(READS, "classification exceeds recipient ceiling")
        denials = [r for r in audit.records if r.action == "denied" and r.target == "worker"]
        assert len(denials) == len(READS)
    else:
        assert said == dict.fromkeys(READS, "read")


async def test_a_read_that_finds_nothing_is_judged_as_the_request() -> None:
    ceiling = ClassificationCeiling({"memory:vault": "pii"})
    async with Runtime(memory={"vault": Store()}, policies=[ceiling]) as rt:
        assert await run(rt, read_the_vault) == dict.fromkeys(READS, "read")


async def test_a_summary_in_a_file_from_before_its_classification_was_kept_is_internal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "memory.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE memory_sessions (memory TEXT, session TEXT, summary TEXT)")
        db.execute("INSERT INTO memory_sessions VALUES ('default', 's1', 'an old summary')")
    db.close()
    ctx = TestContext(
        "worker", Runtime().message(Go(), recipient="worker"), memory=Store(path=path)
    )
    snap = await ctx.memory().episodes.snapshot("s1")
    assert (snap.summary, snap.classification) == ("an old summary", "internal")


# --- every call refuses an argument of a wrong type, naming it ----------------------------------
class Text(str):
    """A str subclass that says itself otherwise: an enum's member with str mixed in is one."""

    def __str__(self) -> str:
        return f"Text({super().__str__()})"  # and so f"{text}" says


class Kind(str, Enum):  # noqa: UP042 (a StrEnum says its value; this mix says "Kind.NOTES")
    NOTES = "notes"  # the gate saw "Kind.NOTES", the file kept "notes"


class Meta(Mapping[str, Any]):
    """A mapping that is not a dict (as a program's own read-only view is)."""

    def __init__(self, **items: Any) -> None:
        self._items = items

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


HUGE = "x" * 1_000_000  # quoted whole, it would be the message
Invoke = Callable[[Context, dict[str, Any]], Awaitable[Any]]
# Each call with arguments it takes, by name.
SIGNATURES: list[tuple[str, dict[str, Any], Invoke]] = [
    ("ctx.memory", {"name": "default"}, lambda ctx, a: ctx.memory(**a).kv.get("n", "k")),
    ("kv.get", {"namespace": "n", "key": "k"}, lambda ctx, a: ctx.memory().kv.get(**a)),
    (
        "kv.set",
        {"namespace": "n", "key": "k", "value": "v"},
        lambda ctx, a: ctx.memory().kv.set(**a),
    ),
    ("kv.delete", {"namespace": "n", "key": "k"}, lambda ctx, a: ctx.memory().kv.delete(**a)),
    (
        "episodes.append",
        {"session": "s1", "text": "hello", "role": "user"},
        lambda ctx, a: ctx.memory().episodes.append(**a),
    ),
    ("episodes.snapshot", {"session": "s1"}, lambda ctx, a: ctx.memory().episodes.snapshot(**a)),
    (
        "semantic.add",
        {"user": "u1", "key": "k", "text": "t", "meta": {"a": 1}},
        lambda ctx, a: ctx.memory().semantic.add(**a),
    ),
    (
        "semantic.search",
        {"user": "u1", "query": "t", "k": 5},
        lambda ctx, a: ctx.memory().semantic.search(**a),
    ),
    (
        "facts.record",
        {"user": "u1", "key": "city", "value": "Pune", "confidence": 0.9, "source": "s"},
        lambda ctx, a: ctx.memory().facts.record(**a),
    ),
    (
        "facts.current",
        {"user": "u1", "key": "city"},
        lambda ctx, a: ctx.memory().facts.current(**a),
    ),
    ("facts.current_all", {"user": "u1"}, lambda ctx, a: ctx.memory().facts.current_all(**a)),
    (
        "facts.history",
        {"user": "u1", "key": "city"},
        lambda ctx, a: ctx.memory().facts.history(**a),
    ),
]
WRONG_TEXT: list[Any] = [
    None,
    5,
    2.5,
    True,
    b"text",
    ["text"],
    {"text": "t"},
    object(),
    Meta(t="t"),
]
# What is wrong for an argument that is not text (by call and argument), and how the refusal
# begins.
WRONG_FOR: dict[str, tuple[list[Any], str]] = {
    "kv.set value": (
        [b"text", object(), Meta(a=1), {"a": object()}, {"a", "b"}],
        "has no JSON form: it holds a value of type ",
    ),
    # A list of pairs, or of two-letter strings, was kept as the dict they make; 0, False, ""
    # and [] as no meta; the rest failed inside dict() with a bare TypeError or ValueError.
    "semantic.add meta": (
        [5, 2.5, True, False, 0, "", [], b"ab", ["ab"], [("a", 1)], "ab", Text("ab"), HUGE],
        "is not a mapping (a dict, or another collections.abc.Mapping): got ",
    ),
    "semantic.search k": (
        [None, 0, 2.5, True, b"3", [3], {"k": 3}, object(), "3", Text("3"), HUGE, Meta(k=3)],
        "must be a whole number of at least 1, not ",
    ),
    "facts.record confidence": (
        [None, 5, -0.5, math.nan, True, b"1", [1], {"c": 1}, "0.5", Text("0.5"), HUGE, Meta(c=1)],
        "must be a number between 0 and 1, not ",
    ),
}


def wrong_calls() -> list[tuple[str, str, Any, Invoke, dict[str, Any], str]]:
    """Each call with one argument wrong: call, argument, value, the call, its arguments and how
    the refusal begins."""
    cases = []
    for call, right, invoke in SIGNATURES:
        for argument in right:
            values, said = WRONG_FOR.get(
                f"{call} {argument}", (WRONG_TEXT, "is not text (a str): got ")
            )
            for value in values:
                begins = said + type(value).__name__ if said.endswith("got ") else said
                cases.append((call, argument, value, invoke, {**right, argument: value}, begins))
    return cases


def plain(value: Any) -> list[str]:
    """Where ``value`` holds text that is not exactly a str (a subclass kept as it was given)."""
    if isinstance(value, str):
        return [] if type(value) is str else [repr(value)]
    if isinstance(value, Mapping):
        return [w for k, v in value.items() for w in plain(k) + plain(v)]
    if isinstance(value, list | tuple):
        return [w for v in value for w in plain(v)]
    if hasattr(value, "__slots__") or hasattr(value, "__dict__"):
        return [
            w
            for field in vars(type(value)).get("__annotations__", {})
            for w in plain(getattr(value, field))
        ]
    return []


@BACKENDS
async def test_every_call_refuses_an_argument_of_a_wrong_type_naming_it(
    kind: str, tmp_path: Path
) -> None:
    """Each call, each argument, each wrong type: a ``MemoryArgumentError`` naming the memory,
    the call and the argument, in a message of a line (a huge value is not quoted whole), with
    nothing judged or kept. A str subclass is text and a ``Mapping`` a meta: taken, and kept as
    the plain text and dict they hold, which the gate judges and every backend reads back."""
    audit = MemoryAuditLog()
    store = store_of(kind, tmp_path)
    cases = wrong_calls()
    wrong: list[Any] = []

    async def refused(ctx: Context) -> Any:
        for call, argument, value, invoke, given, begins in cases:
            seen = repr(value)[:40]
            try:
                await invoke(ctx, given)
            except MemoryArgumentError as exc:
                said = (exc.memory, exc.call, exc.argument)
                memory = None if call == "ctx.memory" else "default"
                if said != (memory, call, argument) or not exc.problem.startswith(begins):
                    wrong.append((call, argument, seen, said, exc.problem))
                elif len(str(exc)) > 200:
                    wrong.append((call, argument, seen, "said at length", len(str(exc))))
            except Exception as exc:
                wrong.append((call, argument, seen, type(exc).__name__, str(exc)[:200]))
            else:
                wrong.append((call, argument, seen, "not refused"))
        try:
            ctx.memory(HUGE)
        except ConfigurationError as exc:
            return len(str(exc))
        return "no refusal"

    async with Runtime(memory=store, audit=audit) as rt:
        before = len(audit.records)
        said = await run(rt, refused)
        print(*wrong, sep="\n")  # TEMP
        assert wrong == []
        assert said < 200  # a name it has not: said, cut
        assert [r for r in list(audit.records)[before:] if r.action.startswith("memory_")] == []
        assert await store.kv_get("n", "k") is None
        assert (await store.snapshot("s1")).recent == ()
        assert await store.search("u1", "t", 5) == []
        assert await store.current_all("u1") == []

    async def taken(ctx: Context) -> Any:
        mem = ctx.memory(Text("default"))
        n, k = Kind.NOTES, Text("k")
        await mem.kv.set(n, k, {Text("a"): [Text("b")]})
        await mem.kv.set("n", HUGE, HUGE)
        await mem.episodes.append(n, Text("hello"), role=Text("user"))
        await mem.semantic.add(n, k, Text("text"), meta=Meta(source=Text("s")))
        await mem.semantic.add(n, "k2", "text", meta=MappingProxyType({"b": 2}))
        await mem.semantic.add(n, "k3", "text", meta=None)
        fact = await mem.facts.record(n, k, Text("Pune"), confidence=1, source=Text("s"))
        read = [
            mem.name,
            await mem.kv.get("notes", "k"),
            await mem.kv.get("n", HUGE) == HUGE,
            (await mem.episodes.snapshot(Text("notes"))).recent,
            [(h.key, h.text, dict(h.meta)) for h in await mem.semantic.search(n, k, k=3)],
            fact,
            await mem.facts.current("notes", "k"),
            await mem.facts.history(n, k),
            await mem.facts.current_all(n),
        ]
        wrong.extend(plain(read))
        return [*read[:3], [(e.role, e.text) for e in read[3]], sorted(read[4])]

    async with Runtime(memory=store, audit=audit) as rt:
        before = len(audit.records)
        assert await run(rt, taken) == [
            "default",
            {"a": ["b"]},
            True,
            [("user", "hello")],
            [("k", "text", {"source": "s"}), ("k2", "text", {"b": 2}), ("k3", "text", {})],
        ]
        reasons = [r.details["reason"] for r in list(audit.records)[before:]]
    assert wrong == []
    # The gate judged what was kept: the text, not what the subclass says of itself.
    assert not [r for r in reasons if "Text(" in r or "Kind." in r], reasons
    assert {"kv notes/k", "episode notes", "semantic notes#k", "fact notes/k"} <= set(reasons)
