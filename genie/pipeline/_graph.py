"""The routing graph of a pipeline: who can send which type to whom, what is reachable from
the entry, and the text and Mermaid drawings of ``genie graph``."""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Edge", "Graph", "Node"]

CALLER_OUTPUT = "(output)"
# The approval desk the runtime adds when a pipeline asks for approvals: it takes each request
# nobody routes elsewhere and answers whoever asked with the person's decision.
APPROVAL_DESK = "(approvals)"
_ASKED = "genie.approval_request"
_DECIDED = "genie.approval_decision"


@dataclass(frozen=True)
class Node:
    """An agent, a declared gather or a workflow. ``consumes`` None means any type;
    ``sends_to`` pairs a produced type with a fixed recipient (a gather's emit, a workflow's
    steps)."""

    id: str
    kind: str
    consumes: frozenset[str] | None
    produces: frozenset[str]
    sends_to: tuple[tuple[str, str], ...] = ()
    passes_through: bool = False  # re-emits what it receives (the simulation helpers)
    forwards_to: tuple[str, ...] = ()  # fixed recipients of everything it emits


@dataclass(frozen=True)
class Edge:
    source: str
    type: str
    target: str


class Graph:
    def __init__(
        self,
        nodes: Mapping[str, Node],
        routes: Mapping[str, Sequence[str]],
        subscriptions: Mapping[str, Sequence[str]],
        fallbacks: Mapping[str, str],
        entry: Edge,
        output: str,
    ) -> None:
        self.nodes = dict(nodes)
        self.routes = routes
        self.subscriptions = subscriptions
        self.fallbacks = fallbacks
        self.entry = entry
        self.output = output

    def recipients(self, type_name: str) -> list[str]:
        """Routes first, then subscribers, without repeats (the runtime's union)."""
        out = list(self.routes.get(type_name, ()))
        for agent_id, patterns in self.subscriptions.items():
            if agent_id not in out and any(fnmatch.fnmatchcase(type_name, p) for p in patterns):
                out.append(agent_id)
        return out

    def _out(self, node: Node, type_name: str) -> list[Edge]:
        fixed = [to for sent, to in node.sends_to if sent == type_name]
        if fixed:
            return [Edge(node.id, type_name, to) for to in fixed]
        targets = list(node.forwards_to) or self.recipients(type_name)
        if type_name == _ASKED and not targets:
            return [Edge(node.id, _ASKED, APPROVAL_DESK), Edge(APPROVAL_DESK, _DECIDED, node.id)]
        edges = [Edge(node.id, type_name, t) for t in targets]
        if type_name == self.output:
            edges.append(Edge(node.id, type_name, CALLER_OUTPUT))
        return edges

    def _walk(
        self, start: list[tuple[str, str]] | None = None, stop: str | None = None
    ) -> tuple[list[Edge], set[str], set[tuple[str, str]]]:
        """The edges a run can take from the entry (or from the deliveries ``start``, without
        passing through ``stop``), following (node, type) pairs so that pass-through agents
        forward what they receive; the nodes reached; the deliveries met."""
        edges: dict[Edge, None] = {}
        if start is None:
            edges[self.entry] = None
            start = [(self.entry.target, self.entry.type)]
            start += [(r, self.entry.type) for r in self.recipients(self.entry.type)]
        reached: set[str] = set()
        seen: set[tuple[str, str]] = set()
        todo = deque(start)
        while todo:
            node_id, type_name = todo.popleft()
            node = self.nodes.get(node_id)
            if node is None or (node_id, type_name) in seen or node_id == stop:
                continue
            seen.add((node_id, type_name))
            reached.add(node_id)
            produced = {type_name} if node.passes_through else node.produces
            for out_type in sorted(produced):
                for edge in self._out(node, out_type):
                    edges.setdefault(edge)
                    todo.append((edge.target, out_type))
            fallback = self.fallbacks.get(node_id)
            if fallback is not None:
                edges.setdefault(Edge(node_id, "(on failure)", fallback))
                todo.append((fallback, type_name))
        return list(edges), reached, seen

    def feeds(self, gather: str, by_sender: bool) -> dict[tuple[str, str], frozenset[str]]:
        """For each delivery a run can make, (agent, type): the parts of ``gather`` (their
        types, or senders with ``by_sender``) it leads to; lost, they will not come that way."""
        out: dict[tuple[str, str], frozenset[str]] = {}
        for pair in self._walk()[2]:
            edges = self._walk([pair], stop=gather)[0]
            parts = {e.source if by_sender else e.type for e in edges if e.target == gather}
            if parts:
                out[pair] = frozenset(parts)
        return out

    def edges(self) -> list[Edge]:
        """The edges from the entry, then those of agents the entry does not reach."""
        edges, reached, _ = self._walk()
        for node in self.nodes.values():
            if node.id not in reached:
                edges += [e for t in sorted(node.produces) for e in self._out(node, t)]
        return edges

    def reachable(self) -> tuple[set[str], set[str]]:
        """The nodes and the message types a run can reach from the entry."""
        edges, reached, _ = self._walk()
        return reached, {e.type for e in edges if not e.type.startswith("(")}

    def output_path(self) -> tuple[int, list[str]] | None:
        """The hops of the output on the shortest way from the entry to the caller, and the
        agents on that way (the entry's recipient first, the output's producer last); None
        when there is none. Each agent on it is one hop of the output message (each handler's
        message is one more than the one it handled), but a fallback handles its agent's
        delivery: no hop. The entry's own message is not the output: an agent must produce
        it."""
        start = [(self.entry.target, self.entry.type)]
        start += [(r, self.entry.type) for r in self.recipients(self.entry.type)]
        # 0-1 breadth first over deliveries (node, type): a fallback costs no hop.
        came_from: dict[tuple[str, str], tuple[str, str] | None] = {}
        hops: dict[tuple[str, str], int] = {}
        todo: deque[tuple[tuple[str, str], tuple[str, str] | None, int]] = deque(
            (pair, None, 1) for pair in start
        )
        while todo:
            pair, parent, n = todo.popleft()
            if pair in hops or pair[0] not in self.nodes:
                continue
            hops[pair], came_from[pair] = n, parent
            node = self.nodes[pair[0]]
            produced = {pair[1]} if node.passes_through else node.produces
            for out_type in sorted(produced):
                for edge in self._out(node, out_type):
                    if edge.target == CALLER_OUTPUT:
                        path: list[str] = []
                        at: tuple[str, str] | None = pair
                        while at is not None:
                            path.append(at[0])
                            at = came_from[at]
                        return n, path[::-1]
                    todo.append(((edge.target, out_type), pair, n + 1))
            fallback = self.fallbacks.get(pair[0])
            if fallback is not None:
                todo.appendleft(((fallback, pair[1]), pair, n))
        return None

    def cycle(self, among: set[str]) -> list[str] | None:
        """A cycle of agents among ``among``, as a path that returns to its start."""
        adjacent: dict[str, list[str]] = {}
        for e in self.edges():
            if e.source in among and e.target in among:
                adjacent.setdefault(e.source, []).append(e.target)
        state: dict[str, int] = {}
        path: list[str] = []

        def visit(n: str) -> list[str] | None:
            state[n] = 1
            path.append(n)
            for m in adjacent.get(n, ()):
                if state.get(m) == 1:
                    return [*path[path.index(m) :], m]
                if m not in state:
                    found = visit(m)
                    if found:
                        return found
            state[n] = 2
            path.pop()
            return None

        for n in sorted(among):
            if n not in state:
                found = visit(n)
                if found:
                    return found
        return None

    # --- drawings ----------------------------------------------------------------------------
    def text(self) -> str:
        width = max(len(e.source) for e in self.edges())
        return "".join(f"{e.source:<{width}} --{e.type}--> {e.target}\n" for e in self.edges())

    def mermaid(self) -> str:
        ids = {name: f"n{i}" for i, name in enumerate(self._names())}
        lines = ["flowchart LR"]
        for name, key in ids.items():
            outside = (self.entry.source, CALLER_OUTPUT, APPROVAL_DESK)
            shape = f'(["{name}"])' if name in outside else f'["{name}"]'
            if name in self.nodes and self.nodes[name].kind == "gather":
                shape = f'{{{{"{name}"}}}}'
            lines.append(f"  {key}{shape}")
        for e in self.edges():
            arrow = "-.->" if e.type.startswith("(") else "-->"
            lines.append(f'  {ids[e.source]} {arrow}|"{e.type}"| {ids[e.target]}')
        return "\n".join(lines) + "\n"

    def _names(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.edges():
            seen.setdefault(e.source)
            seen.setdefault(e.target)
        return list(seen)
