"""Processes of one namespace must run one pipeline and one wire protocol: a process that
joins a namespace used by another pipeline, or by a genie whose wire differs, is refused at
connect with one line naming both (docs/scale-out.md, "One pipeline, one wire")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import nats
import pytest
from nats.js.api import StreamConfig

from genie import BaseAgent, Context, Limits, Message, Runtime, handler
from genie._errors import ConfigurationError
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport
from genie.nats._wire import WIRE_VERSION

from ..conftest import Ping, Pong
from .test_nats import server as server

ROOT = Path(__file__).parents[2]
VOLLEY = Path(__file__).parent / "nats_volley.yaml"
GENIE = Path(sys.executable).parent / "genie"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


class Echo(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.n))


def attached(url: str, ns: str, *, budget: int = 100, replace: bool = False) -> NatsTransport:
    """A process of namespace ``ns`` whose pipeline is an echo agent under ``budget``."""
    transport = NatsTransport(url, NatsNames(ns), replace=replace)
    rt = Runtime(transport=transport, limits=Limits(correlation_budget=budget))
    rt.add(Echo("echo"))
    transport.attach(rt)
    return transport


async def test_a_process_of_another_pipeline_is_refused_naming_both(
    server: LocalNatsServer,
) -> None:
    first, same, other = (attached(server.url, "ver", budget=b) for b in (100, 100, 7))
    await first.connect()
    try:
        await same.connect()  # the same pipeline joins
        with pytest.raises(ConfigurationError) as caught:
            await other.connect()
        text = str(caught.value)
        assert "\n" not in text
        assert str(first.fingerprint) in text
        assert str(other.fingerprint) in text
        assert first.fingerprint != other.fingerprint
        assert "--namespace" in text
        assert "--replace" in text
    finally:
        for t in (first, same, other):
            await t.close()


async def test_a_process_of_another_wire_version_is_refused(server: LocalNatsServer) -> None:
    """A namespace an older genie made (wire 1: it ignores a record's ``ended`` timers, and
    a request would hang) refuses this genie, and names both versions."""
    names = NatsNames("older")
    nc = await nats.connect(server.url)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name=names.work, subjects=[names.agents], metadata={"genie_wire": "1"})
        )
    finally:
        await nc.close()
    transport = attached(server.url, "older")
    with pytest.raises(ConfigurationError) as caught:
        await transport.connect()
    text = str(caught.value)
    assert f"wire {WIRE_VERSION}" in text, text
    assert "wire 1" in text, text
    assert WIRE_VERSION >= 2  # the outcome record's ``ended`` list changed the wire


async def test_two_pipelines_starting_at_once_one_is_refused(server: LocalNatsServer) -> None:
    """No read-then-write: the stream's creation is the claim, so of two processes of
    different pipelines that connect at once on a new namespace exactly one joins."""
    for attempt in range(5):
        one, two = (attached(server.url, f"race{attempt}", budget=b) for b in (10, 20))
        refused: list[str] = []

        async def join(t: NatsTransport, refused: list[str] = refused) -> None:
            try:
                await t.connect()
            except ConfigurationError as exc:
                refused.append(str(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(join, one)
            tg.start_soon(join, two)
        assert len(refused) == 1, refused
        for t in (one, two):
            await t.close()


async def test_replace_takes_a_namespace_over_only_when_nothing_waits_in_it(
    server: LocalNatsServer,
) -> None:
    old = attached(server.url, "moved", budget=10)
    await old.connect()
    await old.js.publish(NatsNames("moved").agent("echo"), b"{}")  # a delivery of the old one
    await old.close()
    new = attached(server.url, "moved", budget=20, replace=True)
    with pytest.raises(ConfigurationError) as caught:
        await new.connect()
    assert "1 delivery" in str(caught.value), caught.value
    await new.close()

    nc = await nats.connect(server.url)
    try:
        await nc.jetstream().purge_stream(NatsNames("moved").work)
    finally:
        await nc.close()
    new = attached(server.url, "moved", budget=20, replace=True)
    await new.connect()  # nothing of the old version waits: the new one takes over
    again = attached(server.url, "moved", budget=10)
    try:
        with pytest.raises(ConfigurationError):
            await again.connect()  # the old version is now the other one
    finally:
        await again.close()
        await new.close()


def test_genie_worker_of_an_edited_file_is_refused_with_one_line(
    server: LocalNatsServer, tmp_path: Path
) -> None:
    edited = tmp_path / VOLLEY.name  # the same name: the same namespace
    edited.write_text(VOLLEY.read_text().replace("correlation_budget: 7", "correlation_budget: 8"))
    env = {**os.environ, "PYTHONPATH": os.fspath(ROOT)}
    first = subprocess.Popen(
        [os.fspath(GENIE), "worker", os.fspath(VOLLEY), "--nats", server.url],
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        assert first.stderr is not None
        assert b"genie worker: hosting" in first.stderr.readline()
        second = subprocess.run(
            [os.fspath(GENIE), "worker", os.fspath(edited), "--nats", server.url],
            capture_output=True,
            cwd=ROOT,
            env=env,
            timeout=60,
        )
    finally:
        first.kill()
        first.wait()
        assert first.stderr is not None
        first.stderr.close()
    err = second.stderr.decode()
    assert second.returncode == 2, err
    assert err.count("\n") == 1, err
    assert err.startswith("genie worker: "), err
    assert "nats_volley" in err, err
    assert "runs pipeline" in err, err
