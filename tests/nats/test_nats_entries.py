"""``entries``: every live entry of a KV bucket under a key, in the order written, read by one
pull consumer that knows how many to wait for (a KV watch could end before its first entry
on a loaded machine), and leaves no consumer behind. Against a real ``nats-server``."""

from __future__ import annotations

import pytest
from nats.js.api import KeyValueConfig

from genie.nats._server import LocalNatsServer
from genie.nats._wire import entries

from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import jetstream
from .test_nats import server as server

pytestmark = pytest.mark.xdist_group("nats")


async def test_entries_are_every_live_one_under_the_key_in_the_order_written(
    server: LocalNatsServer,
) -> None:
    async with jetstream(server.url) as js:
        kv = await js.create_key_value(KeyValueConfig(bucket="T", history=1))
        assert await entries(js, "T", "a.>") == []  # none yet: no wait for any
        for n in range(300):
            await kv.put(f"a.{n}", f"{n}".encode())
        await kv.put("b.0", b"other")
        for n in range(0, 300, 30):
            await kv.delete(f"a.{n}")
        await kv.put("a.1", b"again")  # rewritten: the last value, in its new place
        found = await entries(js, "T", "a.>")
        live = [(f"a.{n}", f"{n}".encode()) for n in range(2, 300) if n % 30]
        assert found == [*live, ("a.1", b"again")]  # a.1 was written last
        assert await entries(js, "T", "b.>") == [("b.0", b"other")]
        assert (await js.stream_info("KV_T")).state.consumer_count == 0  # none left behind
