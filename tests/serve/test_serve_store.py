"""``genie serve --store``: a server killed with SIGKILL while a streamed request waits in a
handler is started again on the same store; the request runs on from where it stopped, and
the client that asked reconnects to its stream and reads the result (issue 37)."""

from __future__ import annotations

import logging
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from genie import ConfigurationError
from genie._cli.main import main
from genie._runtime.durable.store import DeliveryStore, StoreClient
from genie.pipeline import load_pipeline
from genie.serve import ServeSettings, create_app

from .conftest import ALICE, auth, free_socket, keyring, serving, sse

AGENTS = '''
"""Step 1 -> 2 -> 3; step 2 waits for the file GO (the test makes it after the kill). Each
step's effect is applied once per delivery id."""

import os
from pathlib import Path

import anyio

from genie import BaseAgent, Context, Message, Payload, handler

FOLDER = Path(os.environ["DRILL_FOLDER"])


class Step(Payload):
    message_type = "step"
    n: int
    note: str = ""


class Total(Payload):
    message_type = "total"
    steps: int


class Stepper(BaseAgent):
    produces = (Step, Total)

    @handler
    async def on_step(self, payload: Step, ctx: Context) -> Message:
        if payload.n == 2:
            while not (FOLDER / "GO").exists():
                await anyio.sleep(0.02)
        key = f"{ctx.message.id}:{ctx.agent_id}"  # the idempotency key: once per delivery
        done = FOLDER / "effects.txt"
        if key not in (done.read_text().split() if done.exists() else []):
            with done.open("a") as effects:
                effects.write(key + "\\n")
        if payload.n == 3:
            return ctx.emit(Total(steps=3))
        return ctx.emit(Step(n=payload.n + 1))
'''

PIPELINE = """
name: steps
agents:
  - id: stepper
    use: steps_agents:Stepper
routes:
  step: [stepper]
entry:
  type: step
  to: stepper
  payload: {n: 1}
output: total
timeout: 30s
"""


def launch(
    folder: Path, *options: str, preexec_fn: Callable[[], None] | None = None
) -> subprocess.Popen[str]:
    """``genie serve`` of the pipeline in ``folder``, with its stores in ``folder/store``."""
    env = {
        **os.environ,
        "GENIE_API_KEYS": f"{{keys: [{{principal: alice, key: {ALICE}}}]}}",
        "DRILL_FOLDER": str(folder),
        "PYTHONPATH": str(folder),
    }
    command = [sys.executable, "-m", "genie._cli", "serve", str(folder / "steps.yaml")]
    command += ["--port", "0", "--store", str(folder / "store"), *options]
    return subprocess.Popen(
        command, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn
    )


def refused(folder: Path) -> tuple[int, str]:
    """``launch``, expected to stop on its own as it starts: its exit code and stderr."""
    proc = launch(folder)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def start(
    folder: Path, *options: str, preexec_fn: Callable[[], None] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``launch``, once its first line says where it answers: (the process, the URL)."""
    proc = launch(folder, *options, preexec_fn=preexec_fn)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
    assert found, line
    return proc, found.group(1)


async def result_after_restart(tmp_path: Path, location: str, *options: str) -> dict[str, object]:
    """A server started again on ``tmp_path`` (with ``options``) and read at ``location``,
    the stream of a request it resumed: the result that stream ends with. Within 20 s,
    well within the pipeline's timeout of 30 s."""
    proc, url = start(tmp_path, *options)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            with anyio.fail_after(20):
                resumed = await client.get(location, headers=auth(ALICE))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert resumed.status_code == 200, resumed.text
    [result] = [data for _, kind, data in sse(resumed.text) if kind == "result"]
    return result


async def killed_midway(tmp_path: Path) -> tuple[str, list[str]]:
    """A server started on ``tmp_path``, asked, and killed with SIGKILL while step 2 waits:
    the store keeps the request. The stream's location and the frames read before the kill."""
    (tmp_path / "steps_agents.py").write_text(AGENTS)
    (tmp_path / "steps.yaml").write_text(PIPELINE)
    proc, url = start(tmp_path)
    frames: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            ask = client.stream(
                "POST", "/v1/pipelines/steps/ask/stream", json={}, headers=auth(ALICE)
            )
            async with ask as response:
                assert response.status_code == 200
                location = response.headers["location"]
                async for line in response.aiter_lines():
                    frames.append(line)
                    if '"kind":"delivered"' in line and '"hops":1' in line:
                        # Step 2 is admitted (its write may not have happened: then step 1
                        # runs again after the restart, under the same delivery id).
                        break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    return location, frames


async def test_a_killed_server_resumes_the_request_and_its_client_reads_the_result(
    tmp_path: Path,
) -> None:
    location, frames = await killed_midway(tmp_path)
    assert "result" not in "\n".join(frames)
    (tmp_path / "GO").touch()

    # Started again with each write waiting for the disk: the same store, either way.
    proc, url = start(tmp_path, "--store-sync", "always")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            with anyio.fail_after(20):
                resumed = await client.get(location, headers=auth(ALICE))
                other = await client.get(
                    location, headers={"Authorization": "Bearer nobody-key-000000000"}
                )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert resumed.status_code == 200, resumed.text
    [result] = [data for _, kind, data in sse(resumed.text) if kind == "result"]
    assert result["status"] == "ok"
    assert result["output"]["payload"] == {"steps": 3}  # type: ignore[index]
    assert other.status_code == 401
    effects = (tmp_path / "effects.txt").read_text().split()
    assert len(effects) == len(set(effects)) == 3  # each step once, whatever the kill


async def test_a_request_resumed_after_a_restart_waits_at_most_the_servers_bound(
    tmp_path: Path,
) -> None:
    """Resumed from the store, a request waited its pipeline's whole timeout (30s here),
    however low the restarted server's ``--max-timeout``: a client's request is held to the
    bound, a resumed one nobody waits for was not. It ends ``timed_out`` at the bound, as a
    request asked of this server would, and the store keeps nothing of it."""
    location, _ = await killed_midway(tmp_path)  # step 2 waits for GO, which never comes
    result = await result_after_restart(tmp_path, location, "--max-timeout", "0.2")
    assert (result["status"], result["http_status"]) == ("timed_out", 504)
    assert requests_kept(tmp_path / "store" / "steps.db") == []


async def test_a_server_refuses_while_its_store_keeps_a_request_it_cannot_read(
    tmp_path: Path,
) -> None:
    """The step model changed since a killed server's request was kept (its ``n`` is now an
    ``m``): the kept request no longer validates. ``genie serve`` does not start on it, as
    ``genie run`` does not: one line naming the store, the request and what validation said,
    and how to go on, exit 2; with ``--discard-unreadable`` it drops the request, says so,
    and serves."""
    await killed_midway(tmp_path)
    store = tmp_path / "store" / "steps.db"
    with sqlite3.connect(store) as db:
        (cid,) = db.execute("SELECT correlation_id FROM requests").fetchone()
        db.execute("""UPDATE requests SET body = replace(body, '"n":', '"m":')""")
    db.close()
    effects = (tmp_path / "effects.txt").read_text()
    code, err = refused(tmp_path)
    assert code == 2
    pipeline, folder = tmp_path / "steps.yaml", tmp_path / "store"
    assert err.startswith(
        f"genie serve: the store {store} keeps a request this pipeline cannot read: request {cid}: "
    ), err
    assert "invalid 'step' message: field 'n': Field required; unknown field 'm'" in err
    assert err.endswith(
        "it was not resumed, and the server did not start: run the pipeline that made it "
        f"({pipeline.resolve()}), "
        f"or genie serve {pipeline} --store {folder} --discard-unreadable drops it (what it "
        "kept is lost)\n"
    ), err
    assert err.count("\n") == 1
    assert (tmp_path / "effects.txt").read_text() == effects  # nothing ran again

    proc = launch(tmp_path, "--discard-unreadable")
    assert proc.stderr is not None
    said = proc.stderr.readline()
    found = re.search(r"on (http://127\.0\.0\.1:\d+)", proc.stderr.readline())
    assert found
    url = found.group(1)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get("/readyz")).status_code == 200
            assert requests_kept(store) == []
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert said == (
        f"genie serve: discarded request {cid} from the store {store}: this pipeline cannot "
        "read it\n"
    )
    assert proc.returncode == 0


def test_discard_unreadable_needs_a_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "steps.yaml", "--discard-unreadable"]) == 2
    assert capsys.readouterr().err == "genie serve: --discard-unreadable needs --store DIR\n"


def files_stop_growing() -> None:
    """In the server's process: no file may grow past 256 KiB, so the store's write of a
    large request fails as on a full disk (Python ignores SIGXFSZ: the write fails with
    EFBIG, which SQLite reports as a disk I/O error)."""
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))


def requests_kept(store: Path) -> list[str]:
    db = sqlite3.connect(store)
    try:
        return [row[0] for row in db.execute("SELECT correlation_id FROM requests")]
    finally:
        db.close()


async def test_a_server_whose_store_fails_answers_503_exits_1_and_resumes_on_restart(
    tmp_path: Path,
) -> None:
    """The store's disk refuses a write while ``genie serve --store`` serves: the request
    whose write failed, and the streamed one waiting in a handler, are told so naming the
    store file (a 503, an error frame); the process says it in one line, no traceback, and
    exits 1. Started again on the same store, with room, it resumes the waiting request,
    whose client reconnects and reads its result."""
    (tmp_path / "steps_agents.py").write_text(AGENTS)
    (tmp_path / "steps.yaml").write_text(PIPELINE)
    store = tmp_path / "store" / "steps.db"
    proc, url = start(tmp_path, preexec_fn=files_stop_growing)
    frames: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            ask = client.stream(
                "POST", "/v1/pipelines/steps/ask/stream", json={}, headers=auth(ALICE)
            )
            async with ask as response:
                assert response.status_code == 200
                location = response.headers["location"]
                lines = response.aiter_lines()
                async for line in lines:
                    frames.append(line)
                    if '"kind":"delivered"' in line and '"hops":1' in line:
                        break  # step 2 waits for GO
                waiting = location.rsplit("/", 1)[1]
                with anyio.fail_after(10):  # kept: the restart resumes it
                    while requests_kept(store) != [waiting]:  # noqa: ASYNC110 - another process's file
                        await anyio.sleep(0.02)
                big = await client.post(
                    "/v1/pipelines/steps/ask", json={"note": "x" * 400_000}, headers=auth(ALICE)
                )
                frames += [line async for line in lines]
        with anyio.fail_after(20):
            while proc.poll() is None:  # noqa: ASYNC110 - a process, not a task, to wait for
                await anyio.sleep(0.05)
        _, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    said = f"cannot write the store {store}: disk I/O error; the server is stopping"
    assert big.status_code == 503, big.text
    assert big.json()["error"] == said
    assert sse("\n".join(frames) + "\n")[-1][1:] == ("error", {"error": said})
    assert proc.returncode == 1
    assert err == (
        f"genie serve: cannot write the store {store}: disk I/O error; the server stopped, and "
        f"what it kept before is in the store: started again with --store {store.parent}, it "
        "resumes the requests\n"
    )

    (tmp_path / "GO").touch()
    result = await result_after_restart(tmp_path, location)
    assert result["status"] == "ok"
    assert result["output"]["payload"] == {"steps": 3}  # type: ignore[index]


SLEEPY = """
name: sleepy
agents:
  - id: sleeper
    use: tests.pipelines.loopers:Sleeper
    params: {seconds: 60}
entry: {type: serve, to: sleeper}
output: return
timeout: 60s
"""


def tool_call(n: int) -> dict[str, object]:
    """A JSON-RPC request calling the ``sleepy`` tool, as an MCP client posts it."""
    params = {"name": "sleepy", "arguments": {}}
    return {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": params}


async def test_an_mcp_call_the_stores_failure_cuts_short_is_answered_as_an_ask_is(
    tmp_path: Path,
) -> None:
    """``/mcp`` on a server whose store file is removed under a waiting tool call (an ask's
    write after it is what finds it gone): the call, and every ``/mcp`` request after, get
    the 503 that the ask gets, naming the store and why (the call's with its correlation id,
    to read after the restart), not the MCP SDK's error for a session it ended."""
    (tmp_path / "sleepy.yaml").write_text(SLEEPY)
    folder = tmp_path / "store"
    store = folder / "sleepy.db"
    folder.mkdir()
    settings = ServeSettings(mcp=True, store=folder, store_sync=0.01)
    headers = {**auth(ALICE), "Accept": "application/json, text/event-stream"}
    answers: list[httpx.Response] = []
    sleepy = load_pipeline(tmp_path / "sleepy.yaml")
    async with serving([sleepy], keyring(tmp_path), settings) as web:

        async def call() -> None:
            answers.append(await web.post("/mcp", json=tool_call(1), headers=headers))

        assert (await web.get("/readyz")).status_code == 200  # the store is made
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            with anyio.fail_after(10):  # the call's request is kept: the sleeper has it
                while not requests_kept(store):  # noqa: ASYNC110 - a file, not a task
                    await anyio.sleep(0.02)
            [waiting] = requests_kept(store)
            for made in folder.glob("sleepy.db*"):
                made.unlink()
            ask = await web.post("/v1/pipelines/sleepy/ask", json={}, headers=auth(ALICE))
        after = await web.post("/mcp", json=tool_call(2), headers=headers)
    said = (
        f"cannot write the store {store}: the file was removed or replaced while the runtime "
        "held it, and what it writes is not kept; the server is stopping"
    )
    assert (ask.status_code, ask.json()["error"]) == (503, said)
    [cut] = answers
    assert (cut.status_code, cut.json()) == (503, {"error": said, "correlation_id": waiting})
    assert (after.status_code, after.json()) == (503, {"error": said})


@pytest.mark.parametrize(
    ("table", "junk"),
    [
        ("messages", "INSERT INTO messages VALUES ('m', 'c', '{}', 'junk')"),
        ("requests", "INSERT INTO requests (correlation_id, body) VALUES ('c', 'not json')"),
    ],
)
def test_a_store_found_unusable_as_the_server_starts_is_one_line(
    tmp_path: Path, table: str, junk: str
) -> None:
    """A store that opens, but holds a row genie did not write (in its kept messages or its
    requests), is read before any runtime starts: ``genie serve`` says so in one line naming
    the file and exits 2, as for a store it cannot open, never saying where it answers, and
    not with uvicorn's traceback of the lifespan and exit 3."""
    (tmp_path / "steps_agents.py").write_text(AGENTS)
    (tmp_path / "steps.yaml").write_text(PIPELINE)
    store = tmp_path / "store" / "steps.db"
    store.parent.mkdir()
    DeliveryStore(store).close()
    db = sqlite3.connect(store)
    db.execute(junk)
    db.commit()
    db.close()
    code, err = refused(tmp_path)
    assert err == (
        f"genie serve: cannot use {store} as a store: a row of {table} is not genie's "
        "(Expecting value: line 1 column 1 (char 0))\n"
    )
    assert code == 2


def test_an_app_that_cannot_use_its_store_raises_its_error_and_logs_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``create_app`` with a store folder where a directory stands in the store's place: the
    lifespan raises the ``ConfigurationError`` naming the file (not a group), and uvicorn,
    told that line, logs it with no traceback before it gives up the start."""
    (tmp_path / "sleepy.yaml").write_text(SLEEPY)
    (tmp_path / "store" / "sleepy.db").mkdir(parents=True)
    said = f"cannot use {tmp_path / 'store' / 'sleepy.db'} as a store: it is a directory"

    def app() -> Starlette:
        settings = ServeSettings(store=tmp_path / "store")
        sleepy = load_pipeline(tmp_path / "sleepy.yaml")
        return create_app([sleepy], keyring(tmp_path), settings=settings)

    with pytest.raises(ConfigurationError) as raised, TestClient(app()):
        pass
    assert str(raised.value) == said

    served = app()
    server = uvicorn.Server(uvicorn.Config(served, lifespan="on", log_config=None))
    sock = free_socket()
    try:
        with caplog.at_level(logging.INFO, "uvicorn.error"), pytest.raises(SystemExit):
            anyio.run(server.serve, [sock])
    finally:
        sock.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.getMessage(), r.exc_info) for r in errors] == [
        (said, None),
        ("Application startup failed. Exiting.", None),
    ]
    assert isinstance(served.state.genie.unstarted, ConfigurationError)


def test_an_app_makes_its_store_folder(tmp_path: Path) -> None:
    """``ServeSettings(store=FOLDER)`` from Python makes a missing folder, as ``genie serve
    --store`` does, and keeps each pipeline's deliveries in ``FOLDER/NAME.db``."""
    (tmp_path / "sleepy.yaml").write_text(SLEEPY)
    folder = tmp_path / "not" / "yet"
    settings = ServeSettings(store=folder)
    app = create_app(
        [load_pipeline(tmp_path / "sleepy.yaml")], keyring(tmp_path), settings=settings
    )
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        assert (folder / "sleepy.db").is_file()
    # The store names the pipeline file served, for genie approvals' command that resumes it.
    store = StoreClient(folder / "sleepy.db")
    try:
        assert store.pipeline() == str((tmp_path / "sleepy.yaml").resolve())
    finally:
        store.close()


def test_a_store_in_use_is_one_line_and_the_server_never_answers(tmp_path: Path) -> None:
    """``genie serve --store`` whose store another runtime holds: one line naming it, exit 2,
    and no line saying where the server answers (it never did)."""
    (tmp_path / "steps_agents.py").write_text(AGENTS)
    (tmp_path / "steps.yaml").write_text(PIPELINE)
    store = tmp_path / "store" / "steps.db"
    store.parent.mkdir()
    held = DeliveryStore(store)
    try:
        code, err = refused(tmp_path)
    finally:
        held.close()
    assert err == f"genie serve: cannot use {store} as a store: another runtime holds it\n"
    assert code == 2
