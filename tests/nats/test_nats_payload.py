"""What genie publishes for a delivery (its outcome record, its dead letter, what a fan-in
keeps, its audit rows, a request's answer) crosses the broker whatever the delivery's headers
and ids carry: cut to fit max_payload where it must be, saying what was cut; a broker whose
max_payload is too small for that is refused at connect. Against a real ``nats-server``
started with the max_payload each test names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import pytest

from genie import BaseAgent, Context, Message, Runtime, handler
from genie._errors import ConfigurationError, middle_cut
from genie.nats._run import ID_CHARS, MIN_MAX_PAYLOAD, fitted
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport
from genie.nats._wire import MSG_ID, PARENT, header_bytes

from ..conftest import Echo, Failing, Ping, Pong
from .test_nats import eventually, jetstream, stream

pytestmark = pytest.mark.xdist_group("nats")

LIMIT = 32 * 1024
# A parent header that fits the broker's limit but, each quote escaped, not a record holding it.
HOSTILE_PARENT = '"' * 16_600
JUNK = {f"X-Junk-{i}": "j" * 50 for i in range(100)}  # many headers nobody reads


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


async def _hosted(url: str, names: NatsNames, agent: BaseAgent) -> tuple[Runtime, NatsTransport]:
    transport = NatsTransport(url, names, hosted=[agent.id])
    rt = Runtime(transport=transport)
    rt.add(agent)
    transport.attach(rt)
    await transport.connect()
    return rt, transport


@pytest.mark.parametrize(
    ("agent", "records"),
    [(Echo, "outcomes"), (Failing, "dead")],
    ids=["handled", "failed"],
)
async def test_a_delivery_with_huge_headers_gets_a_record_that_fits(
    tmp_path: Path, agent: type[Echo | Failing], records: str
) -> None:
    """A decodable delivery straight on the work stream, its Genie-Parent header (and a
    hundred others) taking most of the broker's max_payload: its outcome record, holding that
    parent escaped, was over the limit, the worker ended its delivery as "its outputs were not
    sent", failed to publish that too, and its runtime stopped (the delivery came back to
    every worker hosting the agent). The record cuts the parent to its two ends, names it in
    ``ids_cut``, and the worker goes on."""
    names = NatsNames("hostile")
    with LocalNatsServer(tmp_path / "nats", max_payload=LIMIT) as server:
        worker_rt, worker_t = await _hosted(server.url, names, agent("echo"))
        try:
            async with worker_rt:
                msg = worker_rt.message(Ping(n=1), recipient="echo")
                subject, data, headers = worker_t._out.item(msg, "echo", "hostile")
                async with jetstream(server.url) as js:
                    await js.publish(
                        subject, data, headers={**headers, PARENT: HOSTILE_PARENT, **JUNK}
                    )

                    async def recorded() -> bool:
                        return (await js.stream_info(names.work)).state.messages == 0

                    await eventually(recorded, timeout=10)
                    kept = await stream(js, getattr(names, records))
                with anyio.fail_after(10):
                    answer = await worker_rt.ask(
                        worker_rt.message(Ping(n=2), recipient="echo"), timeout=10
                    )
        finally:
            await worker_t.close()
    [record] = [r for r in kept if r["delivery"] == f"{msg.id}:echo"]
    assert record["ids_cut"] == ["parent"]
    assert record["parent"] == middle_cut(HOSTILE_PARENT, ID_CHARS)
    assert record["outcome"] == ("handled" if records == "outcomes" else "dead_lettered")
    if records == "outcomes":
        assert [m.payload for m in answer.replies] == [Pong(n=2)]  # the worker went on
    else:
        assert record["reason"] == "RuntimeError: boom #1"  # the handler's own failure
        assert record["message"]["id"] == msg.id
        assert {m.reason for m in answer.missing} == {"RuntimeError: boom #2"}  # went on


class Verbose(BaseAgent):
    """Fails with a long message: its reason and traceback take kilobytes."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        raise RuntimeError("no luck: " + "x" * 3_000)


async def test_a_dead_letter_over_a_small_max_payload_keeps_its_reason(tmp_path: Path) -> None:
    """At the smallest max_payload genie takes, a handler's failure whose reason and traceback
    take kilobytes: its dead letter was over the limit, the worker replaced it by one saying
    "its outputs were not sent" (the handler's error and its type lost). The record keeps its
    reason and error type, cuts the middles of its reason and tracebacks to fit and says how
    many characters it cut."""
    names = NatsNames("small")
    with LocalNatsServer(tmp_path / "nats", max_payload=MIN_MAX_PAYLOAD) as server:
        worker_rt, worker_t = await _hosted(server.url, names, Verbose("verbose"))
        entry_t = NatsTransport(server.url, names)
        entry_rt = Runtime(transport=entry_t)
        entry_rt.add(Verbose("verbose"))
        entry_t.attach(entry_rt)
        await entry_t.connect()
        try:
            async with worker_rt, entry_rt:
                msg = entry_rt.message(Ping(n=1), recipient="verbose")
                with anyio.fail_after(10):
                    result = await entry_rt.ask(msg, timeout=10)
                async with jetstream(server.url) as js:
                    [letter] = await stream(js, names.dead)
        finally:
            for t in (worker_t, entry_t):
                await t.close()
    [missing] = result.missing
    assert missing.reason.startswith("RuntimeError: no luck: xxx")
    assert "characters cut" in missing.reason
    [dead] = entry_rt.dead_letters
    assert dead.error_type == "RuntimeError"
    assert letter["reason"] == missing.reason
    [traceback] = letter["tracebacks"]
    assert "RuntimeError: no luck" in traceback  # its end
    assert re.search(r"\[\.\.\. [\d,]+ characters cut \.\.\.\]", traceback)
    assert len(json.dumps(letter, separators=(",", ":"))) <= MIN_MAX_PAYLOAD
    assert letter["message"]["id"] == msg.id  # the message itself still whole


@pytest.mark.parametrize("limit", [512, MIN_MAX_PAYLOAD - 1])
async def test_a_broker_whose_max_payload_is_too_small_is_refused_at_connect(
    tmp_path: Path, limit: int
) -> None:
    """A broker whose max_payload cannot hold the smallest record genie publishes for a
    delivery: it connected, and the first dead letter could not be published. It is a clear
    error at connect, naming the server's max_payload and the least genie needs."""
    with LocalNatsServer(tmp_path / "nats", max_payload=limit) as server:
        transport = NatsTransport(server.url, NatsNames("tiny"))
        with pytest.raises(ConfigurationError) as refused:
            await transport.connect()
    text = str(refused.value)
    assert f"max_payload of {limit:,} bytes" in text
    assert f"at least {MIN_MAX_PAYLOAD:,}" in text


def test_the_smallest_record_fits_the_least_max_payload() -> None:
    """The worst a record can be once cut: every id hostile (a character escaped in twelve
    bytes), as are its reason, tracebacks and message text: it fits in ``MIN_MAX_PAYLOAD``
    less its header block (the record's id, at most ``ID_CHARS`` bytes)."""
    hostile = "\U0001f600" * 50_000
    record = {
        "delivery": hostile,
        "correlation_id": hostile,
        "agent": "a" * 64,
        "outcome": "dead_lettered",
        "parent": hostile,
        "spawned": 0,
        "answered": 0,
        "denied": [],
        "shed": [],
        "replies": [],
        "kind": "failed",
        "reason": hostile,
        "attempts": 1,
        "error_type": "RuntimeError",  # a class name of the worker's own
        "tracebacks": [hostile] * 5,
        "message": None,
        "about": {"message_id": hostile, "message_type": hostile, "sender": hostile},
        "raw": hostile,
    }
    room = MIN_MAX_PAYLOAD - header_bytes({MSG_ID: "i" * ID_CHARS})
    data = fitted(record, room)
    assert len(data) <= room
    cut = json.loads(data)
    assert cut["ids_cut"] == [
        "delivery", "correlation_id", "parent", "message_id", "message_type", "sender"
    ]  # fmt: skip
    assert cut["raw_cut"] == len(hostile)


class Keeper(BaseAgent):
    """A fan-in that keeps every correlation (its deliveries go to the held bucket)."""

    produces = (Pong,)

    def keeps(self, correlation_id: str) -> bool:
        return True

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.n))


async def test_a_fan_ins_delivery_with_a_huge_parent_is_kept_with_it_cut(tmp_path: Path) -> None:
    """A fan-in keeps what it took in the held bucket, its parent with it: a hostile parent
    made the kept value over max_payload, its write was retried for ever, and the fan-in,
    its one slot taken, answered nobody again. The parent is kept cut to its two ends."""
    names = NatsNames("hostile")
    with LocalNatsServer(tmp_path / "nats", max_payload=LIMIT) as server:
        worker_rt, worker_t = await _hosted(server.url, names, Keeper("keeper"))
        try:
            async with worker_rt:
                msg = worker_rt.message(Ping(n=1), recipient="keeper")
                subject, data, headers = worker_t._out.item(msg, "keeper", "hostile")
                async with jetstream(server.url) as js:
                    await js.publish(subject, data, headers={**headers, PARENT: HOSTILE_PARENT})
                    with anyio.fail_after(10):
                        answer = await worker_rt.ask(
                            worker_rt.message(Ping(n=2), recipient="keeper"), timeout=10
                        )
                    kept = [json.loads(v) for _, v in await worker_t._held._store.entries(">")]
        finally:
            await worker_t.close()
    assert [m.payload for m in answer.replies] == [Pong(n=2)]
    [hostile] = [k for k in kept if k["delivery"]["message"]["id"] == msg.id]
    assert hostile["parent"] == middle_cut(HOSTILE_PARENT, ID_CHARS)


async def test_an_audit_row_over_max_payload_is_written_cut(tmp_path: Path) -> None:
    """An audit row whose details (a policy's reason, a dead letter's, ids from outside) are
    over the broker's max_payload was published again and again, a warning each time: it and
    every row after it were never written. Each long detail keeps its two ends, ``cut``
    names them, and the chain still verifies."""
    from datetime import UTC, datetime

    from genie._runtime.audit import AuditRecord, verify_audit_log
    from genie.nats._audit import as_file, read_chain

    names = NatsNames("audited")
    at = datetime.now(UTC)
    big = AuditRecord(
        at=at,
        actor="policy",
        action="deny",
        target="echo",
        details={"reason": '"' * 5_000, "message_id": "m" * 3_000, "short": "kept"},
    )
    after = AuditRecord(at=at, actor="policy", action="deny", target="echo", details={})
    with LocalNatsServer(tmp_path / "nats", max_payload=MIN_MAX_PAYLOAD) as server:
        transport = NatsTransport(server.url, names)
        rt = Runtime(transport=transport)
        transport.attach(rt)
        await transport.connect()
        try:
            transport.audit.record(big)
            transport.audit.record(after)
            with anyio.fail_after(10):
                await transport.audit.drain(transport.js)
            lines = await read_chain(transport.js, names.audit)
        finally:
            await transport.close()
    rows = [json.loads(line) for line in lines]
    assert [r["action"] for r in rows] == ["deny", "deny"]
    details = rows[0]["details"]
    assert details["cut"] == "message_id,reason"
    assert details["short"] == "kept"
    for name in ("message_id", "reason"):
        assert "characters cut ...]" in details[name]
    with as_file(lines) as path:
        verify_audit_log(path)


@pytest.mark.parametrize("message_id", ["a b", "i" * 12_000], ids=["not-a-token", "long"])
async def test_a_request_whose_id_names_no_subject_is_answered(
    tmp_path: Path, message_id: str
) -> None:
    """A delivery straight on the work stream with the Genie-Request header, whose message
    id cannot be a subject token (a space in it; 12,000 characters, which made the publish's
    control line too long for the server): its answer's subject was spelled from that id,
    and the worker's runtime stopped (a ConfigurationError; the server dropping the
    connection). The answer's subject is a hash of such an id, and the worker goes on."""
    names = NatsNames("hostile")
    with LocalNatsServer(tmp_path / "nats", max_payload=LIMIT) as server:
        worker_rt, worker_t = await _hosted(server.url, names, Echo("echo"))
        try:
            async with worker_rt:
                msg = worker_rt.message(Ping(n=1), recipient="echo", id=message_id)
                subject, data, headers = worker_t._out.item(msg, "echo", "hostile", request=True)
                async with jetstream(server.url) as js:
                    await js.publish(subject, data, headers={**headers, MSG_ID: "by-hand"})

                    async def ran() -> bool:
                        return (await js.stream_info(names.work)).state.messages == 0

                    await eventually(ran, timeout=10)
                with anyio.fail_after(10):
                    answer = await worker_rt.ask(
                        worker_rt.message(Ping(n=2), recipient="echo"), timeout=10
                    )
        finally:
            await worker_t.close()
    assert [m.payload for m in answer.replies] == [Pong(n=2)]
    assert names.reply(message_id).startswith("genie.hostile.reply.%")


def test_a_short_request_id_names_its_answers_subject() -> None:
    names = NatsNames("ns")
    assert names.reply("abc.def") == "genie.ns.reply.abc~def"
    assert names.reply("a b") != names.reply("a_b")
