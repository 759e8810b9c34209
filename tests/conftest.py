"""Shared payloads and small agents for the tests. Every test runs on the real runtime."""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType

import anyio
import pytest

from genie import BaseAgent, Context, Decision, Message, Payload, handler


def in_threads(*calls: Callable[[], object]) -> None:
    """Run each call in a thread of its own, all at once, switching threads as often as the
    interpreter can: what two runtimes in two threads sharing an object would meet."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=call) for call in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)


class Ping(Payload):
    message_type = "ping"
    n: int = 0
    sender_tag: str = ""


class Pong(Payload):
    message_type = "pong"
    n: int = 0


class Note(Payload):
    message_type = "note"
    text: str


# The compiled build (`make test-compiled`) runs the hot modules as mypyc made them: their
# signatures refuse an argument of another type with a TypeError of mypyc's own, at the call,
# before genie's check can name it.
COMPILED = not str(importlib.import_module("genie._agent.context").__file__).endswith(".py")

# What CI sets (`make ci`): every optional dependency installed, so a test that would skip for
# a missing one fails instead. A contributor's `make test` (the dev extra only) skips them.
REQUIRE_ALL = os.environ.get("GENIE_REQUIRE_ALL", "") not in ("", "0")


def optional(module: str, extra: str) -> ModuleType:
    """``module``, an optional dependency of some tests; when it is not installed the caller
    skips naming the extra that installs it, or fails under ``GENIE_REQUIRE_ALL=1``. Called at
    a test module's top it skips or fails the whole module."""
    reason = f"{module} is not installed: pip install -e '.[{extra}]'"
    if not REQUIRE_ALL:
        found: ModuleType = pytest.importorskip(module, reason=reason)
        return found
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"{reason} (GENIE_REQUIRE_ALL is set: nothing may skip)", pytrace=False)


def requires(*modules: str, extra: str) -> pytest.MarkDecorator:
    """Mark a test that needs ``modules`` (of the extra ``extra``): ``optional`` for each, as
    the test is set up (before its fixtures)."""
    return pytest.mark.requires(*modules, extra=extra)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires"):
        for module in mark.args:
            optional(module, mark.kwargs["extra"])


def must_skip(reason: str) -> None:
    """Skip the calling test (or module) for something missing that is not a Python package
    (a system program), or fail under ``GENIE_REQUIRE_ALL=1``."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (GENIE_REQUIRE_ALL is set: nothing may skip)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on both anyio backends, as anyio runs its own tests (a module
    that needs virtual time overrides this with trio and a ``MockClock``)."""
    return str(request.param)


class Echo(BaseAgent):
    """Replies Pong(n) to the sender of every Ping."""

    produces = (Pong,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.seen: list[Message] = []

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        self.seen.append(ctx.message)
        return ctx.reply(Pong(n=payload.n))


class Recorder(BaseAgent):
    """Records every Ping; optionally blocks on ``gate`` first; emits nothing."""

    def __init__(self, id: str, gate: anyio.Event | None = None) -> None:
        super().__init__(id)
        self.seen: list[Ping] = []
        self.gate = gate
        self.active = 0
        self.max_active = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            self.seen.append(payload)
        finally:
            self.active -= 1


class Held(BaseAgent):
    """Notes wait for ``gate``; a Ping sets ``running`` and waits until it is cancelled."""

    def __init__(self, id: str, gate: anyio.Event) -> None:
        super().__init__(id)
        self.gate = gate
        self.running = anyio.Event()

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        await self.gate.wait()

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.running.set()
        await anyio.sleep_forever()


class Failing(BaseAgent):
    """Raises for the first ``failures`` calls (all of them if None), then replies Pong."""

    produces = (Pong,)

    def __init__(self, id: str, failures: int | None = None) -> None:
        super().__init__(id)
        self.failures = failures
        self.calls = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        self.calls += 1
        if self.failures is None or self.calls <= self.failures:
            raise RuntimeError(f"boom #{self.calls}")
        return ctx.reply(Pong(n=payload.n))


class DenyTo:
    """A policy denying every delivery to the given recipients."""

    def __init__(self, *recipients: str, name: str = "deny-to") -> None:
        self.name = name
        self.recipients = set(recipients)

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        if recipient in self.recipients:
            return Decision.deny(self.name, f"{recipient} is blocked")
        return Decision.ALLOW


class PolicyFn:
    def __init__(self, name: str, fn: Callable[[Message, str], Decision]) -> None:
        self.name = name
        self.fn = fn

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        return self.fn(msg, recipient)


def payloads(messages: Sequence[Message]) -> list[Payload]:
    return [m.payload for m in messages]
