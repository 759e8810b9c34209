"""Pipelines as MCP tools, driven by the MCP SDK's own client: over stdio against a real
``genie mcp`` process, over streamable HTTP against a real ``genie serve`` app on 127.0.0.1,
and in memory against ``PipelineTools``."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from genie import ConfigurationError, MemoryAuditLog, Runtime, verify_audit_log
from genie._cli.main import main
from genie._runtime.audit import read_audit_key
from genie.mcp import AssertedCaller, PipelineTools, serve_stdio
from genie.pipeline import load_pipeline
from genie.serve import ServeSettings

from ..serve.conftest import ALICE, EVE, ROOT, auth, finance, keyring, serving

FINANCE = str(ROOT / "config/pipelines/finance.yaml")
QUESTION = {"question": "Where did my money go last month?"}
# The SDK starts a server on stdio with a few safe variables only: without PYTHONPATH, the
# ``genie mcp`` it runs would be whichever genie is installed, not the one under test.
THIS_GENIE = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "agents")])}


# The HTTP tests serve on uvicorn, which runs on asyncio; the others run on both backends.
ON_ASYNCIO = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@asynccontextmanager
async def http_client(base: str, key: str | None) -> AsyncIterator[Client]:
    headers = {} if key is None else auth(key)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
    ):
        yield client


def text_of(result: Any) -> str:
    return "\n".join(part.text for part in result.content)


# --- stdio: a real `genie mcp` process ------------------------------------------------------


async def test_stdio_lists_and_calls_a_pipeline_as_its_principal(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "genie._cli", "mcp", FINANCE, "--principal", "alice", "--audit", str(audit)],
        cwd=str(tmp_path),
        env=THIS_GENIE,
    )
    async with Client(stdio_client(params)) as client:
        tools = (await client.list_tools()).tools
        result = await client.call_tool("finance", QUESTION)
        wrong = await client.call_tool("finance", {"question": 5})
        unknown = await client.call_tool("nope", {})
    [tool] = tools
    assert tool.name == "finance"
    schema = tool.input_schema
    assert schema["type"] == "object"
    assert "question" in schema["properties"]
    # The sample statement is the default input: nothing is required of the caller.
    assert "required" not in schema
    assert "sample.csv" in schema["properties"]["csv"]["description"]
    assert not result.is_error
    assert result.structured_content is not None
    assert result.structured_content["status"] == "ok"
    assert result.structured_content["output"]["type"] == "final_report"
    assert "Where did my money go last month?" in text_of(result)
    assert wrong.is_error
    assert "field 'question'" in text_of(wrong)
    assert unknown.is_error
    assert "no pipeline 'nope' is served (served: finance)" in text_of(unknown)
    # The audit log, keyed and verifiable, names the caller of each call.
    rows = [json.loads(line) for line in audit.read_text().splitlines()]
    calls = [r for r in rows if r["actor"] == "genie-mcp"]
    assert [(r["action"], r["target"], r["details"]["principal"]) for r in calls] == [
        ("tool_call:ok", "finance", "alice"),
        ("tool_call:invalid_input", "finance", "alice"),
        ("tool_call:unknown_tool", "nope", "alice"),
    ]
    assert calls[0]["details"]["correlation_id"] == result.structured_content["correlation_id"]
    assert verify_audit_log(audit, key=read_audit_key(tmp_path / "audit.jsonl.key")).ok


def test_stdio_refuses_a_bad_setup_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["mcp", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "Traceback" not in err
    assert main(["mcp", FINANCE, "--principal", "alice bob"]) == 2
    err = capsys.readouterr().err
    assert "'alice bob' is not a principal or role name" in err


STALL = """
import os

import anyio

from genie import BaseAgent, Context, Message, Payload, handler


class Serve(Payload):
    message_type = "serve"


class Return(Payload):
    message_type = "return"


class Stall(BaseAgent):
    produces = (Return,)

    @handler
    async def on_serve(self, payload: Serve, ctx: Context) -> Message:
        open(os.environ["STALL_MARK"], "w").close()
        await anyio.sleep(60)
        return ctx.reply(Return())
"""


def test_stdio_stopped_by_sigterm_audits_the_call_it_cut_short(tmp_path: Path) -> None:
    """A service manager stops ``genie mcp`` with SIGTERM: it killed the process at once, so
    the call in flight was in no audit row. It stops as Ctrl-C would stop a worker: the call
    is recorded as cut short, and the command exits 0."""
    (tmp_path / "stall.py").write_text(STALL)
    (tmp_path / "stall.yaml").write_text(
        "agents: [{id: stall, use: 'stall:Stall'}]\n"
        "entry: {type: serve, to: stall}\noutput: return\ntimeout: 2m\n"
    )
    audit, mark = tmp_path / "audit.jsonl", tmp_path / "started"
    command = [sys.executable, "-m", "genie._cli", "mcp", str(tmp_path / "stall.yaml")]
    server = subprocess.Popen(
        [*command, "--principal", "alice", "--audit", str(audit)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), "STALL_MARK": str(mark)},
    )
    said = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "stall"}},
    ]
    try:
        assert server.stdin is not None
        server.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in said))
        server.stdin.flush()
        for _ in range(600):  # until the handler runs
            if mark.exists() or server.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert mark.exists(), server.stderr.read() if server.stderr else ""
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, err
    assert b"Traceback" not in err
    rows = [json.loads(line) for line in audit.read_text().splitlines()]
    calls = [(r["action"], r["target"]) for r in rows if r["actor"] == "genie-mcp"]
    assert calls == [("tool_call:cut_short", "stall")]


async def test_stdio_roles_asserted_reach_the_policies(tmp_path: Path) -> None:
    """An asserted role the finance RBAC does not accept is denied, naming the policy."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "genie._cli", "mcp", FINANCE, "--principal", "eve", "--role", "analyst"],
        cwd=str(tmp_path),
        env=THIS_GENIE,
    )
    async with Client(stdio_client(params)) as client:
        result = await client.call_tool("finance", QUESTION)
    assert result.is_error
    assert result.structured_content is not None
    assert result.structured_content["status"] == "denied"
    assert result.structured_content["denials"][0]["policy"] == "rbac"
    assert "denied by rbac" in text_of(result)


# --- in memory: PipelineTools on a running runtime ------------------------------------------


async def test_a_call_cut_short_is_audited_as_such() -> None:
    """The caller's task cancelled while the pipeline runs (a client gone, a server stopping):
    the call is in the audit trail all the same, as cut short."""
    slow = load_pipeline(ROOT / "tests/pipelines/good/slow.yaml")
    audit = MemoryAuditLog()
    sent = anyio.Event()
    async with slow.runtime(audit=audit) as rt:
        tools = PipelineTools({"slow": (slow, rt)}, audit, asked=lambda caller, cid: sent.set())
        async with anyio.create_task_group() as tg:
            tg.start_soon(tools.call, "slow", {}, AssertedCaller("carol"))
            await sent.wait()
            tg.cancel_scope.cancel()
    [record] = [r for r in audit.records if r.actor == "genie-mcp"]
    assert (record.action, record.details["principal"]) == ("tool_call:cut_short", "carol")
    assert record.details["correlation_id"]


async def test_a_call_the_runtime_fails_is_audited_as_an_error_not_as_cut_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pipeline's ask raising (a fault injected where the runtime would fail): audited as
    ``tool_call:error`` naming the exception's type, and raised to the caller."""
    slow = load_pipeline(ROOT / "tests/pipelines/good/slow.yaml")
    audit = MemoryAuditLog()

    async def failing(*args: object, **kwargs: object) -> None:
        raise OSError("disk gone")

    async with slow.runtime(audit=audit) as rt:
        monkeypatch.setattr(slow, "ask", failing)
        tools = PipelineTools({"slow": (slow, rt)}, audit)
        with pytest.raises(OSError, match="disk gone"):
            await tools.call("slow", {}, AssertedCaller("carol"))
    [record] = [r for r in audit.records if r.actor == "genie-mcp"]
    assert (record.action, record.details["error"]) == ("tool_call:error", "OSError")


async def test_a_call_naming_no_served_pipeline_is_audited_and_suggests_one() -> None:
    """A call to a tool not served was answered but left no record: a principal trying
    names left no trail, where the docs say the audit log records each call."""
    slow = load_pipeline(ROOT / "tests/pipelines/good/slow.yaml")
    audit = MemoryAuditLog()
    async with slow.runtime(audit=audit) as rt:
        tools = PipelineTools({"slow": (slow, rt)}, audit)
        result = await tools.call("slwo", {}, AssertedCaller("carol"))
    assert result.is_error
    assert text_of(result) == "no pipeline 'slwo' is served (did you mean 'slow'?) (served: slow)"
    [record] = [r for r in audit.records if r.actor == "genie-mcp"]
    assert (record.action, record.target) == ("tool_call:unknown_tool", "slwo")
    assert record.details["principal"] == "carol"


async def test_a_timed_out_run_is_an_error_result_that_says_so() -> None:
    slow = load_pipeline(ROOT / "tests/pipelines/good/slow.yaml")  # a 1 s agent, 50 ms timeout
    audit = MemoryAuditLog()
    async with slow.runtime(audit=audit) as rt:
        tools = PipelineTools({"slow": (slow, rt)}, audit)
        async with Client(tools.server(lambda ctx: AssertedCaller("carol"))) as client:
            result = await client.call_tool("slow", {})
    assert result.is_error
    assert result.structured_content is not None
    assert result.structured_content["status"] == "timed_out"
    assert "timed_out" in text_of(result)
    [record] = [r for r in audit.records if r.actor == "genie-mcp"]
    assert (record.action, record.details["principal"]) == ("tool_call:timed_out", "carol")


async def test_a_null_input_is_an_invalid_input_naming_the_field() -> None:
    """The input's field (finance's ``csv``) given as null is the caller's mistake, refused
    before a run, as a served body's is: not a run that fails for want of the statement."""
    pipeline = load_pipeline(FINANCE)
    audit = MemoryAuditLog()
    async with pipeline.runtime(audit=audit) as rt:
        tools = PipelineTools({"finance": (pipeline, rt)}, audit)
        result = await tools.call("finance", {**QUESTION, "csv": None}, AssertedCaller("alice"))
    assert result.is_error
    assert text_of(result) == (
        "invalid input for pipeline 'finance': invalid 'finance_question' message: "
        "field 'csv': must be the pipeline's input, as text, not null"
    )
    [record] = [r for r in audit.records if r.actor == "genie-mcp"]
    assert (record.action, record.details["field"]) == ("tool_call:invalid_input", "csv")


@pytest.mark.parametrize("max_timeout", [0, -1.0, math.nan, "30", True])
async def test_a_max_timeout_no_call_can_wait_for_is_refused_naming_it(max_timeout: Any) -> None:
    """Refused where given: 0 timed every call out, text failed each call as the SDK's
    'Internal server error'."""
    pipeline = load_pipeline(FINANCE)
    async with pipeline.runtime() as rt:
        with pytest.raises(ConfigurationError, match=r"^PipelineTools: max_timeout must be"):
            PipelineTools({"finance": (pipeline, rt)}, max_timeout=max_timeout)


async def test_public_api_refuses_what_it_cannot_serve_naming_the_argument() -> None:
    pipeline = load_pipeline(FINANCE)
    async with pipeline.runtime() as rt:
        for served in (
            {"finance": pipeline},
            {"finance": (pipeline,)},
            {"finance": (rt, pipeline)},
        ):
            with pytest.raises(ConfigurationError, match=r"served\['finance'\] must be"):
                PipelineTools(served)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="serve_stdio: pipelines must be a list"):
        await serve_stdio(pipeline, AssertedCaller())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="serve_stdio: caller must be"):
        await serve_stdio([pipeline], "alice")  # type: ignore[arg-type]


# --- streamable HTTP: `genie serve --mcp` ---------------------------------------------------


@ON_ASYNCIO
async def test_http_calls_are_their_api_keys_principal(tmp_path: Path) -> None:
    audit = MemoryAuditLog()
    settings = ServeSettings(mcp=True)
    async with serving([finance(tmp_path)], keyring(tmp_path), settings, audit) as web:
        base = str(web.base_url).rstrip("/")
        async with http_client(base, ALICE) as alice:
            tools = (await alice.list_tools()).tools
            ok = await alice.call_tool("finance", QUESTION)
        async with http_client(base, EVE) as eve:
            denied = await eve.call_tool("finance", QUESTION)
        anonymous = await web.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert [t.name for t in tools] == ["finance"]
    assert not ok.is_error
    assert ok.structured_content is not None
    assert ok.structured_content["status"] == "ok"
    assert denied.is_error
    assert denied.structured_content is not None
    assert denied.structured_content["denials"][0]["policy"] == "rbac"
    assert anonymous.status_code == 401
    assert "missing API key" in anonymous.json()["error"]
    calls = [r for r in audit.records if r.actor == "genie-mcp"]
    assert [(r.action, r.details["principal"]) for r in calls] == [
        ("tool_call:ok", "alice"),
        ("tool_call:denied", "eve"),
    ]
    assert calls[1].details["denied_by"] == "rbac"


@ON_ASYNCIO
async def test_http_bodies_are_strict_json_as_every_served_body(tmp_path: Path) -> None:
    """A key given twice was the SDK's last (the tool run, its arguments), where a proxy or a
    log reading the same bytes may keep the first; NaN a number to the SDK alone. Refused as
    a served ask's body is, and nothing runs."""
    call = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": %s}'
    bodies = {
        "key 'name' given twice": '{"name": "other", "name": "finance", "arguments": {}}',
        "key 'question' given twice": (
            '{"name": "finance", "arguments": {"question": "a", "question": "b"}}'
        ),
        "NaN": '{"name": "finance", "arguments": {"question": NaN}}',
    }
    audit = MemoryAuditLog()
    headers = {**auth(ALICE), "Accept": "application/json, text/event-stream"}
    headers["Content-Type"] = "application/json"
    async with serving(
        [finance(tmp_path)], keyring(tmp_path), ServeSettings(mcp=True), audit
    ) as web:
        answers = {
            why: await web.post("/mcp", content=call % params, headers=headers)
            for why, params in bodies.items()
        }
    for why, answer in answers.items():
        assert answer.status_code == 400, (why, answer.text)
        assert answer.json()["error"].startswith("the request body is not valid JSON"), answer.text
        assert why in answer.json()["error"], answer.text
    assert [r for r in audit.records if r.actor == "genie-mcp"] == []


@ON_ASYNCIO
async def test_http_refusals_of_the_transport_are_in_the_servers_shape(tmp_path: Path) -> None:
    """A body not declared JSON, a batch, a header the transport will not answer and a body
    that is no JSON-RPC message are refused as every other request of the server's is:
    ``{"error": "..."}`` in one line, not the SDK's plain text or JSON-RPC error; nothing runs."""
    ping = '{"jsonrpc": "2.0", "id": 1, "method": "ping"}'
    accept = {"Accept": "application/json, text/event-stream"}
    as_json = {"Content-Type": "application/json"}
    requests = {
        "text/plain": (ping, {**accept, "Content-Type": "text/plain"}),
        "no type": (ping, accept),
        "batch": (f"[{ping}]", {**accept, **as_json}),
        "accept": (ping, {"Accept": "text/html", **as_json}),
        "no method": ('{"jsonrpc": "2.0", "id": 1}', {**accept, **as_json}),
    }
    audit = MemoryAuditLog()
    async with serving(
        [finance(tmp_path)], keyring(tmp_path), ServeSettings(mcp=True), audit
    ) as web:
        answers = {
            why: await web.post("/mcp", content=body, headers={**auth(ALICE), **headers})
            for why, (body, headers) in requests.items()
        }
    assert {why: (a.status_code, a.json()) for why, a in answers.items()} == {
        "text/plain": (
            415,
            {"error": "POST /mcp: Content-Type must be application/json, not 'text/plain'"},
        ),
        "no type": (
            415,
            {"error": "POST /mcp: Content-Type must be application/json, not none given"},
        ),
        "batch": (
            400,
            {
                "error": "the request body must be one JSON-RPC message, a JSON object, "
                "not a batch (a list): MCP has no batches"
            },
        ),
        "accept": (
            406,
            {"error": "POST /mcp: Not Acceptable: Client must accept application/json"},
        ),
        "no method": (
            400,
            {
                "error": "the request body is not a JSON-RPC 2.0 message: a request needs "
                "'jsonrpc': '2.0', an 'id' and a 'method'"
            },
        ),
    }
    assert [r for r in audit.records if r.actor == "genie-mcp"] == []


@ON_ASYNCIO
async def test_http_tool_arguments_that_are_no_object_are_refused_by_name(
    tmp_path: Path,
) -> None:
    """A call's ``arguments`` that are no JSON object were the SDK's JSON-RPC error,
    "Invalid request parameters", with a 200 and no field named, as were ``params`` that
    are none: refused as every other refusal of ``/mcp`` is, a 400 naming the field;
    nothing runs."""
    call = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": %s}'
    given = {
        "list": '{"name": "finance", "arguments": ["What is the margin?"]}',
        "str": '{"name": "finance", "arguments": "What is the margin?"}',
        "int": '{"name": "finance", "arguments": 3}',
    }
    audit = MemoryAuditLog()
    headers = {**auth(ALICE), "Accept": "application/json, text/event-stream"}
    headers["Content-Type"] = "application/json"
    async with serving(
        [finance(tmp_path)], keyring(tmp_path), ServeSettings(mcp=True), audit
    ) as web:
        answers = {
            kind: await web.post("/mcp", content=call % params, headers=headers)
            for kind, params in given.items()
        }
        no_params = await web.post("/mcp", content=call % '"finance"', headers=headers)
    assert (no_params.status_code, no_params.json()) == (
        400,
        {
            "error": "POST /mcp: tools/call: params must be an object (the tool's name and "
            "arguments), not str"
        },
    )
    assert {kind: (a.status_code, a.json()) for kind, a in answers.items()} == {
        kind: (
            400,
            {
                "error": "POST /mcp: tools/call: params.arguments must be an object (the "
                f"tool's arguments by name), not {kind}"
            },
        )
        for kind in given
    }
    assert [r for r in audit.records if r.actor == "genie-mcp"] == []


@ON_ASYNCIO
async def test_http_endpoint_is_off_unless_asked_for(tmp_path: Path) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as web:
        r = await web.post("/mcp", json={}, headers=auth(ALICE))
    assert r.status_code == 404


@ON_ASYNCIO
async def test_http_identity_in_arguments_or_meta_is_not_the_callers(tmp_path: Path) -> None:
    """eve cannot become alice by what she sends: the payload takes no identity (extra fields
    are refused), and the request's metadata is written by the server from her key."""
    settings = ServeSettings(mcp=True)
    async with serving([finance(tmp_path)], keyring(tmp_path), settings) as web:
        base = str(web.base_url).rstrip("/")
        async with http_client(base, EVE) as eve:
            smuggled = await eve.call_tool("finance", {**QUESTION, "user_id": "alice"})
            denied = await eve.call_tool(
                "finance", QUESTION, meta=cast(Any, {"user_roles": "user"})
            )
    assert smuggled.is_error
    assert "field 'user_id'" in text_of(smuggled)
    assert denied.is_error
    assert denied.structured_content is not None
    assert denied.structured_content["denials"][0]["policy"] == "rbac"


@ON_ASYNCIO
@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_http_get_and_delete_are_405_allow_post_at_once(tmp_path: Path, method: str) -> None:
    """The endpoint is stateless: it offers no event stream for a GET to open (the spec's
    405) and no session for a DELETE to end, answered at once as the server's other
    refusals are, not with a stream that never sends anything."""
    settings = ServeSettings(mcp=True)
    accept = {"Accept": "application/json, text/event-stream"}
    async with serving([finance(tmp_path)], keyring(tmp_path), settings) as web:
        with anyio.fail_after(5):
            r = await web.request(method, "/mcp", headers={**auth(ALICE), **accept})
        after = await web.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={**auth(ALICE), **accept},
        )
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert r.json() == {"error": f"{method} /mcp: Method Not Allowed"}
    assert after.status_code == 200  # POST is answered as before


def queued(rt: Runtime) -> tuple[int, int]:
    """The runtime's deliveries in flight, and those waiting in the sleeper's mailbox."""
    stats = rt.statistics()
    return stats.in_flight, stats.mailboxes["sleeper"].depth


async def test_a_call_that_finds_the_entry_mailbox_full_is_told_busy_at_once(
    tmp_path: Path,
) -> None:
    """As a served request is 429: the call is refused at once with a busy error result
    naming the agent, nothing of it runs (not published, no dead letter), and it is audited as
    ``tool_call:busy``; the calls that got in are answered as usual."""
    text = (ROOT / "tests/pipelines/good/slow.yaml").read_text()
    # The sleeper sleeps long enough for the second call to queue behind it on a loaded
    # machine: once it is done, the state waited for below never comes.
    text = text.replace("params: {seconds: 1}", "params: {seconds: 1}\n    mailbox: 1")
    path = tmp_path / "slow.yaml"
    path.write_text(text.replace("timeout: 50ms", "timeout: 10s"))
    slow = load_pipeline(path)
    audit = MemoryAuditLog()
    answered: list[bool] = []
    async with slow.runtime(audit=audit) as rt:
        tools = PipelineTools({"slow": (slow, rt)}, audit)

        async def one() -> None:
            answered.append((await tools.call("slow", {}, AssertedCaller("carol"))).is_error)

        async with anyio.create_task_group() as tg:
            for depth in (0, 1):  # one runs, then one waits in the mailbox of one
                tg.start_soon(one)
                with anyio.fail_after(5):
                    while queued(rt) != (depth + 1, depth):  # noqa: ASYNC110
                        await anyio.sleep(0.01)
            before = rt.statistics()
            started = anyio.current_time()
            refused = await tools.call("slow", {}, AssertedCaller("dave"))
            waited = anyio.current_time() - started
            after = rt.statistics()
    assert refused.is_error
    assert waited < 0.2  # told at once, not once the sleeper made room
    assert text_of(refused) == (
        "pipeline 'slow' is busy: the mailbox of its agent 'sleeper' is full (capacity 1); "
        "retry later"
    )
    assert (after.published, after.dead_lettered) == (before.published, before.dead_lettered)
    outcomes = [(r.action, r.details["principal"]) for r in audit.records if r.actor == "genie-mcp"]
    assert ("tool_call:busy", "dave") in outcomes
    assert answered == [False, False]
