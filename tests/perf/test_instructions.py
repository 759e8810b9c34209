"""The callgrind counter's workloads (``python -m genie_bench.instructions``): each does the
work it counts. Counting itself needs valgrind and minutes, so it is not run here."""

from __future__ import annotations

import pytest
from genie_bench import instructions


@pytest.mark.parametrize("workload", ["chain", "fanout", "ask", "throughput"])
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
    # The harness's asks raise (WorkloadError) when replies or hops come back short.
    instructions._child(workload, 5, 3, "delivery", variant)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variants", "pool,fast"], "unknown variant 'fast' (known: asyncio, pool, "),
        (["--variants", "genie+policies"], "unknown variant 'genie+policies'"),
        (["--variants", "pool", "--workloads", "components"], "not components"),
        (["--variants", "genie", "--workloads", "ask"], "not ask"),
    ],
)
def test_a_variant_the_counter_cannot_run_is_refused(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        instructions.main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
