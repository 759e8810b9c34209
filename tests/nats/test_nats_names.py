"""Names on a real ``nats-server``: agent ids and namespaces that differ only in the
characters a NATS name cannot keep apart (``.`` and ``_``, ``-`` and ``_``, case) are never
mixed up: each agent runs its own deliveries, and a namespace never takes over another's
streams."""

from __future__ import annotations

import anyio
import pytest

from genie import ConfigurationError, Runtime
from genie.nats._names import NatsNames
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsTransport

from ..conftest import Echo, Ping
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import server as server

pytestmark = pytest.mark.xdist_group("nats")


async def test_agents_whose_ids_differ_in_dot_and_underscore_run_their_own_deliveries(
    server: LocalNatsServer,
) -> None:
    """Agents ``a.b`` and ``a_b`` had one durable consumer name (``a_b``): one agent's
    consumer was the other's, so a delivery to one could be run by the other's worker."""
    names = NatsNames("dots")
    worker_t = NatsTransport(server.url, names, hosted=["a.b", "a_b"])
    entry_t = NatsTransport(server.url, names)
    runtimes = (Runtime(transport=worker_t), Runtime(transport=entry_t))
    agents: dict[str, Echo] = {}
    for rt, t in zip(runtimes, (worker_t, entry_t), strict=True):
        for agent_id in ("a.b", "a_b"):
            agent = Echo(agent_id)
            rt.add(agent)
            if rt is runtimes[0]:
                agents[agent_id] = agent
        t.attach(rt)
        await t.connect()
    worker_rt, entry = runtimes
    try:
        async with worker_rt, entry:
            await worker_t.serving()
            with anyio.fail_after(20):
                for n, agent_id in enumerate(("a.b", "a_b", "a.b", "a_b")):
                    request = entry.message(Ping(n=n), recipient=agent_id)
                    result = await entry.ask(request, timeout=10)
                    assert result.status == "complete", (agent_id, result)
    finally:
        for t in (worker_t, entry_t):
            await t.close()
    assert [m.recipient for m in agents["a.b"].seen] == ["a.b", "a.b"]
    assert [m.recipient for m in agents["a_b"].seen] == ["a_b", "a_b"]


@pytest.mark.parametrize(("first", "second"), [("shop-a", "shop_a"), ("Shop", "shop")])
async def test_a_namespace_never_takes_over_the_streams_of_another(
    server: LocalNatsServer, first: str, second: str
) -> None:
    """Namespaces whose stream names agree (``-`` and ``_`` and case are one there) shared
    them: the second to connect rewrote the streams' subjects to its own, and the first's
    deliveries had no stream to go to. The second is refused, naming both."""
    one = NatsTransport(server.url, NatsNames(first))
    await one.connect()
    other = NatsTransport(server.url, NatsNames(second))
    try:
        with pytest.raises(ConfigurationError) as caught:
            await other.connect()
        assert repr(second) in str(caught.value)
        assert repr(first) in str(caught.value)
        info = await one.js.stream_info(NatsNames(first).work)
        assert info.config.subjects == [NatsNames(first).agents]
    finally:
        await other.close()
        await one.close()
