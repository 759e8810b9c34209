"""Start, drain, cancel, isolation, and the bad inputs of the issue: each a clear error."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from genie import (
    AgentOptions,
    ConfigurationError,
    DuplicateAgentError,
    Limits,
    Message,
    Payload,
    Runtime,
    RuntimeClosedError,
    RuntimeState,
    UnknownMessageTypeError,
    UnknownRecipientError,
)

from ..conftest import Echo, Failing, Ping, Pong, Recorder


async def test_two_runtimes_in_one_process_are_isolated() -> None:
    first, second = Echo("echo"), Echo("echo")  # the same id in both
    async with Runtime([first]) as rt1, Runtime([second]) as rt2:
        r1 = await rt1.ask(rt1.message(Ping(n=1), recipient="echo"))
        r2 = await rt2.ask(rt2.message(Ping(n=2), recipient="echo"))
        r3 = await rt1.ask(rt1.message(Ping(n=3), recipient="echo"))
    assert [p.n for p in (r1.message.payload, r2.message.payload, r3.message.payload)] == [1, 2, 3]  # type: ignore[attr-defined]
    assert [m.payload.n for m in first.seen] == [1, 3]  # type: ignore[attr-defined]
    assert [m.payload.n for m in second.seen] == [2]  # type: ignore[attr-defined]
    assert rt1.statistics().mailboxes["echo"].handled == 2
    assert rt2.statistics().mailboxes["echo"].handled == 1
    assert r1.message.id.split("-")[0] != r2.message.id.split("-")[0]


async def test_exit_drains_in_flight_work() -> None:
    rec = Recorder("rec")
    async with Runtime([rec]) as rt:
        for n in range(100):
            rt.publish_nowait(rt.message(Ping(n=n), recipient="rec"))
    assert len(rec.seen) == 100
    assert rt.shutdown_report is not None
    assert rt.shutdown_report.drained


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # it counts asyncio's tasks
async def test_exit_cancels_what_does_not_drain_and_reports_it() -> None:
    gate = anyio.Event()  # never set: the handler is stuck
    before = len(asyncio.all_tasks())
    async with Runtime(drain_timeout=0.05) as rt:
        rt.add(Recorder("stuck", gate))
        for n in range(3):
            await rt.publish(rt.message(Ping(n=n), recipient="stuck"))
        await wait_all_tasks_blocked()
    report = rt.shutdown_report
    assert report is not None
    assert (report.drained, report.cancelled_running, report.discarded_queued) == (False, 1, 2)
    assert report.by_agent == {"stuck": 3}
    s = rt.statistics()
    assert s.delivered == s.dead_lettered == 3
    assert s.in_flight == 0
    assert {d.reason for d in rt.dead_letters} == {"cancelled at shutdown", "discarded at shutdown"}
    assert len(asyncio.all_tasks()) == before  # nothing left running


async def test_exit_on_error_cancels_at_once() -> None:
    gate = anyio.Event()
    rt = Runtime([Recorder("stuck", gate)], drain_timeout=1000)

    async def fail_inside() -> None:
        async with rt:
            await rt.publish(rt.message(Ping(), recipient="stuck"))
            await wait_all_tasks_blocked()
            raise KeyError("user error")

    with pytest.raises(KeyError, match="user error"):
        await fail_inside()
    assert rt.shutdown_report is not None
    assert rt.shutdown_report.cancelled_running == 1


async def test_waiting_publisher_is_released_by_close() -> None:
    gate = anyio.Event()
    errors: list[Exception] = []
    async with anyio.create_task_group() as tg, Runtime(drain_timeout=0) as rt:
        rt.add(Recorder("stuck", gate), options=AgentOptions(mailbox_size=1))
        await rt.publish(rt.message(Ping(), recipient="stuck"))
        await wait_all_tasks_blocked()
        await rt.publish(rt.message(Ping(), recipient="stuck"))

        async def blocked() -> None:
            try:
                await rt.publish(rt.message(Ping(), recipient="stuck"))
            except RuntimeClosedError as exc:
                errors.append(exc)

        tg.start_soon(blocked)
        await wait_all_tasks_blocked()
    assert len(errors) == 1


async def test_publish_before_start_and_after_close() -> None:
    rt = Runtime([Echo("echo")])
    with pytest.raises(RuntimeClosedError, match="not started yet"):
        await rt.publish(Message.new(Ping(), sender="user", recipient="echo"))
    async with rt:
        pass
    with pytest.raises(RuntimeClosedError, match="cannot publish: the runtime is closed"):
        await rt.publish(rt.message(Ping(), recipient="echo"))
    with pytest.raises(RuntimeClosedError, match="started once"):
        async with rt:
            pass


async def test_bad_inputs_get_specific_errors_and_the_runtime_keeps_running() -> None:
    class Unregistered(Payload):
        message_type = "unregistered"

    async with Runtime([Echo("echo")]) as rt:
        with pytest.raises(UnknownMessageTypeError, match="'unregistered'"):
            await rt.publish(rt.message(Unregistered(), recipient="echo"))
        with pytest.raises(UnknownRecipientError, match="'nobody'"):
            await rt.publish(rt.message(Ping(), recipient="nobody"))
        with pytest.raises(DuplicateAgentError, match="'echo' is already registered"):
            rt.add(Echo("echo"))
        with pytest.raises(ConfigurationError, match="is not an Agent"):
            rt.add(object())  # type: ignore[arg-type]
        # The class for its instance, the likeliest slip: said so, with what to write.
        with pytest.raises(ConfigurationError, match=r"Echo is a class: pass an agent, Echo\("):
            rt.add(Echo)  # type: ignore[arg-type]
        result = await rt.ask(rt.message(Ping(n=4), recipient="echo"))
    assert result.message.payload == Pong(n=4)


@pytest.mark.parametrize(
    ("agent_id", "whose"),
    [
        ("genie", "the sender of its notices of losses and cancellations"),
        ("approvals", "its approval desk, whose decisions workflows act on"),
    ],
)
async def test_an_agent_cannot_take_an_id_the_runtimes_own_messages_are_sent_under(
    agent_id: str, whose: str
) -> None:
    # Workflows trust a loss or cancellation notice from "genie" and a decision from
    # "approvals": an agent of that name could forge them.
    said = f"agent id {agent_id!r} is the runtime's own ({whose}): give this agent another id"
    with pytest.raises(ConfigurationError) as refused:
        Runtime([Echo(agent_id)])
    assert str(refused.value) == said
    async with Runtime([Echo("echo")]) as rt:
        with pytest.raises(ConfigurationError, match="is the runtime's own"):
            rt.add(Echo(agent_id))
        _ = rt.approvals  # the runtime's own desk still joins under its name
        assert "approvals" in rt.statistics().mailboxes


async def test_unknown_fallback_refuses_to_start() -> None:
    rt = Runtime()
    rt.add(Echo("echo"), options=AgentOptions(fallback="missing"))
    with pytest.raises(ConfigurationError, match="fallback 'missing', which is not registered"):
        async with rt:
            pass


async def test_a_fallback_not_hosted_yet_leaves_the_failure_a_dead_letter() -> None:
    """The start checks every agent's fallback; an agent added to the running runtime may
    name one added after it. A delivery it failed before then was handed to no mailbox: a
    KeyError that stopped the runtime. It is the agent's failure, saying why; once the
    fallback is added, it takes the next."""
    async with Runtime([Echo("echo")]) as rt:
        rt.add(Failing("failing"), options=AgentOptions(fallback="backup"))
        first = await rt.ask(rt.message(Ping(n=1), recipient="failing"))
        rt.add(Echo("backup"))
        second = await rt.ask(rt.message(Ping(n=2), recipient="failing"))
    [missing] = first.missing
    assert missing.kind == "failed"
    assert missing.reason == (
        "RuntimeError: boom #1; fallback 'backup' is not an agent of this runtime (yet)"
    )
    assert [m.payload for m in second.replies] == [Pong(n=2)]  # the fallback answered
    s = rt.statistics()
    assert (s.dead_lettered, s.fallbacks, s.in_flight) == (1, 1, 0)
    assert rt.state is RuntimeState.CLOSED


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="mailbox_size"):
        AgentOptions(mailbox_size=0)
    with pytest.raises(ConfigurationError, match="deadline"):
        AgentOptions(deadline=-1)
    with pytest.raises(ConfigurationError, match="overflow"):
        AgentOptions(overflow="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="limits"):
        Limits(max_hops=0)


async def test_statistics_are_frozen_snapshots() -> None:
    async with Runtime([Echo("echo")]) as rt:
        before = rt.statistics()
        await rt.ask(rt.message(Ping(), recipient="echo"))
        after = rt.statistics()
    assert before.handled == 0
    assert (after.handled, after.collected) == (2, 1)
    with pytest.raises(AttributeError):
        after.handled = 5  # type: ignore[misc]  # frozen: refused


async def test_freeze_gc_is_opt_in_and_undone_at_close() -> None:
    import gc

    assert gc.get_freeze_count() == 0
    async with Runtime([Echo("echo")]) as rt:  # the default never touches the collector
        await rt.ask(rt.message(Ping(n=1), recipient="echo"))
        assert gc.get_freeze_count() == 0
    agent = Echo("echo")
    async with Runtime([agent], freeze_gc=True) as rt:
        # What existed at start-up (the agent among it) is out of the collector's scans.
        assert gc.get_freeze_count() > 0
        assert not any(o is agent for o in gc.get_objects())
        result = await rt.ask(rt.message(Ping(n=2), recipient="echo"))
        assert result.message.payload == Pong(n=2)
    assert gc.get_freeze_count() == 0
    assert any(o is agent for o in gc.get_objects())
