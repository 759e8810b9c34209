"""The running loop's event, its timed wait and checkpoint (``genie._base.backend``): on asyncio
a ``Flag``, on any other backend anyio's; each behaves as the runtime needs whichever it is."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from genie import Runtime
from genie._base.asyncio_flag import Flag
from genie._base.backend import running_backend
from tests.conftest import Echo, Ping


async def test_the_running_loop_chooses_the_event(anyio_backend: str) -> None:
    backend = running_backend()
    event = backend.new_event()
    if anyio_backend == "asyncio":
        assert isinstance(event, Flag)
    else:
        assert isinstance(event, anyio.Event)
    await backend.checkpoint()


async def test_every_waiter_wakes_and_a_set_event_is_not_waited_for(anyio_backend: str) -> None:
    event = running_backend().new_event()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await event.wait()
        woken.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(waiter, n)
        await anyio.wait_all_tasks_blocked()
        assert not woken
        assert not event.is_set()
        event.set()
        event.set()  # a second set changes nothing
    assert sorted(woken) == [0, 1, 2]
    assert event.is_set()
    with anyio.fail_after(1):
        await event.wait()


async def test_a_cancelled_wait_leaves_nothing_behind(anyio_backend: str) -> None:
    """A caller polling with short timeouts (``move_on_after`` around ``wait``) a thousand
    times keeps no waiter of each; the event still wakes the one waiting when it is set."""
    event = running_backend().new_event()
    for _ in range(1000):
        with anyio.move_on_after(0):
            await event.wait()
    if isinstance(event, Flag):
        assert not event._waiters
    async with anyio.create_task_group() as tg:
        tg.start_soon(event.wait)
        await anyio.wait_all_tasks_blocked()
        event.set()
    if isinstance(event, Flag):
        assert not event._waiters


async def test_a_timed_wait_returns_when_set_or_when_its_time_is_up(anyio_backend: str) -> None:
    """``wait_at_most`` returns at once for an event set, early when it is set, and after its
    limit (not before, and without raising) when nobody sets it; no limit waits for the set."""
    backend = running_backend()
    event = backend.new_event()
    start = anyio.current_time()
    await backend.wait_at_most(event, 0.05)
    assert anyio.current_time() - start >= 0.05
    assert not event.is_set()

    async def set_soon() -> None:
        await anyio.sleep(0.01)
        event.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(set_soon)
        start = anyio.current_time()
        await backend.wait_at_most(event, 30)
    assert event.is_set()
    assert anyio.current_time() - start < 5
    with anyio.fail_after(1):
        await backend.wait_at_most(event, None)  # set: returns at once
        await backend.wait_at_most(backend.new_event(), 0)  # no time: returns at once
    if isinstance(event, Flag):
        assert not event._waiters


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_timed_wait_leaves_no_timer_behind(anyio_backend: str) -> None:
    """A flag's timed wait is a timer on the loop: cancelled when the flag is set first, and
    when the wait itself is cancelled, so a thousand waits leave the loop no timer."""
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    for _ in range(1000):
        flag = Flag()
        with anyio.move_on_after(0):  # the wait cancelled
            await flag.wait(30)
        assert not flag._waiters
        flag = Flag()
        loop.call_soon(flag.set)  # set before its time is up
        await flag.wait(30)
        assert not flag._waiters
    # A cancelled timer stays in the heap until the loop drops it; none of them fires.
    await asyncio.sleep(0)
    live = [t for t in loop._scheduled if not t.cancelled()]  # type: ignore[attr-defined]
    assert len(live) <= before


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_wait_cancelled_as_the_event_is_set_raises_and_others_still_wake(
    anyio_backend: str,
) -> None:
    """The waiter cancelled in the turn the event is set: its future is done (cancelled), the
    set passes it over and wakes the rest."""
    flag = Flag()
    woken: list[str] = []

    async def wait(name: str) -> None:
        await flag.wait()
        woken.append(name)

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as doomed:
            async with anyio.create_task_group() as inner:
                inner.start_soon(wait, "cancelled")
                tg.start_soon(wait, "kept")
                await anyio.wait_all_tasks_blocked()
                doomed.cancel()
                flag.set()
    assert woken == ["kept"]
    assert not flag._waiters


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_two_tasks_wait_for_one_gather(anyio_backend: str) -> None:
    async with Runtime([Echo("echo")]) as rt:
        msg = rt.message(Ping(n=1), sender="outside", recipient="echo")
        # Two tasks wait on the gather's one event.
        gather = rt.gather(msg.correlation_id, count=1)
        results = []

        async def wait() -> None:
            results.append(await gather.wait())

        await rt.publish(msg)  # its delivery runs once this task waits
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            tg.start_soon(wait)
        assert [r.status for r in results] == ["complete", "complete"]
        assert results[0] is results[1]
