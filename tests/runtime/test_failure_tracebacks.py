"""A failed handler's dead letter says where it raised (issue 36, item 1): the traceback of
each of its last attempts, genie's and the event loop's frames folded, so that the first
line read is the line of the handler's own code."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from genie import AgentOptions, BaseAgent, BreakerPolicy, Context, RetryPolicy, Runtime, handler
from genie._base.failure import KEPT, MAX_CHARS, exiting, format_failure
from genie._errors import REASON_CHARS, described

from ..conftest import Echo, Note, Ping


def divide(n: int) -> int:
    return 100 // n  # the line every traceback here must name


DIVIDE_LINE = inspect.getsourcelines(divide)[1] + 1


class Divider(BaseAgent):
    """Divides by the ping's number; a ping of 0 fails in ``divide``."""

    def __init__(self, id: str, message: str = "") -> None:
        super().__init__(id)
        self.message = message

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        await anyio.lowlevel.checkpoint()  # a frame of the event loop between, too
        if self.message:
            raise ValueError(self.message)
        divide(payload.n)


async def dead_letters(agent: BaseAgent, options: AgentOptions | None = None) -> Runtime:
    async with Runtime() as rt:
        rt.add(agent, options=options)
        await rt.publish(rt.message(Ping(n=0), recipient=agent.id))
        with anyio.fail_after(5):
            await rt.wait_idle()
    return rt


async def test_the_letter_starts_with_the_line_that_raised_and_folds_genie() -> None:
    rt = await dead_letters(Divider("d"))
    [letter] = rt.dead_letters
    assert letter.tracebacks == (letter.traceback,)
    assert letter.traceback is not None
    first, *rest = letter.traceback.splitlines()
    assert first == (
        f"{__file__}:{DIVIDE_LINE} in divide: ZeroDivisionError: integer division or modulo by zero"
    )
    text = "\n".join(rest)
    assert "frames of genie and the event loop]" in text or "frame of genie" in text
    assert "genie/_runtime" not in text  # folded, not listed
    assert "anyio" not in text
    assert f'File "{__file__}", line {DIVIDE_LINE}, in divide' in text
    assert text.endswith("ZeroDivisionError: integer division or modulo by zero")


async def test_each_retry_keeps_its_traceback_the_last_few_and_bounded() -> None:
    retry = AgentOptions(retry=RetryPolicy(attempts=KEPT + 2, backoff=0))
    rt = await dead_letters(Divider("d"), retry)
    [letter] = rt.dead_letters
    assert letter.attempts == KEPT + 2
    assert len(letter.tracebacks) == KEPT  # the last attempts only
    assert all(t.startswith(f"{__file__}:{DIVIDE_LINE} in divide") for t in letter.tracebacks)

    huge = "x" * (10 * MAX_CHARS)  # a failure whose message is a payload dumped whole
    rt = await dead_letters(Divider("d", message=huge))
    [letter] = rt.dead_letters
    assert letter.traceback is not None
    assert len(letter.traceback) < MAX_CHARS + 100
    assert "characters cut" in letter.traceback
    assert letter.traceback.endswith("x")


async def test_a_circuit_that_opened_keeps_the_failures_that_opened_it() -> None:
    options = AgentOptions(
        retry=RetryPolicy(attempts=5, backoff=0),
        breaker=BreakerPolicy(failure_threshold=2, reset_after=60),
    )
    rt = await dead_letters(Divider("d"), options)
    [letter] = rt.dead_letters
    assert letter.error_type == "CircuitOpenError"
    assert letter.tracebacks  # the circuit was made, not raised: the failures before it
    assert all("in divide: ZeroDivisionError" in t for t in letter.tracebacks)


async def test_only_a_handlers_failure_has_a_traceback_and_events_carry_it() -> None:
    gate = anyio.Event()

    class Waiting(BaseAgent):
        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> None:
            await gate.wait()

    async with Runtime([Divider("d"), Waiting("w")]) as rt:
        msg = rt.message(Ping(n=0), recipient="d")
        events = rt.events(msg.correlation_id)
        await rt.publish(msg)
        with anyio.fail_after(5):
            await rt.wait_idle()
            async for event in events:
                if event.kind == "dead_lettered":
                    break
        waiting = rt.message(Ping(n=1), recipient="w")
        await rt.publish(waiting)
        rt.cancel(waiting.correlation_id)
        gate.set()
        with anyio.fail_after(5):
            await rt.wait_idle()
    assert event.traceback is not None
    assert event.traceback.startswith(f"{__file__}:")
    by_kind = {letter.kind: letter for letter in rt.dead_letters}
    assert by_kind["failed"].traceback == event.traceback
    assert by_kind["cancelled"].tracebacks == ()


def test_an_exception_never_raised_has_no_frames_to_show() -> None:
    text = format_failure(ValueError("made, not raised"))
    assert text.splitlines()[0] == "ValueError: made, not raised"


class Frozen(Exception):
    """Refuses every attribute set on it after it is made, with an error of its own."""

    def __setattr__(self, name: str, value: object) -> None:
        raise TypeError(f"{type(self).__name__} is frozen")


class RaisesFrozen(BaseAgent):
    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        raise Frozen("odd")


@pytest.mark.parametrize("attempts", [1, 3])
async def test_an_error_that_refuses_attributes_still_fails_only_its_delivery(
    attempts: int,
) -> None:
    options = AgentOptions(retry=RetryPolicy(attempts=attempts, backoff=0))
    rt = await dead_letters(RaisesFrozen("odd"), options)
    [letter] = rt.dead_letters  # and the runtime closed as it should
    assert (letter.kind, letter.reason, letter.attempts) == (
        "failed",
        "Frozen: odd",
        attempts,
    )
    assert letter.traceback is not None
    assert letter.traceback.startswith(f"{__file__}:")
    s = rt.statistics()
    assert (s.delivered, s.dead_lettered, s.in_flight, s.retries) == (1, 1, 0, attempts - 1)


async def test_a_huge_error_message_is_cut_in_the_reason_as_in_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Kept by the dead letter, the audit log and the log line, and handed to the asker.
    huge = "x" * (100 * MAX_CHARS)
    async with Runtime([Divider("d", message=huge)]) as rt:
        result = await rt.ask(rt.message(Ping(n=0), recipient="d"))
        await rt.wait_idle()
    [letter] = rt.dead_letters
    [missing] = result.missing
    [row] = [r for r in rt.audit.records if r.action == "dead_letter:failed"]  # type: ignore[attr-defined]
    [line] = [r.getMessage() for r in caplog.records if "dead letter" in r.getMessage()]
    for reason in (letter.reason, missing.reason, row.details["reason"], line):
        assert len(reason) < MAX_CHARS
        assert "characters cut" in reason
    assert letter.reason.startswith("ValueError: xxx")
    assert letter.reason.endswith("xxx")


def fetch_price() -> None:
    raise ConnectionError("price service unreachable")  # the line a group's letter names


FETCH_LINE = inspect.getsourcelines(fetch_price)[1] + 1


class InATaskGroup(BaseAgent):
    """Starts ``tasks`` tasks that fail in a task group, as a handler calling two services at
    once does: anyio hands their failures on in an ``ExceptionGroup``."""

    def __init__(self, id: str, tasks: int) -> None:
        super().__init__(id)
        self.tasks = tasks

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        async def fails(i: int) -> None:
            with anyio.CancelScope(shield=True):  # each fails, not cancelled by the first
                await anyio.lowlevel.checkpoint()
                if i == 0:
                    fetch_price()
                raise KeyError(f"quote-{i}")

        async with anyio.create_task_group() as tg:
            for i in range(self.tasks):
                tg.start_soon(fails, i)


async def test_a_group_of_one_is_told_by_what_it_holds_and_where_that_raised() -> None:
    rt = await dead_letters(InATaskGroup("g", tasks=1))
    [letter] = rt.dead_letters
    # The group's own text is the event loop's (anyio's or trio's).
    assert letter.reason.startswith("ExceptionGroup: ")
    assert letter.reason.endswith(" (1 sub-exception) (ConnectionError: price service unreachable)")
    assert letter.traceback is not None
    first, *rest = letter.traceback.splitlines()
    assert first == f"{__file__}:{FETCH_LINE} in fetch_price: {letter.reason}"
    text = "\n".join(rest)
    assert f'File "{__file__}", line {FETCH_LINE}, in fetch_price' in text
    assert "ConnectionError: price service unreachable" in text
    assert "/anyio/" not in text  # the task's frames of the event loop folded too


async def test_a_group_of_several_names_each_failure_and_shows_each_traceback() -> None:
    rt = await dead_letters(InATaskGroup("g", tasks=2))
    [letter] = rt.dead_letters
    # In the order the tasks failed, which is the event loop's to choose.
    held = "; ".join(sorted(("ConnectionError: price service unreachable", "KeyError: 'quote-1'")))
    if "(KeyError" in letter.reason:
        held = "; ".join(reversed(held.split("; ")))
    assert letter.reason.startswith("ExceptionGroup: ")
    assert letter.reason.endswith(" (2 sub-exceptions) (" + held + ")")
    assert letter.traceback is not None
    # More than one raised: the letter starts where the handler's own code holds them.
    assert letter.traceback.splitlines()[0].endswith(f"in on_ping: {letter.reason}")
    assert f"line {FETCH_LINE}, in fetch_price" in letter.traceback
    assert "ConnectionError: price service unreachable" in letter.traceback
    assert "KeyError: 'quote-1'" in letter.traceback


def test_a_group_of_many_names_a_few_and_counts_the_rest() -> None:
    group = ExceptionGroup("many", [ValueError(f"v{i}") for i in range(20)])
    said = format_failure(group).splitlines()[0]
    assert said.startswith("ExceptionGroup: many (20 sub-exceptions) (ValueError: v0; ")
    assert said.endswith("; and 17 more)")


class DeeplyGrouped(BaseAgent):
    """Raises a group nested deeper than Python's recursion limit: a task group per level of a
    recursive walk, say, each handing the one failure below it on."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        error: Exception = ValueError("leaf")
        for level in range(sys.getrecursionlimit() + 10):
            error = ExceptionGroup(f"level {level}", [error])
        raise error


async def test_a_group_nested_past_the_recursion_limit_fails_only_its_delivery() -> None:
    async with Runtime([DeeplyGrouped("deep"), Echo("echo")]) as rt:
        with anyio.fail_after(30):
            failed = await rt.ask(rt.message(Ping(), recipient="deep"))
            assert (await rt.ask(rt.message(Ping(n=1), recipient="echo"))).complete
    assert failed.status == "partial"
    [letter] = rt.dead_letters
    assert (letter.kind, letter.error_type) == ("failed", "ExceptionGroup")
    assert letter.reason.startswith(f"ExceptionGroup: level {sys.getrecursionlimit() + 9} ")
    assert len(letter.reason) < REASON_CHARS + 100  # the cut says where it cut
    assert letter.traceback is not None
    assert len(letter.traceback) <= MAX_CHARS
    assert rt.statistics().in_flight == 0


def test_what_stops_the_runtime_is_found_however_deep_it_is_held() -> None:
    stop = KeyboardInterrupt()
    error: BaseException = BaseExceptionGroup("top", [ValueError("first"), stop])
    for level in range(sys.getrecursionlimit() + 10):
        error = BaseExceptionGroup(f"level {level}", [error])
    assert exiting(error) is stop


class Chained(BaseAgent):
    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        try:
            divide(payload.n)
        except ZeroDivisionError as e:
            raise RuntimeError("lookup failed") from e


async def test_the_cause_of_a_chained_failure_is_in_its_traceback() -> None:
    rt = await dead_letters(Chained("c"))
    [letter] = rt.dead_letters
    assert letter.reason == "RuntimeError: lookup failed"
    assert letter.traceback is not None
    assert letter.traceback.splitlines()[0].endswith("in on_ping: RuntimeError: lookup failed")
    # As Python prints it: the cause first, then what was raised from it.
    cause = letter.traceback.index("ZeroDivisionError: integer division or modulo by zero")
    said = letter.traceback.index("The above exception was the direct cause")
    assert cause < said
    assert f"line {DIVIDE_LINE}, in divide" in letter.traceback
    assert letter.traceback.endswith("RuntimeError: lookup failed")
    assert "genie/_runtime" not in letter.traceback


def first_price(prices: list[int]) -> int:
    return next(iter(prices))  # the line a StopIteration's letter must name


FIRST_LINE = inspect.getsourcelines(first_price)[1] + 1


class Exhausted(BaseAgent):
    """Reads the first of no prices: ``next`` raises StopIteration in the handler's code."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        first_price([])


class ExhaustedInAThread(BaseAgent):
    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> None:
        first_price([])


@pytest.mark.parametrize("agent", [Exhausted, ExhaustedInAThread])
async def test_a_stop_iteration_is_told_where_the_handler_raised_it(
    agent: type[BaseAgent],
) -> None:
    """Python turns a StopIteration leaving a coroutine into a RuntimeError raised from it, by
    the event loop's code, with no frame of the handler's: the letter starts with the line
    that raised the StopIteration all the same."""
    rt = await dead_letters(agent("x"))
    [letter] = rt.dead_letters
    assert letter.reason == "RuntimeError: coroutine raised StopIteration"
    assert letter.traceback is not None
    first = letter.traceback.splitlines()[0]
    assert first == f"{__file__}:{FIRST_LINE} in first_price: {letter.reason}"
    assert f'File "{__file__}", line {FIRST_LINE}, in first_price' in letter.traceback


class Counted(ValueError):
    """A failure that counts how often its text is read: each exception a description or a
    traceback is made of is read once."""

    reads = 0

    def __str__(self) -> str:
        Counted.reads += 1
        return super().__str__()


class Wide(BaseAgent):
    """Raises a group of 100,000 failures, as a handler gathering that many tasks might."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        raise ExceptionGroup("many", [Counted(f"bad {i}") for i in range(100_000)])


async def test_a_group_of_100000_is_told_from_the_few_its_letter_shows() -> None:
    Counted.reads = 0
    rt = await dead_letters(Wide("wide"))
    [letter] = rt.dead_letters
    assert letter.reason == (
        "ExceptionGroup: many (100000 sub-exceptions) "
        "(Counted: bad 0; Counted: bad 1; Counted: bad 2; and 99997 more)"
    )
    assert letter.traceback is not None
    assert "Counted: bad 14\n" in letter.traceback
    assert letter.traceback.endswith("| and 99985 more exceptions\n    +" + "-" * 36)
    # The reason's three, the traceback's fifteen (and its head, the reason again): not each.
    assert Counted.reads <= 3 + 15 + 3


class Counting(ExceptionGroup[Exception]):
    """A group that counts how often what it holds is looked at."""

    looked = 0

    @property
    def exceptions(self) -> tuple[Exception, ...]:
        Counting.looked += 1
        return super().exceptions


def test_a_group_holding_one_group_many_times_over_is_walked_a_bounded_way() -> None:
    """Twelve levels of a group holding the group below fifteen times: 15**12 failures, of a
    few objects. What stops the runtime is looked for in each group once, the reason stops
    once it is long enough, the traceback once it holds more than it can show."""
    error: Exception = Counted("leaf")
    for _ in range(12):
        error = Counting("x", [error] * 15)
    Counting.looked = Counted.reads = 0
    assert exiting(error) is None
    assert Counting.looked == 12
    said = described(error)
    assert said.startswith("Counting: x (15 sub-exceptions) (Counting: x (15 sub-exceptions) (")
    assert said.endswith("; and 14 more)")
    assert len(said) < REASON_CHARS + 100
    text = format_failure(error)
    assert len(text) < MAX_CHARS + 100  # the cut says where it cut
    assert text.endswith("failures shown: the traceback is cut)")
    assert Counting.looked + Counted.reads < 1_000


class ApiError(Exception):
    """An API client's error that reads its fields from the response's body: a name the body
    lacks (``__notes__``, which Python's traceback reads) raises KeyError, not AttributeError."""

    def __init__(self, body: dict[str, object]) -> None:
        super().__init__(body.get("message", "api error"))
        self.body = body

    def __getattr__(self, name: str) -> object:
        return self.body[name]


class NotesFail(Exception):
    @property
    def __notes__(self) -> list[str]:  # type: ignore[override]
        raise RuntimeError("its notes cannot be read")


class CauseFails(Exception):
    @property
    def __cause__(self) -> BaseException | None:  # type: ignore[override]
        raise RuntimeError("its cause cannot be read")


class FramesFail(Exception):
    @property
    def __traceback__(self) -> None:  # type: ignore[override]
        raise RuntimeError("its frames cannot be read")


class FileFails(SyntaxError):
    @property
    def filename(self) -> str:  # type: ignore[override]
        raise RuntimeError("its file cannot be read")


class HoldsHidden(ExceptionGroup[Exception]):
    @property
    def exceptions(self) -> tuple[Exception, ...]:
        raise RuntimeError("what it holds cannot be read")


class _HidesItsName(type):
    """A metaclass that answers reads of its classes' attributes itself (a proxy's, an
    ORM's), and fails the read of their name."""

    def __getattribute__(cls, name: str) -> object:
        if name in ("__name__", "__qualname__"):
            raise KeyError(name)
        return super().__getattribute__(name)


class NameFails(Exception, metaclass=_HidesItsName):
    pass


HOSTILE: dict[str, Callable[[], Exception]] = {
    "api": lambda: ApiError({"message": "quota exceeded", "code": 429}),
    "notes": lambda: NotesFail("n"),
    "cause": lambda: CauseFails("c"),
    "frames": lambda: FramesFail("t"),
    "file": lambda: FileFails("s"),
    "group": lambda: HoldsHidden("g", [ValueError("v")]),
    "class": lambda: NameFails("its class hides its name"),
}
# The name each letter gives: its class's own, which a metaclass cannot hide.
NAMES = {kind: type.__dict__["__name__"].__get__(type(make())) for kind, make in HOSTILE.items()}


class RaisesHostile(BaseAgent):
    def __init__(self, id: str, kind: str) -> None:
        super().__init__(id)
        self.kind = kind

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        raise HOSTILE[self.kind]()


class RaisesHostileInThread(RaisesHostile):
    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> None:  # type: ignore[override]
        raise HOSTILE[self.kind]()


# Of a def handler, an error whose frames cannot be read never comes back from its thread:
# trio's worker thread fails handing it on.
CASES = [(kind, False) for kind in HOSTILE] + [(kind, True) for kind in HOSTILE if kind != "frames"]


@pytest.mark.parametrize(("kind", "threaded"), CASES)
async def test_an_error_whose_class_fails_a_read_fails_only_its_delivery(
    kind: str, threaded: bool
) -> None:
    """Describing what a handler raised reads its attributes; an error class may fail such a
    read its own way. Its delivery fails all the same (each attempt's traceback kept, said as
    far as it can be read), the counts hold and the runtime closes as it should."""
    agent = (RaisesHostileInThread if threaded else RaisesHostile)("h", kind)
    rt = await dead_letters(agent, AgentOptions(retry=RetryPolicy(attempts=2, backoff=0)))
    [letter] = rt.dead_letters
    assert (letter.kind, letter.error_type, letter.attempts) == (
        "failed",
        NAMES[kind],
        2,
    )
    assert len(letter.tracebacks) == 2
    for text in letter.tracebacks:
        assert text.splitlines()[0].endswith(letter.reason)
    if kind == "api":  # the common case: where it raised, and its frames
        assert letter.traceback is not None
        assert letter.traceback.startswith(f"{__file__}:")
        assert letter.traceback.endswith("ApiError: quota exceeded")
    s = rt.statistics()
    assert (s.delivered, s.dead_lettered, s.in_flight) == (1, 1, 0)


class SharedFetch(BaseAgent):
    """Prices an account from rates fetched once for all (single flight): every handler that
    awaits the failed fetch raises its one exception. Alice's first attempt fails first with
    an error of her own account."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.fetch_failed = ConnectionError("rates service unreachable")
        self.alices = 0

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        if payload.text == "alice-4111":
            self.alices += 1
            if self.alices == 1:
                raise ValueError("account alice-4111 is overdrawn")
        raise self.fetch_failed


async def test_a_letter_holds_its_own_deliverys_tracebacks_only() -> None:
    """One exception ends deliveries of two requests: each letter keeps the tracebacks of its
    own attempts, never another request's."""
    async with Runtime() as rt:
        rt.add(SharedFetch("p"), options=AgentOptions(retry=RetryPolicy(attempts=2, backoff=0)))
        for account in ("alice-4111", "bob"):
            await rt.ask(rt.message(Note(text=account), recipient="p"))
    alice, bob = rt.dead_letters
    assert [t.splitlines()[0].split(": ", 1)[1] for t in alice.tracebacks] == [
        "ValueError: account alice-4111 is overdrawn",
        "ConnectionError: rates service unreachable",
    ]
    assert bob.attempts == 2
    assert len(bob.tracebacks) == 1  # the same exception raised again: one traceback
    assert not any("alice" in t for t in bob.tracebacks)


class FailsToo(BaseAgent):
    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        raise KeyError("backup-bug")


async def test_a_failed_fallbacks_traceback_is_the_last() -> None:
    async with Runtime() as rt:
        rt.add(Divider("primary"), options=AgentOptions(fallback="backup"))
        rt.add(FailsToo("backup"))
        await rt.ask(rt.message(Ping(n=0), recipient="primary"))
    [letter] = rt.dead_letters
    assert letter.error_type == "ZeroDivisionError"  # the letter is the agent's delivery's
    first, last = letter.tracebacks
    assert first.startswith(f"{__file__}:{DIVIDE_LINE} in divide: ZeroDivisionError")
    assert letter.traceback == last
    assert last.splitlines()[0].endswith("in on_ping: KeyError: 'backup-bug'")


async def test_a_project_kept_in_a_folder_named_trio_keeps_its_lines(tmp_path: Path) -> None:
    """Only the event loop's own frames are folded: trio's package, not any folder so named."""
    source = tmp_path / "trio" / "pricing.py"
    source.parent.mkdir()
    source.write_text('def price() -> None:\n    raise LookupError("no price")\n')
    spec = importlib.util.spec_from_file_location("pricing", source)
    assert spec is not None
    assert spec.loader is not None
    pricing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pricing)

    class Prices(BaseAgent):
        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> None:
            pricing.price()

    rt = await dead_letters(Prices("prices"))
    [letter] = rt.dead_letters
    assert letter.traceback is not None
    assert letter.traceback.startswith(f"{source}:2 in price: LookupError: no price")
    assert f'File "{source}", line 2, in price' in letter.traceback


async def test_an_error_whose_class_hides_its_name_is_counted_by_it() -> None:
    """The metrics count a handler's failures by the name of the error's class, read past a
    metaclass that hides it, as the letter's ``error_type`` is: no observer error."""
    async with Runtime(metrics=True) as rt:
        rt.add(RaisesHostile("h", "class"))
        await rt.publish(rt.message(Ping(n=0), recipient="h"))
        with anyio.fail_after(5):
            await rt.wait_idle()
        assert rt.metrics is not None
        text = rt.metrics.text()
    assert 'genie_handler_exceptions_total{agent="h",exception="NameFails"} 1.0' in text
    assert rt.statistics().observer_errors == 0
