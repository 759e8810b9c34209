"""The callgrind counter's workloads (``python -m genie_bench.instructions``): each does the
work it counts. Counting itself needs valgrind and minutes, so it is not run here."""

from __future__ import annotations

import pytest
from genie_bench import instructions


@pytest.mark.parametrize("workload", ["chain", "fanout", "throughput"])
def test_each_workload_runs_and_checks_its_own_replies(workload: str) -> None:
    instructions._child(workload, 5, 3, "delivery")  # raises if a gather came back short


def test_an_unknown_workload_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        instructions.main(["--workloads", "througput"])
    assert exit_.value.code == 2
    assert "unknown workload 'througput'" in capsys.readouterr().err
