"""docs/serve.md as written: its keys, its curl commands against a real ``genie serve`` process
(each with the HTTP status its ``# -> NNN`` comment promises), its key file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from genie.serve import load_keys

from .conftest import ROOT

PAGE = (ROOT / "docs/serve.md").read_text()
SH = re.findall(r"^```sh\n(.*?)^```", PAGE, flags=re.S | re.M)
YAML = re.findall(r"^```yaml\n(.*?)^```", PAGE, flags=re.S | re.M)
KEYS = re.search(r"^export GENIE_API_KEYS='(.*)'$", PAGE, flags=re.M)
COMMANDS = [
    line
    for block in SH
    for line in block.splitlines()
    if line.startswith("curl ") or "> body.json" in line
]


def test_the_page_has_what_this_test_runs() -> None:
    assert KEYS is not None
    assert sum("# -> " in c for c in COMMANDS) >= 6
    assert YAML


def test_the_key_file_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(YAML[0])
    ring = load_keys(path, {})
    alice = ring.find("alice-demo-key-0001")
    office = ring.find("backoffice-demo-key-01")
    assert alice is not None
    assert office is not None
    assert (alice.principal, office.principal, office.tenant) == ("alice", "backoffice", "acme")


def test_the_curl_examples(tmp_path: Path) -> None:
    assert KEYS is not None
    (tmp_path / "config").symlink_to(ROOT / "config")
    env = {**os.environ, "GENIE_API_KEYS": KEYS.group(1)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "genie._cli",
            "serve",
            "config/pipelines/finance.yaml",
            "--port",
            "0",
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        found = re.search(r"on http://(127\.0\.0\.1:\d+)", proc.stderr.readline())
        assert found
        for command in COMMANDS:
            line, _, expect = command.partition("  # -> ")
            line = line.replace("localhost:8080", found.group(1))
            if expect:
                line += " -w '\\nHTTP %{http_code}'"
            done = subprocess.run(
                ["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=30
            )
            assert done.returncode == 0, (command, done.stderr)
            if expect:
                assert done.stdout.rsplit("\n", 1)[-1] == f"HTTP {expect}", command
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
