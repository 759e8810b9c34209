"""Start-up imports only what is used: ``import genie`` and ``genie run`` of the finance
pipeline, each in a fresh interpreter, reading ``sys.modules`` at the end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    code += "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_genie_loads_no_heavy_module() -> None:
    loaded = modules_after("import genie")
    heavy = {
        "httpx",
        "genie.llm",
        "genie.pipeline",
        "genie.policies",
        "genie._agent.catalogue",
        "genie._runtime.observe.metrics",
        "prometheus_client",
        "yaml",
        "difflib",
        "importlib.metadata",
        "genie_agents",
    }
    assert loaded & heavy == set()


def test_genie_run_of_the_finance_pipeline_imports_only_its_agents() -> None:
    run = """
import contextlib, io, sys
from genie._cli.main import cli
sys.argv = ["genie", "run", "config/pipelines/finance.yaml"]
report = io.StringIO()
with contextlib.redirect_stdout(report):
    try:
        cli()
    except SystemExit as exc:
        assert not exc.code, exc.code
assert "Genie" in report.getvalue(), report.getvalue()
"""
    loaded = modules_after(run)
    assert "genie_agents.finance.ingest" in loaded  # it did run the pipeline's agents
    assert {"httpx", "genie.llm", "genie_agents.finance.receipts"} & loaded == set()
    # Another command's machinery stays out: the NATS transport (only --nats's options are
    # read), a simulation (only `genie simulate`'s options), the durable store and sqlite3.
    others = {
        "genie.nats._transport",
        "genie.nats._wire",
        "genie.nats._presence",
        "genie.simulation._run",
        "genie._runtime.durable.transport",
        "sqlite3",
    }
    assert others & loaded == set()
    # No domain the pipeline does not use, and of support only the fallback.
    agents = {m for m in loaded if m.startswith("genie_agents.") and m.count(".") == 2}
    assert {m.split(".")[1] for m in agents} == {"finance", "support"}
    assert {m for m in agents if ".support." in m} == {"genie_agents.support.fallback"}


def test_a_domain_package_still_gives_its_classes() -> None:
    loaded = modules_after(
        "from genie_agents.finance import Ingestor, AGENTS\n"
        "from genie_agents import support\n"
        "assert Ingestor.__name__ == 'Ingestor'\n"
        "assert support.Fallback is support.Fallback\n"
        "assert sorted(AGENTS) and 'receipt_ocr' in AGENTS\n"
    )
    assert "genie_agents.finance.ingest" in loaded
    assert "genie_agents.finance.receipts" not in loaded
