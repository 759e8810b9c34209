"""An agent no worker hosts, on a real ``nats-server``: the sender is told at once which
agent it is, a worker that starts late still gets the deliveries, and ``genie run --timeout``
ends at its timeout plus a short bounded wait, naming the agent."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import time
from pathlib import Path

import anyio
import pytest

from genie import Runtime
from genie._cli.main import main
from genie._errors import ConfigurationError
from genie.nats._presence import PROBE_WAIT, PROBES, QUEUE, unhosted
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport

from ..conftest import Echo, Ping
from .test_nats import FINANCE, eventually
from .test_nats import server as server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


def build(transport: NatsTransport) -> Runtime:
    rt = Runtime(transport=transport)
    rt.add(Echo("echo"))
    rt.add(Echo("other"))
    transport.attach(rt)
    return rt


async def test_a_publish_names_the_agents_no_worker_hosts_and_a_late_worker_still_serves(
    server: LocalNatsServer,
) -> None:
    names = NatsNames("presence")
    told: list[list[str]] = []
    entry_t = NatsTransport(server.url, names, on_unhosted=told.append)
    worker_t = NatsTransport(server.url, names, hosted=["echo"])
    late_t = NatsTransport(server.url, names, hosted=["other"])
    entry, worker, late = build(entry_t), build(worker_t), build(late_t)
    for t in (entry_t, worker_t, late_t):
        await t.connect()
    try:
        async with worker, entry:
            await worker_t.serving()
            answered = await entry.ask(entry.message(Ping(n=1), recipient="echo"), timeout=10)
            assert answered.status == "complete"

            async def told_once() -> bool:
                return bool(told)

            await eventually(told_once, timeout=5)
            assert told == [["other"]]  # the agent with a worker is not named
            assert await entry_t.unhosted() == {"other": 0}

            stuck = await entry.ask(entry.message(Ping(n=2), recipient="other"), timeout=1)
            assert stuck.status == "timed_out"
            assert await entry_t.unhosted() == {"other": 1}  # its delivery waits for a worker

            async with late:
                await late_t.serving()
                assert await entry_t.unhosted() == {}
                served = await entry.ask(entry.message(Ping(n=3), recipient="other"), timeout=10)
                assert served.status == "complete"
            # A worker that stopped no longer answers for the agent it hosted (the count may
            # still hold the last delivery: its ack follows its outcome record).
            assert list(await entry_t.unhosted(["other", "echo"])) == ["other"]
        assert told == [["other"]]  # once: no second warning while nothing changed
    finally:
        for t in (entry_t, worker_t, late_t):
            await t.close()


async def test_an_on_unhosted_hook_that_raises_is_logged_and_the_runtime_goes_on(
    server: LocalNatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """It ended the runtime: the hook's error left the probe's task, in the runtime's group."""
    names = NatsNames("hook")
    told: list[list[str]] = []

    def hook(agents: list[str]) -> None:
        told.append(agents)
        raise RuntimeError("the pager is down")

    entry_t = NatsTransport(server.url, names, on_unhosted=hook)
    worker_t = NatsTransport(server.url, names, hosted=["echo"])
    entry, worker = build(entry_t), build(worker_t)
    for t in (entry_t, worker_t):
        await t.connect()
    try:
        async with worker, entry:
            await worker_t.serving()
            with caplog.at_level(logging.ERROR, logger="genie.nats"):
                answered = await entry.ask(entry.message(Ping(n=1), recipient="echo"), timeout=10)

                async def told_once() -> bool:
                    return bool(told)

                await eventually(told_once, timeout=5)
                again = await entry.ask(entry.message(Ping(n=2), recipient="echo"), timeout=10)
            assert (answered.status, again.status) == ("complete", "complete")
        assert told == [["other"]]
        assert "on_unhosted raised, told of other" in caplog.text
        assert "the pager is down" in caplog.text
    finally:
        for t in (entry_t, worker_t):
            await t.close()


@pytest.mark.parametrize(
    ("agents", "refused"),
    [
        ("echo", "unhosted: agents must be agent ids (a list, not a string), not 'echo'"),
        (["echo", "a b"], "agent id 'a b' cannot name a NATS subject"),
        ([5], "agent id 5 cannot name a NATS subject"),
    ],
    ids=["a-string", "no-subject", "not-a-string"],
)
async def test_unhosted_refuses_agents_it_cannot_ask_for_naming_them(
    server: LocalNatsServer, agents: object, refused: str
) -> None:
    """A string was its characters, each an agent nobody hosts ({"e": 0, "c": 0, ...}), and an
    id that names no subject failed in its probe's task, as an exception group."""
    entry_t = NatsTransport(server.url, NatsNames("presence-args"))
    build(entry_t)
    await entry_t.connect()
    try:
        with pytest.raises(ConfigurationError) as caught:
            await entry_t.unhosted(agents)  # type: ignore[arg-type]
    finally:
        await entry_t.close()
    assert str(caught.value).startswith(refused)


def test_genie_run_with_no_worker_names_the_agent_and_ends_at_its_timeout(
    server: LocalNatsServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A pipeline in a folder whose name a shell would split or stop at: the command the run
    # says to start a worker with runs as printed.
    config = tmp_path / "Tina's config"
    shutil.copytree(FINANCE.parent.parent, config)
    pipeline = config / FINANCE.parent.name / FINANCE.name
    timeout = 2
    started = time.monotonic()
    code = main(["run", os.fspath(pipeline), "--nats", server.url, "--timeout", str(timeout)])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 1, err
    # The deadline, at most 2 s for the cancelled request to report, and connecting and
    # closing (the wait used to be the 10 s drain on top of the deadline).
    assert elapsed < timeout + 2 + 3, err
    # Named at once, before the deadline passed; then the run's end names it again.
    assert lines[0].startswith(
        "genie run: no worker hosts agents 'financial_supervisor', 'ingestor'"
    ), err
    assert lines[1] == "genie run: finance: the run ended timed_out", err
    assert lines[-1].startswith(
        "  financial_supervisor: no worker hosts it; 1 delivery waits for it in the stream"
    ), err
    command = lines[-1].split(" in the stream (", 1)[1].removesuffix(")")
    assert shlex.split(command) == [
        *("genie", "worker", os.fspath(pipeline), "--nats", server.url),
        *("--agents", "financial_supervisor"),
    ], err


async def test_a_probe_that_times_out_is_made_again(server: LocalNatsServer) -> None:
    """A probe nobody answers in time may have reached a worker that was stopping (the server
    can route it to a subscription just removed): it is asked again, and "nobody" said twice
    after it names the agent. Silence on every probe is a busy worker: the agent is hosted."""
    import nats

    names = NatsNames("probes")
    nc = await nats.connect(server.url)
    try:

        async def silent(_: object) -> None:
            pass  # hears the probe, never answers: a worker busy with its handlers

        busy = await nc.subscribe(names.presence("busy"), queue=QUEUE, cb=silent)
        stopping = await nc.subscribe(names.presence("stopping"), queue=QUEUE, cb=silent)
        await nc.flush()

        async def stop_soon() -> None:
            await anyio.sleep(PROBE_WAIT / 2)  # while the first probe waits for its answer
            await stopping.unsubscribe()
            await nc.flush()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_soon)
            started = anyio.current_time()
            found = await unhosted(nc, names, ["busy", "stopping", "gone"])
        assert found == ["stopping", "gone"]
        assert anyio.current_time() - started < PROBES * PROBE_WAIT + 0.5  # bounded
        await busy.unsubscribe()
    finally:
        await nc.close()
