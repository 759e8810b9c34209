"""The pytest plugin, as a user's project opts in to it: ``pytest_plugins`` in its conftest
runs each anyio test on both backends, and ``VIRTUAL_TIME`` runs one on virtual time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from genie._cli.main import main

from ..docs.test_docs import ROOT, examples_in

CONFTEST = 'pytest_plugins = ["genie.testing.pytest_plugin"]\n'
TESTS = """
import time

import anyio
import pytest

from genie import BaseAgent, Context, Message, Payload, handler
from genie.testing import VIRTUAL_TIME, TestRuntime


class Ping(Payload):
    message_type = "ping"


class Pong(Payload):
    message_type = "pong"


class Echo(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await anyio.sleep(600)
        return ctx.reply(Pong())


class Quick(BaseAgent):
    produces = (Pong,)

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> Message:  # a plain def: in a thread
        return ctx.reply(Pong())


@pytest.mark.anyio
async def test_on_every_backend(anyio_backend):
    async with TestRuntime([Quick("quick")], timeout=5) as app:
        answered = await app.ask(Ping(), to="quick")
        assert answered.complete
        assert app.received("quick")[0].type == "ping"
    print("backend", anyio_backend)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", [VIRTUAL_TIME])
async def test_on_virtual_time():
    started = time.monotonic()
    async with TestRuntime([Echo("echo")], timeout=3600) as app:
        answered = await app.ask(Ping(), to="echo")
    assert answered.complete
    assert time.monotonic() - started < 5
"""


def test_a_project_opting_in_runs_each_test_on_both_backends(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_app.py").write_text(TESTS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    assert "backend asyncio" in done.stdout
    assert "backend trio" in done.stdout


def test_the_pages_pytest_example_passes_in_a_genie_init_project(tmp_path: Path) -> None:
    """docs/testing.md's pytest example, pasted into the project ``genie init`` writes (as the
    page suggests), passes there: it names that project's agent (before, 'forecaster', a
    FaultError in every run)."""
    page = (ROOT / "docs" / "testing.md").read_text()
    [example] = [e.code for e in examples_in(page, "testing.md") if "pipeline.yaml" in e.code]
    project = tmp_path / "my-app"
    assert main(["init", str(project)]) == 0
    (project / "test_page.py").write_text(example)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7 passed" in done.stdout  # the project's four, and the page's three
