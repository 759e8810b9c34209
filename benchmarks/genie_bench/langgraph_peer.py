"""LangGraph running the same workloads (``langgraph``).

Imported only when ``langgraph`` is installed (the ``bench`` extra). As its documentation writes
a map-reduce: a conditional edge from ``START`` returns one ``Send`` per agent to the worker
node (with that agent's index), each worker returns its reply, and the ``replies`` channel's
reducer (``operator.add``) gathers the N of them into the final state ``ainvoke`` returns. A
compiled graph without a checkpointer runs requests concurrently. The chain is a sequence of
one node per agent (``add_sequence``), the recursion limit raised to the chain's length.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

from langgraph.graph import START, StateGraph
from langgraph.types import Send
from langgraph.version import __version__ as version

from .workloads import Ask, Gathered, Hop, Implementation, Reply, Request, _check

__all__ = ["PEER", "version"]


class FanState(TypedDict):
    request: Request
    replies: Annotated[list[Reply], operator.add]


class WorkerState(TypedDict):
    request: Request
    agent: int


class ChainState(TypedDict):
    hop: Hop


def _dispatch(n: int) -> Any:
    def dispatch(state: FanState) -> list[Send]:
        return [Send("worker", {"request": state["request"], "agent": i}) for i in range(n)]

    return dispatch


async def _worker(state: WorkerState) -> dict[str, list[Reply]]:
    request = state["request"]
    return {"replies": [Reply(seq=request.seq, agent=state["agent"], blob=request.blob)]}


async def _relay(state: ChainState) -> ChainState:
    hop = state["hop"]
    return {"hop": Hop(n=hop.n + 1, blob=hop.blob)}


@asynccontextmanager
async def fanout(n: int, blob: str) -> AsyncIterator[Ask]:
    builder = StateGraph(FanState)
    builder.add_node("worker", _worker)
    builder.add_conditional_edges(START, _dispatch(n), ["worker"])
    graph = builder.compile()
    seq = itertools.count()

    async def ask() -> Gathered:
        request = Request(seq=next(seq), blob=blob)
        state = await graph.ainvoke({"request": request, "replies": []})
        return request, state["replies"]

    yield ask


@asynccontextmanager
async def chain(agents: int, blob: str) -> AsyncIterator[Ask]:
    builder = StateGraph(ChainState)
    builder.add_sequence([(f"a{i}", _relay) for i in range(agents)])
    builder.add_edge(START, "a0")
    graph = builder.compile()
    config: Any = {"recursion_limit": agents + 1}

    async def ask() -> None:
        state = await graph.ainvoke({"hop": Hop(n=0, blob=blob)}, config)
        _check(state["hop"].n, agents, "langgraph hops")

    yield ask


PEER = Implementation(
    "langgraph",
    f"LangGraph {version}: a Send per agent from START to a worker node, the replies gathered "
    "by the state's operator.add reducer",
    fanout,
    chain,
)
