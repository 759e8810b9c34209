"""The scale-out harness's command line (``python -m genie_bench.scaleout``): a usage line and
exit 2 for what it does not understand, never a traceback."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "argv",
    [[], ["measure", "x"], ["measure", "10", "1,a"], ["measure", "--bogus"], ["worker", "u"],
     ["measure", "10", "1,2", "--light", "--heavy"], ["measure", "0"]],
)  # fmt: skip
def test_the_scaleout_harness_answers_what_it_does_not_understand_with_its_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from genie_bench import scaleout

    assert scaleout.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m genie_bench.scaleout measure [N [W,...]]")
    assert "--heavy the\nhandler-bound one only" in err


def test_the_scaleout_harness_reads_its_measure_arguments() -> None:
    from genie_bench import scaleout

    assert scaleout.main(["--help"]) == 0
    assert scaleout._measure_args([]) == (8000, [1, 2, 3], True, True)
    assert scaleout._measure_args(["8000", "1,2", "--heavy"]) == (8000, [1, 2], False, True)
    assert scaleout._measure_args(["--light", "400"]) == (400, [1, 2, 3], True, False)
