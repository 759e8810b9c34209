"""SIGTERM on a real ``genie serve`` process: stop accepting, drain, report what was cut."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from .conftest import ALICE, ROOT, auth

SLOW = "tests/pipelines/good/slow.yaml"  # one agent that sleeps 1 s
ENV = {**os.environ, "GENIE_API_KEYS": f"{{keys: [{{principal: alice, key: {ALICE}}}]}}"}


def start(*args: str, pipeline: str = SLOW) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "genie._cli", "serve", pipeline, "--port", "0", *args],
        cwd=ROOT,
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
    assert found, line
    return proc, found.group(1)


async def refused(url: str) -> bool:
    """Whether a new connection to the server is refused (its listener closed)."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as fresh:
        try:
            await fresh.get("/readyz")
        except httpx.ConnectError:
            return True
    return False


@pytest.mark.parametrize(
    ("drain", "code", "report"),
    [
        ("5", 0, "1 request(s) in flight at the signal, 1 finished within the 5 s drain, 0 cut"),
        (
            "0.2",
            1,
            "1 request(s) in flight at the signal, 0 finished within the 0.2 s drain, 1 cut",
        ),
    ],
)
async def test_sigterm_drains_then_reports(drain: str, code: int, report: str) -> None:
    proc, url = start("--drain", drain)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/readyz")).status_code == 200
            async with anyio.create_task_group() as tg:
                answers: list[httpx.Response | Exception] = []

                async def ask() -> None:
                    try:
                        answers.append(
                            await client.post(
                                "/v1/pipelines/slow/ask?timeout=5", json={}, headers=auth(ALICE)
                            )
                        )
                    except httpx.HTTPError as exc:
                        answers.append(exc)

                tg.start_soon(ask)
                await anyio.sleep(0.3)  # the request is in the agent's 1 s sleep
                proc.send_signal(signal.SIGTERM)
                # No longer accepting: a new connection is refused while the request drains.
                with anyio.fail_after(5):
                    while not await refused(url):  # noqa: ASYNC110 (another process)
                        await anyio.sleep(0.02)
                assert not answers  # refused while the request was still in flight
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err
    assert report in err
    (answer,) = answers
    assert isinstance(answer, httpx.Response)
    if code == 0:
        assert answer.status_code == 200
    else:
        assert "cut: POST /v1/pipelines/slow/ask (alice)" in err
        # The server's own answer, before uvicorn's deadline: not a bare text/plain 500.
        assert answer.status_code == 503
        assert answer.json()["error"] == (
            "the server is stopping: the request was not finished at the end of its drain and "
            "was cancelled"
        )


def test_ctrl_c_stops_as_sigterm_does() -> None:
    """Ctrl-C is a stop as SIGTERM is (docs/cli.md): the report, exit 0. uvicorn re-raised
    the SIGINT it had caught once it stopped: a KeyboardInterrupt traceback, no report."""
    proc, _ = start("--drain", "5")
    try:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert err == (
        "genie serve: stopped; 0 request(s) in flight at the signal, 0 finished within the "
        "5 s drain, 0 cut\n"
    )


async def test_a_stream_its_client_left_still_drains() -> None:
    """A streamed request runs on whether or not its client stays (it may resume); with no
    connection left for uvicorn to wait for, the stop cut it at once, however long the drain."""
    proc, url = start("--drain", "5")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            stream = "/v1/pipelines/slow/ask/stream?timeout=5"
            async with client.stream("POST", stream, json={}, headers=auth(ALICE)) as answer:
                async for line in answer.aiter_lines():
                    if line.startswith("event: accepted"):
                        break  # the client goes: the request runs on
        await anyio.sleep(0.3)  # the request is in the agent's 1 s sleep
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "1 request(s) in flight at the signal, 1 finished within the 5 s drain, 0 cut" in err
    assert proc.returncode == 0, err


SLEEPY = """\
agents:
  - id: sleeper
    use: tests.pipelines.loopers:Sleeper
    params: {seconds: 1}
entry: {type: serve, to: sleeper}
output: return
timeout: 5s
"""


@pytest.mark.parametrize(("drain", "code"), [("5", 0), ("0.2", 1)])
async def test_an_mcp_call_in_flight_is_drained_and_reported_as_an_ask(
    tmp_path: Path, drain: str, code: int
) -> None:
    """A tool call on ``/mcp`` in flight at SIGTERM is counted in the stop's report, waited
    for within the drain, and named when the drain's end cuts it, as an ``ask`` is."""
    pytest.importorskip("mcp")
    (tmp_path / "sleepy.yaml").write_text(SLEEPY)
    proc, url = start("--mcp", "--drain", drain, pipeline=str(tmp_path / "sleepy.yaml"))
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "sleepy", "arguments": {}},
    }
    headers = {**auth(ALICE), "Accept": "application/json, text/event-stream"}
    answers: list[httpx.Response | Exception] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:

            async def ask() -> None:
                try:
                    answers.append(await client.post("/mcp", json=call, headers=headers))
                except httpx.HTTPError as exc:
                    answers.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await anyio.sleep(0.3)  # the call is in the agent's 1 s sleep
                proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err
    finished, cut = ("1", "0") if code == 0 else ("0", "1")
    report = (
        f"1 request(s) in flight at the signal, {finished} finished within the {drain} s "
        f"drain, {cut} cut"
    )
    assert report in err
    [answer] = answers
    if code == 0:
        assert isinstance(answer, httpx.Response)
        assert answer.status_code == 200
        assert answer.json()["result"]["isError"] is False
    else:
        assert "cut: POST /mcp (alice)" in err
        assert isinstance(answer, httpx.Response)
        assert answer.status_code == 503
        assert "not finished at the end of its drain" in answer.json()["error"]
