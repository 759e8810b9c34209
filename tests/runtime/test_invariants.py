"""What docs/architecture.md states about the message path, read from the source itself.

Each concept of the local message path has one body that every path calls: the ledger's
counts, the one routing entry point, the one push into a mailbox, the one place a handler is
called. Speed passes once copied these bodies into their callers; these tests read the code
(``ast``) so that such a copy fails here, whatever the other tests say about its behaviour.

Every module of genie is read, ``genie/nats/`` included: a transport between processes
records outcomes through the runtime's host (``genie/_runtime/host.py``), which calls these
same bodies.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import genie

ROOT = Path(genie.__file__).parent

# The ledger's counters (the accounting identity and the counts beside it), and the
# correlation's, which the identity keeps per request.
LEDGER_COUNTERS = frozenset(
    {
        "published",
        "delivered",
        "_delivered",
        "handled",
        "_handled",
        "collected",
        "denied",
        "dead_lettered",
        "shed",
        "in_flight",
        "unrouted",
        "retries",
        "fallbacks",
        "taps_denied",
        "tap_errors",
        "cut_short",
    }
)
CORRELATION_COUNTERS = frozenset({"in_flight", "deliveries"})
# A mailbox's token counts: ``scheduled <= len(queue)``, ``busy <= max_concurrency``.
TOKEN_COUNTS = frozenset({"scheduled", "active", "busy", "reserved"})


class Site:
    """Where a piece of code is: its file (relative to genie/) and its enclosing function."""

    def __init__(self, path: str, function: str, node: ast.AST) -> None:
        self.path = path
        self.function = function
        self.node = node

    @property
    def where(self) -> str:
        return f"{self.path}:{self.function}"

    def __repr__(self) -> str:
        return f"{self.where} (line {getattr(self.node, 'lineno', '?')})"


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@functools.cache
def _walk() -> tuple[Site, ...]:
    """Every node of genie's source, with its enclosing function."""
    return tuple(_nodes())


def _nodes() -> Iterator[Site]:
    for rel, tree in _modules():
        stack: list[tuple[ast.AST, str]] = [(tree, "<module>")]
        while stack:
            node, function = stack.pop()
            for child in ast.iter_child_nodes(node):
                name = function
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = child.name if function == "<module>" else f"{function}.{child.name}"
                yield Site(rel, name, child)
                stack.append((child, name))


def _written(node: ast.AST) -> Iterator[ast.Attribute]:
    """The attributes an assignment writes (``x.a = ``, ``x.a += ``, ``x.a[k] += ``)."""
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    while targets:
        target = targets.pop()
        if isinstance(target, ast.Tuple | ast.List):
            targets.extend(target.elts)
        elif isinstance(target, ast.Subscript):
            targets.append(target.value)
        elif isinstance(target, ast.Attribute):
            yield target


def _writes(attrs: frozenset[str], owner: str) -> list[Site]:
    """Writes of ``attrs`` on an object whose expression names ``owner`` (``self.ledger``,
    ``ledger``, ``rt._ledger``; ``corr``)."""
    found = []
    for site in _walk():
        for target in _written(site.node):
            if target.attr in attrs and owner in ast.unparse(target.value).lower():
                found.append(site)
    return found


def _calls(predicate: object) -> list[Site]:
    assert callable(predicate)
    return [s for s in _walk() if isinstance(s.node, ast.Call) and predicate(s.node)]


def _method_calls(name: str) -> list[Site]:
    return _calls(lambda call: isinstance(call.func, ast.Attribute) and call.func.attr == name)


def test_only_the_ledger_writes_its_counters() -> None:
    """docs/architecture.md: "the accounting identity in one class"."""
    sites = _writes(LEDGER_COUNTERS, "ledger")
    assert sites == [], f"ledger counters written outside genie/_runtime/ledger.py: {sites}"
    inside = [s for s in _writes(LEDGER_COUNTERS, "self") if s.path == "_runtime/ledger.py"]
    assert {s.function.split(".")[0] for s in inside} == {"Ledger"}


def test_only_the_ledger_counts_a_correlations_deliveries() -> None:
    sites = [
        s
        for s in _writes(CORRELATION_COUNTERS, "corr")
        if s.where != "_runtime/correlator.py:_Correlation.__init__"
    ]
    assert {s.where.split(":")[0] for s in sites} == {"_runtime/ledger.py"}, sites


def test_one_function_calls_an_agents_handler() -> None:
    """docs/architecture.md: the supervisor is "the only place a handler is called"."""
    # Names bound to a ``BaseAgent`` handler: a local taken from a mailbox's handler table.
    bound = {
        (s.path, s.function, target.id)
        for s in _walk()
        if isinstance(s.node, ast.Assign) and "handlers.get(" in ast.unparse(s.node.value)
        for target in s.node.targets
        if isinstance(target, ast.Name)
    }

    def calls_handler(site: Site) -> bool:
        call = site.node
        if not isinstance(call, ast.Call):
            return False
        func = call.func
        # ``<...>.agent.handle(...)``: an agent's ``handle``
        if isinstance(func, ast.Attribute) and func.attr == "handle":
            return ast.unparse(func.value).endswith("agent")
        # ``getattr(<...>.agent, name)(...)``: a ``BaseAgent`` handler looked up by name
        if (
            isinstance(func, ast.Call)
            and isinstance(func.func, ast.Name)
            and func.func.id == "getattr"
            and len(func.args) == 2
            and ast.unparse(func.args[0]).endswith("agent")
        ):
            return True
        # ``handler(payload, ctx)``: a ``BaseAgent`` handler from the table, already bound
        return isinstance(func, ast.Name) and (site.path, site.function, func.id) in bound

    sites = [s for s in _walk() if calls_handler(s)]
    assert bound, "the runner no longer takes handlers from the table: update this test"
    assert {s.where for s in sites} == {"_runtime/delivery.py:DeliveryRunner.run"}, sites
    # ... and at one place in it: the first attempt, each retry and a fallback's alike.
    assert len(sites) == 2  # ``agent.handle(...)`` or the bound handler
    lines = {s.node.lineno for s in sites}  # type: ignore[attr-defined]
    assert max(lines) - min(lines) <= 3, lines


def test_retries_are_decided_in_one_place() -> None:
    """Whether a failed delivery is tried again (retry policy, backoff, breaker) is
    ``DeliveryRunner._again``'s to say; what happens when it is not, ``_give_up``'s."""
    assert {s.where for s in _method_calls("should_retry")} == {
        "_runtime/delivery.py:DeliveryRunner._again"
    }
    assert {s.where for s in _method_calls("_give_up")} == {
        "_runtime/delivery.py:DeliveryRunner.run"
    }


def test_one_body_queues_into_a_mailbox() -> None:
    """Every delivery enters a mailbox by ``Mailbox.push``; the transports call it (the local
    one's ``put`` and ``put_held``, NATS's ``_queue`` for a delivery its consumer took)."""
    appends = [
        s
        for s in _method_calls("append")
        if ast.unparse(s.node.func.value).split(".")[-1] == "queue"  # type: ignore[attr-defined]
    ]
    assert {s.where for s in appends} == {"_runtime/local/mailbox.py:Mailbox.push"}, appends
    pushers = {s.where for s in _method_calls("push")}
    assert pushers == {
        "_runtime/local/transport.py:LocalTransport.put",
        "_runtime/local/transport.py:LocalTransport.put_held",
        "nats/_transport.py:NatsTransport._queue",
    }


def test_only_the_mailbox_and_the_runner_keep_its_token_counts() -> None:
    """``scheduled``, ``active`` and ``reserved`` change in ``Mailbox``'s own methods (``push``
    hands out tokens, the slots of outside publishers) and in ``DeliveryRunner.run``, the one
    place a token becomes a running delivery and a finished one hands out the next; a
    message leaves a queue there only (and at close, into dead letters)."""
    sites = {
        s.where
        for s in _walk()
        for target in _written(s.node)
        if target.attr in TOKEN_COUNTS
        and s.path != "_runtime/local/mailbox.py"
        and re.search(r"(mb|fb|mailbox|box)$", ast.unparse(target.value))
    }
    assert sites == {"_runtime/delivery.py:DeliveryRunner.run"}, sites
    takers = {
        s.where
        for s in _method_calls("popleft")
        if re.search(r"(mb|fb|mailbox|box)\.queue$", ast.unparse(s.node.func.value))  # type: ignore[attr-defined]
    }
    assert takers == {
        "_runtime/delivery.py:DeliveryRunner.run",
        "_runtime/local/transport.py:LocalTransport.drain_queues",  # at close, into dead letters
    }


def test_routing_has_one_entry_point() -> None:
    """docs/architecture.md: "the one routing path". A message is counted and shown to the
    observer as published in ``Dispatcher.route`` only, and everything that sends
    (publish, publish_nowait, handlers' outputs, requests, timers) goes through it."""
    counters = {s.where for s in _walk() for t in _written(s.node) if t.attr == "published"}
    assert counters == {
        "_runtime/dispatch.py:Dispatcher.__init__",
        "_runtime/dispatch.py:Dispatcher.route",
    }
    # What a message holds is frozen when it is built (docs/semantics.md), by the builders of
    # the envelope module (through freeze.py) alone: nothing on the message path freezes again.
    freezers = {
        s.path
        for s in _calls(
            lambda c: (
                isinstance(c.func, ast.Name) and c.func.id in {"freeze_message", "freeze_payload"}
            )
        )
    }
    assert freezers == {"_message/envelope.py", "_message/freeze.py"}, freezers
    routers = {s.where for s in _method_calls("route") if s.path.startswith(("_runtime/", "nats/"))}
    assert routers == {
        "_runtime/dispatch.py:Dispatcher.publish",  # in the slots it held
        "_runtime/dispatch.py:Dispatcher.publish_nowait",
        "_runtime/dispatch.py:Dispatcher.reply_arrived",  # from another process, for waiters
        "_runtime/dispatch.py:Dispatcher.route_alone",  # a cancellation notice
        "_runtime/runtime.py:Runtime._request",  # a handler's ctx.request
        "_runtime/runtime.py:Runtime._fire",  # a timer
        "_runtime/runtime.py:Runtime._notify",  # a loss's notice, an unanswered request's
    }
    # A delivery's outputs (the runner holds ``route`` bound once per turn).
    runner = Path(ROOT, "_runtime", "delivery.py").read_text()
    assert "route = self.dispatcher.route" in runner
    # No second way in: the dispatcher has no other sending method.
    from genie._runtime.dispatch import Dispatcher

    assert not hasattr(Dispatcher, "emit")


def test_admission_decides_in_one_place() -> None:
    """The policies are asked in ``Admission`` only: ``evaluate`` for deliveries, ``judge``
    for what is no new delivery (tool results, memory, model text, a fallback's handoff);
    whether a delivery needs asking at all is ``Admission.admits_all``'s to say (the limits
    are read there and in ``admit``)."""
    assert {s.where for s in _method_calls("decide") if s.path.startswith("_runtime/")} == {
        "_runtime/admission.py:Admission.evaluate",
        "_runtime/admission.py:Admission.judge",
    }
    budget_readers = {
        s.path
        for s in _walk()
        if isinstance(s.node, ast.Attribute)
        and s.node.attr in {"correlation_budget", "max_hops"}
        and s.path.startswith("_runtime/")
    }
    assert budget_readers <= {"_runtime/admission.py", "_runtime/policy.py"}, budget_readers


def test_one_body_settles_a_handled_delivery() -> None:
    """A delivery's ``handled`` outcome is recorded by ``Ledger.closed`` (with the message):
    by the supervisor in one place (every attempt's success), and by a timer's end."""
    callers = {
        s.where
        for s in _method_calls("closed")
        if "ledger" in ast.unparse(s.node.func.value)  # type: ignore[attr-defined]
        and len(s.node.args) >= 2  # type: ignore[attr-defined]
    }
    assert callers == {
        "_runtime/delivery.py:DeliveryRunner.run",
        "_runtime/timers.py:Timers._withdrawn",
        "_runtime/timers.py:Timers._wait",
    }
    settles = [s for s in _method_calls("closed") if s.path == "_runtime/delivery.py"]
    assert len(settles) == 1, settles


def test_the_message_path_is_typed_against_the_transport_seam() -> None:
    """``Dispatcher`` and ``DeliveryRunner`` hold a ``Transport`` (the protocol), never the
    local transport, and read none of its internals (``executors``, ``mailboxes``)."""
    for rel in ("_runtime/dispatch.py", "_runtime/delivery.py"):
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert "LocalTransport" not in names, rel
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "local.transport", rel
            if isinstance(node, ast.Attribute) and node.attr in {"executors", "mailboxes"}:
                assert "transport" not in ast.unparse(node.value), (rel, ast.unparse(node))
        annotations = {
            ast.unparse(arg.annotation)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name == "__init__"
            for arg in node.args.args
            if arg.arg == "transport" and arg.annotation is not None
        }
        assert annotations == {"Transport"}, (rel, annotations)


def test_every_public_send_refuses_a_handler_in_one_place() -> None:
    """docs/semantics.md, "A handler sends only through its outputs": ``publish``,
    ``publish_nowait`` and ``ask`` ask ``Dispatcher.check_caller`` before anything happens,
    and the one mark it reads is set by the runner alone: on the tasks the transport starts,
    and for a turn of any other task that runs handlers."""
    checkers = {s.where for s in _method_calls("check_caller")}
    assert checkers == {
        # publish, publish_nowait and ask; publish with preparers before a classifier reads it
        "_runtime/dispatch.py:Dispatcher.checked",
        "_runtime/runtime.py:Runtime._ask",  # ask and resume: before the gather
        "_runtime/runtime.py:Runtime.publish_nowait",  # with preparers: before refusing
    }
    validators = {s.where for s in _method_calls("_validate")}
    assert validators == {
        "_runtime/dispatch.py:Dispatcher.publish",
        "_runtime/dispatch.py:Dispatcher.publish_nowait",
    }
    # The mark: once on the tasks the transport starts (their copy of the context), and for
    # a turn of any other task that calls ``run``.
    markers = {
        s.where
        for s in _walk()
        if isinstance(s.node, ast.Attribute)
        and s.node.attr == "set"
        and ast.unparse(s.node.value) == "HANDLING"
    }
    assert markers == {
        "_runtime/delivery.py:DeliveryRunner.start",
        "_runtime/delivery.py:DeliveryRunner.run",
    }
    starters = {
        s.where
        for s in _walk()
        if isinstance(s.node, ast.Attribute)
        and s.node.attr == "start"
        and ast.unparse(s.node.value).endswith("transport")
    }
    assert starters == {"_runtime/delivery.py:DeliveryRunner.start"}
    # What the runtime's public API sends from outside goes through those two publishes.
    senders = {
        s.where
        for name in ("publish", "publish_nowait")
        for s in _method_calls(name)
        if "_dispatcher" in ast.unparse(s.node.func.value)  # type: ignore[attr-defined]
    }
    assert senders == {
        "_runtime/runtime.py:Runtime.publish",
        "_runtime/runtime.py:Runtime.publish_nowait",
        "_runtime/runtime.py:Runtime._ask",  # ask (resume sends nothing)
    }
