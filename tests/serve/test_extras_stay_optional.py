"""The core never loads the extras: ``import genie``, the CLI's parser and ``genie --help``
import neither Starlette, uvicorn, OpenTelemetry nor the MCP SDK (a fresh interpreter each)."""

from __future__ import annotations

import subprocess
import sys

import pytest

EXTRAS = ("starlette", "uvicorn", "opentelemetry", "mcp")


@pytest.mark.parametrize(
    "code",
    [
        "import genie",
        "import genie.pipeline, genie._cli.main; genie._cli.main.build_parser()",
        "import genie._cli.main, contextlib, io\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    genie._cli.main.main(['--help'])",
    ],
)
def test_no_extra_is_imported(code: str) -> None:
    probe = f"{code}\nimport sys\nprint(sorted({{m.split('.')[0] for m in sys.modules}}))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded = [extra for extra in EXTRAS if f"'{extra}'" in out]
    assert loaded == []


def test_the_probe_sees_an_extra_when_one_is_loaded() -> None:
    # genie.serve needs Starlette, genie.otel OpenTelemetry (uvicorn loads when serve runs).
    probe = (
        "import genie.serve, genie.otel, sys\nprint(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert "'starlette'" in out
    assert "'opentelemetry'" in out
