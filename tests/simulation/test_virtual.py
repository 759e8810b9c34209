"""The simulation's virtual-time loop: the clock jumps exactly to the next timer, and timers
asked for one instant fire in the order they were set (asyncio leaves that order undefined)."""

from __future__ import annotations

import asyncio
import gc
import math
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import anyio.lowlevel
import pytest

from genie.simulation import _virtual
from genie.simulation._virtual import VirtualTimeLoop

T = TypeVar("T")


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(main, backend_options={"loop_factory": VirtualTimeLoop})


def test_timers_for_one_instant_fire_in_the_order_they_were_set() -> None:
    # Enough timers per instant that a plain heap reorders them (heapq is not stable), and set
    # in an interleaved order so that insertion order and instant order differ.
    fired: list[tuple[float, int]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for n in range(200):
            loop.call_at(float(n % 3 + 1), lambda n: fired.append((loop.time(), n)), n)
        await anyio.sleep(10)

    run_virtual(main)
    by_instant = sorted(range(200), key=lambda n: n % 3)
    assert [n for _, n in fired] == by_instant
    times = [t for t, _ in fired]
    assert times == sorted(times)
    assert [round(t, 9) for t in times] == [float(n % 3 + 1) for n in by_instant]


def test_a_plain_asyncio_loop_would_not_keep_that_order() -> None:
    # The property above is the loop's doing: the same timers on asyncio's own loop fire in
    # heap order, not in the order they were set.
    fired: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        at = loop.time() + 0.01
        for n in range(200):
            loop.call_at(at, fired.append, n)
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert sorted(fired) == list(range(200))
    assert fired != list(range(200))


def test_the_clock_lands_exactly_on_each_timer_and_takes_no_real_time() -> None:
    seen: list[float] = []

    async def main() -> None:
        expected = 0.0
        for delay in (0.1, 0.2, 3600.0, 0.1, 1e-7, 86_400.0 * 3):
            await anyio.sleep(delay)
            expected += delay
            seen.append(anyio.current_time())
            assert anyio.current_time() == expected  # no drift from adding up timeouts

    started = time.perf_counter()
    run_virtual(main)
    assert time.perf_counter() - started < 5
    assert seen[-1] == pytest.approx(0.4 + 3600 + 1e-7 + 3 * 86_400)


def test_a_cancelled_timer_gives_its_instant_back() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        first = loop.call_at(5.0, print)
        kept = loop.call_at(5.0, print)
        assert kept.when() == math.nextafter(5.0, math.inf)
        first.cancel()
        again = loop.call_at(5.0, print)
        assert again.when() == 5.0
        third = loop.call_at(5.0, print)
        assert third.when() == math.nextafter(kept.when(), math.inf)
        for handle in (kept, again, third):
            handle.cancel()

    run_virtual(main)


def test_a_deadline_on_virtual_time_cancels_at_its_instant() -> None:
    async def main() -> float:
        with anyio.move_on_after(30):
            await anyio.sleep(3600)
        return anyio.current_time()

    assert run_virtual(main) == 30.0


def test_a_thread_wakes_the_loop_without_moving_the_clock() -> None:
    async def main() -> tuple[int, float]:
        def work() -> int:
            time.sleep(0.05)
            return 42

        value = await anyio.to_thread.run_sync(work)
        return value, anyio.current_time()

    assert run_virtual(main) == (42, 0.0)


def test_work_outside_the_loop_takes_no_virtual_time_while_a_timer_waits() -> None:
    # A deadline is pending while a thread works: the clock must not jump to the deadline
    # because the loop found nothing ready at once (compute is free on virtual time).
    async def main() -> tuple[int | None, float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)

        def work() -> int:
            time.sleep(0.05)
            return 42

        value = None
        with anyio.move_on_after(30):
            with loop.waiting_outside():
                value = await anyio.to_thread.run_sync(work)
        return value, anyio.current_time()

    assert run_virtual(main) == (42, 0.0)


def test_work_outside_the_loop_still_meets_its_deadline_when_it_hangs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Past its grace of real time, work outside is taken as hung: time goes on, and a thread
    # that does not come back is given up at its deadline, as on a real clock.
    monkeypatch.setattr(_virtual, "OUTSIDE_GRACE", 0.3)

    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        with anyio.move_on_after(0.05) as scope:
            with loop.waiting_outside():
                await anyio.to_thread.run_sync(time.sleep, 3, abandon_on_cancel=True)
        return scope.cancelled_caught, anyio.current_time()

    started = time.monotonic()
    assert run_virtual(main) == (True, 0.05)
    assert 0.3 <= time.monotonic() - started < 2


def test_the_clock_stands_still_for_outside_work_whatever_other_timers_wait() -> None:
    # Other sessions' timers a few milliseconds away: the clock went on with them at the pace
    # of real time while a thread worked, so a run's report depended on the machine.
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        fired: list[float] = []
        for n in range(1, 50):
            loop.call_at(n / 1000, lambda: fired.append(loop.time()))
        with loop.waiting_outside():
            await anyio.to_thread.run_sync(time.sleep, 0.1)
        stood = loop.time()
        await anyio.sleep(1)
        return [stood, len(fired)]

    assert run_virtual(main) == [0.0, 49]


def test_outside_work_waiting_on_the_loop_lets_the_clock_go_on() -> None:
    # A thread's ctx.sleep: the thread waits on the loop, whose clock must not stand still.
    async def main() -> float:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)

        def work() -> None:
            anyio.from_thread.run(sleeping)

        async def sleeping() -> None:
            with outside.paused():
                await anyio.sleep(3)

        with loop.waiting_outside() as outside:
            await anyio.to_thread.run_sync(work)
        return loop.time()

    started = time.monotonic()
    assert run_virtual(main) == 3.0
    assert time.monotonic() - started < 1


def test_paced_outside_work_goes_on_at_the_pace_of_real_time() -> None:
    # Work the program polls on the clock (a server's stop): each poll waits real time.
    async def main() -> int:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        done = threading.Event()
        threading.Timer(0.1, done.set).start()
        polls = 0
        with loop.waiting_outside(paced=True):
            while not done.is_set():
                polls += 1
                await anyio.sleep(0.01)
        return polls

    assert 3 < run_virtual(main) < 40


def test_without_outside_work_the_clock_jumps_past_a_thread() -> None:
    # What the two tests above guard against: unannounced, a thread's work is invisible to
    # the loop, which jumps to the next timer.
    async def main() -> bool:
        with anyio.move_on_after(30) as scope:
            await anyio.to_thread.run_sync(time.sleep, 0.05, abandon_on_cancel=True)
        return scope.cancelled_caught

    assert run_virtual(main)


def test_cancelled_timers_are_not_kept_until_their_instant() -> None:
    # Session timeouts and deadlines are nearly all cancelled long before they are due; a loop
    # that kept them until their instant would grow with every session of a long run.
    async def main() -> int:
        loop = asyncio.get_running_loop()
        for n in range(20_000):
            loop.call_at(3600.0 + n, print).cancel()
        await anyio.lowlevel.checkpoint()  # asyncio drops cancelled timers from its heap here
        gc.collect()
        return sum(isinstance(o, asyncio.TimerHandle) for o in gc.get_objects())

    assert run_virtual(main) < 300


def test_timers_that_are_never_due_do_not_hang_the_loop() -> None:
    # anyio's sleep_forever (and ctx.sleep(math.inf)) asks for a timer at infinity. A second
    # one found the instant taken, and every float step from infinity is infinity: call_at
    # spun forever. It runs in a child, which a hang cannot take the suite down with.
    code = (
        "import anyio\n"
        "from genie.simulation._virtual import VirtualTimeLoop\n"
        "async def main():\n"
        "    with anyio.move_on_after(5):\n"
        "        async with anyio.create_task_group() as tg:\n"
        "            for _ in range(3):\n"
        "                tg.start_soon(anyio.sleep_forever)\n"
        "    print(anyio.current_time())\n"
        "anyio.run(main, backend_options={'loop_factory': VirtualTimeLoop})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "5.0\n"


def test_only_timers_never_due_wait_for_a_thread_as_no_timer_does() -> None:
    # Nothing will ever come due: the clock must not jump to infinity (every timestamp after
    # would overflow), but wait, as with no timer at all, for a thread to wake the loop.
    async def main() -> float:
        loop = asyncio.get_running_loop()
        woken = anyio.Event()

        def wake() -> None:
            time.sleep(0.05)
            loop.call_soon_threadsafe(woken.set)

        threading.Thread(target=wake).start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep_forever)
            await woken.wait()
            tg.cancel_scope.cancel()
        return anyio.current_time()

    assert run_virtual(main) == 0.0
