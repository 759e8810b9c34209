"""Every file under broken/ is a pipeline with one kind of mistake; its first line says which
error (line and text) it must produce, and ``genie validate`` must exit 2 naming it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genie._base.yamlconf import ConfigFileError
from genie._cli.main import main
from genie.pipeline import load_pipeline

BROKEN = Path(__file__).parent / "broken"
CASES = sorted(BROKEN.glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+): (.+)$")


def expectation(path: Path) -> tuple[int, str]:
    first = path.read_bytes().split(b"\n", 1)[0].decode()  # the rest may be deliberately not UTF-8
    match = EXPECT.match(first)
    assert match, f"{path.name} must start with '# expect: LINE: text'"
    return int(match.group(1)), match.group(2)


def test_the_corpus_covers_at_least_fifteen_kinds_of_mistakes() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_broken_pipeline_names_file_line_and_key(path: Path) -> None:
    line, text = expectation(path)
    with pytest.raises(ConfigFileError) as caught:
        load_pipeline(path)
    wanted = f"{path}:{line}: "
    assert any(p.startswith(wanted) and text in p for p in caught.value.problems), (
        f"expected {wanted}...{text}; got {caught.value.problems}"
    )


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_validate_exits_2_with_the_error(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line, text = expectation(path)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}: " in err
    assert text in err
    assert "Traceback" not in err


def test_all_errors_are_reported_together(tmp_path: Path) -> None:
    bad = tmp_path / "many.yaml"
    bad.write_text(
        "agents:\n"
        "  - id: a\n"
        "    use: forecaster\n"
        "    fallback: nobody\n"
        "routes:\n"
        "  forecast_result: [ghost]\n"
        "entry: {type: analysis_result, to: a}\n"
        "output: forecast_result\n"
    )
    with pytest.raises(ConfigFileError) as caught:
        load_pipeline(bad)
    assert [p.split(": ")[0] for p in caught.value.problems] == [f"{bad}:4", f"{bad}:6"]
