"""The callgrind counter's workloads (``python -m genie_bench.instructions``): each does the
work it counts. Counting itself needs valgrind and minutes, so it is not run here."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from genie_bench import instructions

from genie._agent import context


@pytest.mark.parametrize(
    "workload", ["chain", "fanout", "ask", "ask-deadline", "request", "throughput"]
)
def test_each_workload_runs_and_checks_its_own_replies(workload: str) -> None:
    instructions._child(workload, 5, 3, "delivery")  # raises if a gather came back short


def test_an_unknown_workload_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        instructions.main(["--workloads", "througput"])
    assert exit_.value.code == 2
    assert "unknown workload 'througput'" in capsys.readouterr().err


@pytest.mark.parametrize("variant", ["asyncio", "pool", "genie"])
@pytest.mark.parametrize("workload", ["chain", "fanout", "throughput"])
def test_the_harness_implementations_run_each_workload_and_check_it(
    variant: str, workload: str
) -> None:
    # A fan-out's replies are checked as genie bench checks them (workloads.answered), on the
    # warm-up and on the last request; a chain's ask checks its hops.
    instructions._child(workload, 5, 3, "delivery", variant)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variants", "pool,fast"], "unknown variant 'fast' (known: asyncio, pool, "),
        (["--variants", "genie+policies"], "unknown variant 'genie+policies'"),
        (["--variants", "pool", "--workloads", "components"], "not components"),
        (["--variants", "genie", "--workloads", "ask"], "not ask"),
        (["--variants", "genie", "--workloads", "request"], "not request"),
    ],
)
def test_a_variant_the_counter_cannot_run_is_refused(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        instructions.main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_the_dispatch_component_calls_a_handler_as_a_delivery_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each call builds the delivery's context and awaits the agent's bound handler, as the
    runtime's delivery does, not ``handle`` with one context built once."""
    built: list[str] = []
    real = context.runtime_context

    def counted(*args: Any) -> context.RuntimeContext:
        built.append(args[1])
        return real(*args)

    monkeypatch.setattr(context, "runtime_context", counted)
    anyio.run(instructions._component, "dispatch", 30)
    assert built.count("echo") >= instructions._WARMUP + 30


def test_the_totals_are_read_by_event_name_from_either_tools_output() -> None:
    callgrind = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 40816736\n"
    assert instructions.event_totals(callgrind) == {"Ir": 40816736}
    cachegrind = (
        "desc: I1 cache: 32768 B, 64 B, 8-way associative\n"
        "events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw Bc Bcm Bi Bim\n"
        "fl=x.c\nfn=main\n1 1 1 1 1 1 1 1 1 1 1 1 1 1\n"
        "summary: 40944493 195209 11976 11418584 572596 22051 5702409 68771 37274 6355093 "
        "426213 923198 222505\n"
    )
    totals = instructions.event_totals(cachegrind)
    assert totals["Ir"] == 40944493
    assert totals["D1mw"] == 68771
    assert totals["Bim"] == 222505
    for events in instructions.SIMULATED.values():  # each event named is one cachegrind counts
        assert set(events) <= totals.keys()
    with pytest.raises(RuntimeError, match="no event totals"):
        instructions.event_totals("events: Ir\n")


def test_counts_are_printed_per_recipient_with_the_requests_own() -> None:
    per = {"instructions": 2_235_500.0, "L1 data misses": 50_100.0}
    line = instructions._events(per, 50, "recipient")
    assert line == (
        "44,710 instructions, 1,002 L1 data misses per recipient "
        "(2,235,500 instructions per request)"
    )
    assert instructions._events({"instructions": 41_820.0}, 1, "hop") == (
        "41,820 instructions per hop"
    )
    # Two runs' difference can fall a few events below zero where nothing happens per request.
    assert instructions._events({"instructions": 900.0, "last-level misses": -20.0}, 50, "x") == (
        "18 instructions, 0 last-level misses per x (900 instructions per request)"
    )
