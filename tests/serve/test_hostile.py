"""Hostile requests against a real server: what a client may not write into its request's
messages, however it spells it."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import anyio
import httpx
import pytest

from genie import Message, Observer, Runtime
from genie.serve import ServeSettings, load_keys

from .conftest import ALICE, auth, csv_body, finance, keyring, serving, sse
from .test_approvals_http import CLERK, TREASURER, first_pending, pending, setup

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


class Published(Observer):
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def published(self, msg: Message, recipients: int) -> None:
        self.messages.append(msg)


async def test_a_caller_cannot_write_the_trace_id_its_messages_carry(tmp_path: Path) -> None:
    """``metadata.trace_id`` is the trace the policies read (as Go callers write it): the
    server's word, the caller's ``traceparent`` or a trace of its own, never a value from
    ``Genie-Metadata`` that would tie the request to another's trace."""
    seen = Published()

    def observe(name: str, rt: Runtime) -> None:
        rt.add_observer(seen)

    forged = {"Genie-Metadata": '{"trace_id": "someone-elses-trace", "account_id": "a-1"}'}
    async with serving([finance(tmp_path)], keyring(tmp_path), observers=observe) as client:
        traced = await client.post(
            "/v1/pipelines/finance/ask",
            json=csv_body(),
            headers={**auth(ALICE), **forged, "traceparent": TRACEPARENT},
        )
        plain = await client.post(
            "/v1/pipelines/finance/ask", json=csv_body(), headers={**auth(ALICE), **forged}
        )
    assert traced.status_code == plain.status_code == 200
    for answer in (traced, plain):
        cid = answer.json()["correlation_id"]
        mine = [m for m in seen.messages if m.correlation_id == cid]
        assert mine
        for msg in mine:
            assert msg.metadata["trace_id"] == msg.trace_id, (msg.type, msg.metadata)
            assert msg.metadata["account_id"] == "a-1"  # the caller's own keys still reach
    assert {
        m.trace_id for m in seen.messages if m.correlation_id == traced.json()["correlation_id"]
    } == {CALLER_TRACE}


async def test_a_timeout_is_ascii_decimal_seconds_as_any_reader_would_read_it(
    tmp_path: Path,
) -> None:
    """Python's float() reads Arabic-Indic and full-width digits, underscores between digits
    and surrounding spaces: a proxy or a log reading the same query would not see the
    timeout the server applied. Each is refused, naming the parameter."""
    ask = "/v1/pipelines/finance/ask"
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        for spelt in ("\u0663", "\uff15", "1_0", " 5", "5\n", "1e1", "0x10"):
            r = await client.post(
                ask, params={"timeout": spelt}, json=csv_body(), headers=auth(ALICE)
            )
            assert r.status_code == 400, spelt
            assert r.json()["error"].startswith("query 'timeout' must be decimal seconds"), spelt
        for fine in ("30", "2.5", "300"):
            r = await client.post(
                ask, params={"timeout": fine}, json=csv_body(), headers=auth(ALICE)
            )
            assert r.status_code == 200, fine


async def test_a_traceparent_is_read_as_the_w3c_spec_reads_it(tmp_path: Path) -> None:
    """Two ``traceparent`` headers are one invalid header (HTTP joins them with a comma), and
    upper-case hex is no trace id: each starts a new trace, whichever header a proxy would
    have kept. A higher version's header joins the trace by its first four fields."""
    seen = Published()
    span = "00f067aa0ba902b7"
    other = "0af7651916cd43dd8448eb211c80319c"
    cases = {
        "twice": [("traceparent", TRACEPARENT), ("traceparent", f"00-{other}-{span}-01")],
        "upper": [("traceparent", f"00-{CALLER_TRACE.upper()}-{span.upper()}-01")],
        "future": [("traceparent", f"01-{CALLER_TRACE}-{span}-01-what-the-future-will-be-like")],
    }
    answers = {}
    async with serving(
        [finance(tmp_path)], keyring(tmp_path), observers=lambda n, rt: rt.add_observer(seen)
    ) as client:
        for name, headers in cases.items():
            answers[name] = await client.post(
                "/v1/pipelines/finance/ask",
                json=csv_body(),
                headers=[*auth(ALICE).items(), *headers],
            )
    for name, answer in answers.items():
        assert answer.status_code == 200, name
        cid = answer.json()["correlation_id"]
        request = next(m for m in seen.messages if m.correlation_id == cid)
        if name == "future":
            assert request.trace_id == CALLER_TRACE
            assert request.metadata["traceparent"] == f"00-{CALLER_TRACE}-{span}-01"
        else:
            assert request.trace_id not in (CALLER_TRACE, other), name
            assert "traceparent" not in request.metadata, name


async def test_an_approval_answer_with_a_mistyped_field_is_refused_and_stays_pending(
    tmp_path: Path,
) -> None:
    """``{"reasn": ...}`` was an answer without its reason: the approval decided, the reason
    lost. A body key that is not ``reason`` is a 400 naming it, and the approval waits."""
    pipeline, keys = setup(tmp_path)
    async with serving([pipeline], load_keys(keys, {})) as client:
        streamed: list[httpx.Response] = []

        async def ask() -> None:
            stream = "/v1/pipelines/pay/ask/stream"
            streamed.append(await client.post(stream, json={}, headers=auth(CLERK), timeout=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            approval = await first_pending(client, TREASURER)
            url = f"/v1/approvals/{approval['id']}/approve"
            typo = await client.post(url, json={"reasn": "in budget"}, headers=auth(TREASURER))
            assert typo.status_code == 400
            assert typo.json() == {
                "error": "the request body: unknown field 'reasn' (did you mean 'reason'?); "
                'an answer\'s body is {"reason": "..."}',
                "field": "reasn",
            }
            assert await pending(client, TREASURER) == [approval]  # nothing was decided
            answered = await client.post(url, json={"reason": "in budget"}, headers=auth(TREASURER))
            assert answered.status_code == 200
    [result] = [d for _, kind, d in sse(streamed[0].text) if kind == "result"]
    assert result["output"]["payload"]["reason"] == "in budget"  # type: ignore[index]


async def test_a_trailing_slash_is_a_json_404_not_a_redirect_to_the_host_header(
    tmp_path: Path,
) -> None:
    """Starlette answered ``/ask/`` with a 307 to a URL built from the request's ``Host``
    header, before any key was checked: an empty answer that sends a client, with its key and
    body, wherever the header said. A path the server does not serve is a JSON 404."""
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        for method, path in (("POST", "/v1/pipelines/finance/ask/"), ("GET", "/v1/pipelines/")):
            r = await client.request(
                method, path, json=csv_body(), headers={**auth(ALICE), "Host": "evil.example"}
            )
            assert r.status_code == 404, path
            assert "location" not in r.headers
            assert r.json() == {"error": f"{method} {path}: Not Found"}


async def test_a_last_event_id_past_the_frames_sent_replays_them_all(tmp_path: Path) -> None:
    """``Last-Event-ID: CID:999`` names a frame the request never sent: the resumed stream
    skipped every frame up to it, the ``result`` too, and ended empty. An id that is not one
    of this request's frames is read as a malformed one: every frame, from the start."""
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        first = await client.post(
            "/v1/pipelines/finance/ask/stream", json=csv_body(), headers=auth(ALICE)
        )
        frames = sse(first.text)
        cid = frames[0][2]["correlation_id"]
        for n in (len(frames), 999_999_999):
            again = await client.get(
                f"/v1/streams/{cid}", headers={**auth(ALICE), "Last-Event-ID": f"{cid}:{n}"}
            )
            assert again.status_code == 200
            assert sse(again.text) == frames, n
        last = await client.get(
            f"/v1/streams/{cid}",
            headers={**auth(ALICE), "Last-Event-ID": f"{cid}:{len(frames) - 2}"},
        )
        assert sse(last.text) == frames[-1:]  # a real id still resumes after it


async def test_a_last_event_id_given_twice_replays_the_stream(tmp_path: Path) -> None:
    """Two ``Last-Event-ID`` headers are one malformed id, as HTTP joins them
    (``CID:3, CID:9``), not the first one's: which one counts would depend on who reads them.
    A malformed id replays every frame."""
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        first = await client.post(
            "/v1/pipelines/finance/ask/stream", json=csv_body(), headers=auth(ALICE)
        )
        frames = sse(first.text)
        cid = frames[0][2]["correlation_id"]
        twice = [
            *auth(ALICE).items(),
            ("Last-Event-ID", f"{cid}:{len(frames) - 2}"),
            ("Last-Event-ID", f"{cid}:3"),
        ]
        again = await client.get(f"/v1/streams/{cid}", headers=twice)
    assert again.status_code == 200
    assert sse(again.text) == frames


async def test_a_body_that_trickles_in_is_cut_at_the_body_timeout(tmp_path: Path) -> None:
    """A caller with a key could send its body a byte at a time and hold the request, and a
    slot of the server, for as long as it liked. A body not in by ``body_timeout`` is a 408,
    nothing is asked, and the server goes on answering others."""
    settings = ServeSettings(body_timeout=0.5)
    async with serving([finance(tmp_path)], keyring(tmp_path), settings) as client:
        port = client.base_url.port
        assert port is not None
        head = (
            "POST /v1/pipelines/finance/ask HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {ALICE}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n"
        )
        started = time.monotonic()
        async with await anyio.connect_tcp("127.0.0.1", port) as slow:
            await slow.send(head.encode() + b'{"csv": ')  # and the rest never comes
            answer = b""
            with anyio.fail_after(10):
                while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                    answer += await slow.receive()
        waited = time.monotonic() - started
        status, _, body = answer.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 408 ")
        assert json.loads(body) == {"error": "the request body did not arrive within 0.5s"}
        assert waited < 5
        ok = await client.post("/v1/pipelines/finance/ask", json=csv_body(), headers=auth(ALICE))
        assert ok.status_code == 200


async def leave_mid_body(client: httpx.AsyncClient, port: int, sent: bytes) -> str:
    """Send ``sent`` (a request's head and part of its body) on a connection of its own and
    leave; the server's metrics once it has counted the request."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    await stream.send(sent)
    await anyio.sleep(0.2)
    await stream.aclose()
    with anyio.fail_after(5):
        while True:
            metrics = (await client.get("/metrics")).text
            if "genie_serve_requests_total{" in metrics:
                return metrics
            await anyio.sleep(0.02)


async def test_a_client_that_leaves_mid_body_is_no_fault_of_the_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that closes its connection before its body is in asked nothing: no ERROR
    with a traceback on the server's log, no 500 counted against the server (499, as the
    proxies count a client that closed first), nothing asked, and the next request served."""
    runtimes: list[Runtime] = []
    async with serving(
        [finance(tmp_path)], keyring(tmp_path), observers=lambda _, rt: runtimes.append(rt)
    ) as client:
        port = client.base_url.port
        assert port is not None
        head = (
            "POST /v1/pipelines/finance/ask HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {ALICE}\r\nContent-Length: 100\r\n\r\n"
        )
        metrics = await leave_mid_body(client, port, head.encode() + b'{"csv": ')
        after = await client.post("/v1/pipelines/finance/ask", json=csv_body(), headers=auth(ALICE))
        published = runtimes[0].statistics().published
    assert 'genie_serve_requests_total{code="499",route="ask"} 1.0' in metrics
    assert 'code="500"' not in metrics
    assert after.status_code == 200
    assert published == 11  # the finance run's messages: the request that left asked nothing
    faults = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert faults == [], [r.getMessage() for r in faults]


async def test_a_path_cannot_drive_the_terminal_or_break_the_line_of_the_servers_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The path is decoded before the server reads it: ``%1B`` in it is an escape a terminal
    acts on, ``%E2%80%A8`` a line separator. Logged as it was, it could set the terminal's
    title or begin a line that read as the server's own; it is logged escaped."""
    caplog.set_level(logging.INFO, logger="genie.serve")
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        port = client.base_url.port
        assert port is not None
        head = (
            "POST /v1/approvals/x%1B]0;pwned%07%E2%80%A8CRITICAL%20forged/approve HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {ALICE}\r\nContent-Length: 100\r\n\r\n"
        )
        await leave_mid_body(client, port, head.encode() + b'{"reason": ')
    [left] = [r.getMessage() for r in caplog.records if "client left" in r.getMessage()]
    assert left.isprintable(), left
    assert "x\\x1b]0;pwned\\x07\\u2028CRITICAL forged" in left, left


MCP_HEAD = (
    "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    "Accept: application/json, text/event-stream\r\n"
    f"Authorization: Bearer {ALICE}\r\nContent-Length: 100\r\n\r\n"
)


async def test_an_mcp_body_that_trickles_in_is_cut_at_the_body_timeout(tmp_path: Path) -> None:
    """``--body-timeout`` holds for ``/mcp`` as for every route: a body not in by then is a
    408, not a request held open for as long as its caller likes."""
    settings = ServeSettings(mcp=True, body_timeout=0.5)
    async with serving([finance(tmp_path)], keyring(tmp_path), settings) as client:
        port = client.base_url.port
        assert port is not None
        assert (await client.get("/readyz")).status_code == 200
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(MCP_HEAD.encode() + b'{"jsonrpc": ')
        answer = b""
        with anyio.fail_after(3):
            while b"\r\n\r\n" not in answer:
                answer += await stream.receive()
        await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]


async def test_an_mcp_client_that_leaves_mid_body_is_no_fault_of_the_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ServeSettings(mcp=True)
    async with serving([finance(tmp_path)], keyring(tmp_path), settings) as client:
        port = client.base_url.port
        assert port is not None
        assert (await client.get("/readyz")).status_code == 200
        metrics = await leave_mid_body(client, port, MCP_HEAD.encode() + b'{"jsonrpc": ')
    assert 'genie_serve_requests_total{code="499",route="mcp"} 1.0' in metrics
    faults = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert faults == [], [r.getMessage() for r in faults]
