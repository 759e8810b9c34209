"""The HTTP API against a real uvicorn server on 127.0.0.1: every endpoint, every error code."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from genie import MemoryAuditLog
from genie.pipeline import load_pipeline
from genie.serve import STATUS, ServeSettings, load_keys

from .conftest import ALICE, BOB, EVE, ROOT, auth, csv_body, finance, keyring, serving, sse

ASK = "/v1/pipelines/finance/ask"
STATS = "/v1/pipelines/slow/statistics"


async def test_ask_returns_the_run_json_and_200(tmp_path: Path) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        r = await client.post(ASK, json=csv_body(), headers=auth(ALICE))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert body["output"]["type"] == "final_report"
    assert "Genie" in body["output"]["payload"]["text"]
    assert set(body) == {
        "status", "correlation_id", "output", "missing", "dead_letters", "denials", "stats"
    }  # fmt: skip


async def test_the_same_document_as_genie_run_json(tmp_path: Path) -> None:
    """The server reuses RunResult.as_json: the CLI's document for the same input matches in
    everything but the ids, the counts too (they are the request's own)."""
    pipeline = finance(tmp_path)
    cli = (await pipeline.run()).as_json()
    async with serving([pipeline], keyring(tmp_path)) as client:
        await client.post(ASK, json=csv_body(), headers=auth(ALICE))
        served = (await client.post(ASK, json=csv_body(), headers=auth(ALICE))).json()
    for doc in (cli, served):
        del doc["correlation_id"]
    assert served == cli


async def test_invalid_payload_is_400_naming_type_and_field(tmp_path: Path) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        missing = await client.post(ASK, json={}, headers=auth(ALICE))
        misspelt = await client.post(ASK, json={"csvv": "a,b"}, headers=auth(ALICE))
        wrong = await client.post(ASK, json={"csv": 12}, headers=auth(ALICE))
        not_json = await client.post(ASK, content=b"{nope", headers=auth(ALICE))
        a_list = await client.post(ASK, json=[1], headers=auth(ALICE))
        deep = await client.post(ASK, content=b"[" * 100 + b"]" * 100, headers=auth(ALICE))
        bad_meta = await client.post(
            ASK, json=csv_body(), headers={**auth(ALICE), "Genie-Metadata": '{"x": {"y": 1}}'}
        )
        bad_timeout = await client.post(ASK + "?timeout=-1", json=csv_body(), headers=auth(ALICE))
    assert missing.status_code == 400
    assert missing.json() == {
        "error": "invalid 'finance_question' message: field 'csv': Field required",
        "type": "finance_question",
        "field": "csv",
    }
    # Every problem of the body, an unknown key too, with the first field at fault.
    assert misspelt.json() == {
        "error": "invalid 'finance_question' message: field 'csv': Field required; unknown "
        "field 'csvv' (did you mean 'csv'?)",
        "type": "finance_question",
        "field": "csv",
    }
    assert wrong.status_code == 400
    assert wrong.json()["field"] == "csv"
    assert not_json.status_code == 400
    assert "the request body is not valid JSON" in not_json.json()["error"]
    assert a_list.json()["error"] == "the request body must be a JSON object, not list"
    assert deep.status_code == 400
    assert "nested too deeply" in deep.json()["error"]
    assert bad_meta.status_code == 400
    assert bad_meta.json()["field"].startswith("metadata")
    assert bad_timeout.status_code == 400
    assert "timeout" in bad_timeout.json()["error"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "must be the pipeline's input, as text, not null"),
        (12, "Input should be a valid string"),
        (True, "Input should be a valid string"),
        ([], "Input should be a valid string"),
        ({}, "Input should be a valid string"),
    ],
    ids=["null", "number", "boolean", "list", "object"],
)
async def test_the_input_field_not_text_is_400_naming_it(
    tmp_path: Path, value: object, problem: str
) -> None:
    """The body carries the entry's input (finance's ``csv``) as the text ``--input`` would
    give: anything else is the caller's mistake, a 400 naming the field, never a run that
    fails for want of it (the payload type takes null for Go's shape, where the statement
    travelled in the metadata)."""
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        r = await client.post(ASK, json={"csv": value}, headers=auth(ALICE))
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": f"invalid 'finance_question' message: field 'csv': {problem}",
        "type": "finance_question",
        "field": "csv",
    }


async def test_a_query_parameter_given_twice_is_400_naming_it(tmp_path: Path) -> None:
    """Which of two values counts would depend on the proxy or the parser reading them."""
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        for path in (ASK, ASK + "/stream"):
            r = await client.post(
                path + "?timeout=1&timeout=2", json=csv_body(), headers=auth(ALICE)
            )
            assert r.status_code == 400, r.text
            assert r.json() == {"error": "query 'timeout' given twice: send it once"}


async def test_denial_is_403_naming_the_policy(tmp_path: Path) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        r = await client.post(ASK, json=csv_body(), headers=auth(EVE))
    assert r.status_code == 403
    assert r.headers["Genie-Denied-By"] == "rbac"
    assert r.json()["status"] == "denied"
    assert r.json()["denials"][0]["policy"] == "rbac"


async def test_timeout_is_504(tmp_path: Path) -> None:
    slow = load_pipeline(ROOT / "tests/pipelines/good/slow.yaml")  # a 1 s agent, 50 ms timeout
    async with serving([slow], keyring(tmp_path)) as client:
        r = await client.post("/v1/pipelines/slow/ask", json={}, headers=auth(ALICE))
    assert r.status_code == 504
    assert r.json()["status"] == "timed_out"
    assert STATUS["timed_out"] == 504


async def test_a_query_timeout_cuts_the_request_and_answers_no_partial_output(
    tmp_path: Path,
) -> None:
    """What docs/serve.md says of ``?timeout=S`` shorter than the run: a 504 ``timed_out``
    with no output, counting what the request did by then, and the request cancelled."""
    slow = load_pipeline(ROOT / "tests/pipelines/good/slow.yaml")  # a 1 s agent
    async with serving([slow], keyring(tmp_path)) as client:
        r = await client.post("/v1/pipelines/slow/ask?timeout=0.2", json={}, headers=auth(ALICE))
        with anyio.fail_after(5):  # the sleeper's call, cancelled, ends as a dead letter
            while True:
                stats = (await client.get(STATS, headers=auth(ALICE))).json()
                if stats["in_flight"] == 0:
                    break
                await anyio.sleep(0.02)
    body = r.json()
    assert (r.status_code, body["status"], body["output"]) == (504, "timed_out", None)
    assert [(m["key"], m["kind"]) for m in body["missing"]] == [("reply", "timed_out")]
    assert (body["stats"]["delivered"], body["stats"]["in_flight"]) == (1, 1)  # cut midway
    assert (stats["handled"], stats["dead_lettered"]) == (0, 1)


def _patient_slow(tmp_path: Path) -> Path:
    """slow.yaml with a timeout of a minute: its 1 s agent answers within it."""
    text = (ROOT / "tests/pipelines/good/slow.yaml").read_text()
    path = tmp_path / "slow.yaml"
    path.write_text(text.replace("timeout: 50ms", "timeout: 60s"))
    return path


async def test_a_pipeline_timeout_over_the_servers_max_timeout_is_cut_to_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A request without ``?timeout`` waited its pipeline's timeout, however far over the
    server's ``max_timeout``: the ceiling bounded only what a client asked for."""
    slow = load_pipeline(_patient_slow(tmp_path))
    settings = ServeSettings(max_timeout=0.2)
    with caplog.at_level("WARNING", logger="genie.serve"):
        async with serving([slow], keyring(tmp_path), settings) as client:
            r = await client.post("/v1/pipelines/slow/ask", json={}, headers=auth(ALICE))
    assert (r.status_code, r.json()["status"]) == (504, "timed_out")
    assert "pipeline 'slow': its timeout of 60s is over the server's max_timeout" in caplog.text


async def test_a_query_timeout_over_the_servers_max_timeout_is_refused_naming_it(
    tmp_path: Path,
) -> None:
    slow = load_pipeline(_patient_slow(tmp_path))
    async with serving([slow], keyring(tmp_path), ServeSettings(max_timeout=5)) as client:
        over = await client.post("/v1/pipelines/slow/ask?timeout=6", json={}, headers=auth(ALICE))
        within = await client.post("/v1/pipelines/slow/ask?timeout=5", json={}, headers=auth(ALICE))
    assert over.status_code == 400
    assert over.json()["max_timeout"] == 5
    assert "at most the server's max_timeout), not '6'" in over.json()["error"]
    assert (within.status_code, within.json()["status"]) == (200, "ok")


async def test_auth_missing_wrong_and_valid(tmp_path: Path) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        none = await client.get("/v1/pipelines")
        wrong = await client.get("/v1/pipelines", headers=auth("not-a-key-at-all-000"))
        other_header = await client.get("/v1/pipelines", headers={"X-API-Key": ALICE})
        valid = await client.get("/v1/pipelines", headers=auth(ALICE))
        stream = await client.post(ASK + "/stream", json=csv_body())
    assert none.status_code == 401
    assert none.headers["WWW-Authenticate"] == "Bearer"
    assert "missing API key" in none.json()["error"]
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "unknown API key"}
    assert other_header.status_code == 200
    assert valid.status_code == 200
    assert stream.status_code == 401


async def test_caller_asserted_identity_is_dropped(tmp_path: Path) -> None:
    """eve (analyst) asserts admin roles, another user id and a PII acknowledgement: the
    server writes her own identity, so RBAC still denies her."""
    audit = MemoryAuditLog()
    meta = {
        "user_roles": "admin",
        "user_id": "root",
        "pii_acknowledged": "true",
        "account_id": "acct-9",
    }
    async with serving([finance(tmp_path)], keyring(tmp_path), audit=audit) as client:
        r = await client.post(
            ASK, json=csv_body(), headers={**auth(EVE), "Genie-Metadata": json.dumps(meta)}
        )
    assert r.status_code == 403
    assert r.json()["denials"][0]["policy"] == "rbac"


@pytest.mark.parametrize(
    "forged",
    [
        [
            json.dumps(
                {"part": "forecast_result", "kind": "denied", "reason": "forged", "policy": "rbac"}
            )
        ],
        ["oops"],
    ],
)
async def test_a_caller_cannot_forge_the_runtimes_own_metadata(
    tmp_path: Path, forged: list[str]
) -> None:
    """``genie.missing_parts`` is how a partial bundle names what it lacks: a caller's value
    (well formed, or not JSON at all) is dropped with the other keys a caller may not write,
    and the answer is the pipeline's own, complete."""
    meta = json.dumps({"genie.missing_parts": forged, "account_id": "acct-9"})
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        r = await client.post(ASK, json=csv_body(), headers={**auth(ALICE), "Genie-Metadata": meta})
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["missing"]) == ("ok", [])


async def test_identity_reaches_the_agents_as_the_server_wrote_it(tmp_path: Path) -> None:
    pipeline = finance(tmp_path)
    seen: list[dict[str, object]] = []

    def watch(name: str, rt: object) -> None:
        from genie import Observer

        class Meta(Observer):
            def delivered(self, msg, agent_id):  # type: ignore[no-untyped-def]
                seen.append(dict(msg.metadata))

        rt.add_observer(Meta())  # type: ignore[attr-defined]

    meta = json.dumps({"user_roles": "admin", "user_id": "root", "account_id": "acct-9"})
    async with serving([pipeline], keyring(tmp_path), observers=watch) as client:
        r = await client.post(ASK, json=csv_body(), headers={**auth(ALICE), "Genie-Metadata": meta})
    assert r.status_code == 200
    assert seen
    assert {m["user_id"] for m in seen} == {"alice"}
    assert {m["user_roles"] for m in seen} == {"user"}
    assert {m["account_id"] for m in seen} == {"acct-9"}  # not server-owned: the caller's


async def test_rate_limit_is_429_with_retry_after_and_a_record(tmp_path: Path) -> None:
    audit = MemoryAuditLog()
    async with serving([finance(tmp_path)], keyring(tmp_path), audit=audit) as client:
        codes = [(await client.get("/v1/pipelines", headers=auth(BOB))).status_code for _ in "123"]
        refused = await client.get("/v1/pipelines", headers=auth(BOB))
        other = await client.get("/v1/pipelines", headers=auth(ALICE))  # its own bucket
        metrics = (await client.get("/metrics")).text
    assert codes == [200, 200, 429]
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "rate limit of principal 'bob'" in refused.json()["error"]
    assert other.status_code == 200
    records = [r for r in audit.records if r.action == "rate_limited"]
    assert [r.target for r in records] == ["bob", "bob"]
    assert 'genie_serve_rejected_total{reason="rate_limited"} 2.0' in metrics


async def test_a_rate_too_small_to_wait_for_says_a_day(tmp_path: Path) -> None:
    """A key's rate so small that its next token is never (1e-320 a second: the wait is
    infinite) answered the second request with a 500: ``Retry-After`` could not be made."""
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n  - {{principal: slow, key: {'s' * 20}, rate: 1e-320, burst: 1}}\n")
    headers = {"Authorization": f"Bearer {'s' * 20}"}
    async with serving([finance(tmp_path)], load_keys(path, {})) as client:
        first = await client.get("/v1/pipelines", headers=headers)
        second = await client.get("/v1/pipelines", headers=headers)
    assert (first.status_code, second.status_code) == (200, 429)
    assert second.headers["Retry-After"] == "86400"


async def test_size_limit_is_413_with_a_record(tmp_path: Path) -> None:
    audit = MemoryAuditLog()
    settings = ServeSettings(max_body=1000)
    async with serving([finance(tmp_path)], keyring(tmp_path), settings, audit) as client:
        declared = await client.post(ASK, json={"csv": "x" * 2000}, headers=auth(ALICE))

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"x" * 200  # no Content-Length: counted as it arrives

        streamed = await client.post(ASK, content=chunks(), headers=auth(ALICE))
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert "over the limit of 1000 bytes" in declared.json()["error"]
    assert [r.action for r in audit.records] == ["too_large", "too_large"]


async def test_pipelines_lists_entry_schema(tmp_path: Path) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        r = await client.get("/v1/pipelines", headers=auth(ALICE))
        unknown = await client.post("/v1/pipelines/finanse/ask", json={}, headers=auth(ALICE))
    (p,) = r.json()["pipelines"]
    assert p["name"] == "finance"
    assert p["entry"]["type"] == "finance_question"
    assert p["schema"]["type"] == "object"
    assert "csv" in p["schema"]["required"]
    assert unknown.status_code == 404
    assert "did you mean 'finance'" in unknown.json()["error"]


async def test_health_ready_metrics_openapi_page(tmp_path: Path) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        await client.post(ASK, json=csv_body(), headers=auth(ALICE))
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        metrics = await client.get("/metrics")
        doc = await client.get("/openapi.json")
        page = await client.get("/")
        nowhere = await client.get("/v2/nothing")
        wrong_method = await client.get(ASK)
    assert health.json() == {"status": "ok"}
    assert ready.json() == {"status": "ready", "pipelines": ["finance"]}
    assert 'genie_messages_published_total{pipeline="finance",type="finance_question"}' in (
        metrics.text
    )
    assert 'genie_serve_requests_total{code="200",route="ask"} 1.0' in metrics.text
    spec = doc.json()
    assert spec["openapi"].startswith("3.")
    ask = spec["paths"][ASK]["post"]
    assert {"200", "400", "401", "403", "413", "429", "504"} <= set(ask["responses"])
    assert "csv" in ask["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert page.headers["content-type"].startswith("text/html")
    assert "<script>" in page.text
    assert nowhere.status_code == 404
    assert "error" in nowhere.json()
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"  # HTTP requires it with a 405
    assert wrong_method.json() == {"error": f"GET {ASK}: Method Not Allowed"}


async def test_stream_frames_events_then_result(tmp_path: Path) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        r = await client.post(ASK + "/stream", json=csv_body(), headers=auth(ALICE))
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = sse(r.text)
    kinds = [event for _, event, _ in frames]
    assert kinds[0] == "accepted"
    assert kinds[-1] == "result"
    assert {"published", "delivered", "handled"} <= set(kinds)
    cid = frames[0][2]["correlation_id"]
    assert [i for i, _, _ in frames] == [f"{cid}:{n}" for n in range(len(frames))]
    result = frames[-1][2]
    assert result["status"] == "ok"
    assert result["http_status"] == 200
    agents = {d["agent"] for _, e, d in frames if e == "handled"}
    assert {"financial_supervisor", "reporter"} <= agents


async def test_stream_resumes_after_last_event_id(tmp_path: Path) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        first = sse((await client.post(ASK + "/stream", json=csv_body(), headers=auth(ALICE))).text)
        cid = first[0][2]["correlation_id"]
        again = await client.get(
            f"/v1/streams/{cid}", headers={**auth(ALICE), "Last-Event-ID": f"{cid}:3"}
        )
        whole = await client.get(f"/v1/streams/{cid}", headers=auth(ALICE))
        others = await client.get(
            f"/v1/streams/{cid}", headers={**auth(BOB), "Last-Event-ID": f"{cid}:3"}
        )
    assert sse(again.text) == first[4:]
    assert sse(whole.text) == first
    assert others.status_code == 404  # another principal's stream is not there for bob


async def test_stream_resumes_a_live_request(tmp_path: Path) -> None:
    """A client that drops the connection mid-stream gets the rest, result included."""
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        async with client.stream(
            "POST", ASK + "/stream", json=csv_body(), headers=auth(ALICE)
        ) as r:
            lines = r.aiter_lines()
            first = await anext(lines)
        assert first.startswith("id: ")
        cid, _, n = first[4:].rpartition(":")
        rest = await client.get(
            f"/v1/streams/{cid}", headers={**auth(ALICE), "Last-Event-ID": f"{cid}:{n}"}
        )
    frames = sse(rest.text)
    assert frames[0][0] == f"{cid}:1"
    assert frames[-1][1] == "result"


async def test_stream_withholds_events_about_messages_denied_to_the_client(
    tmp_path: Path,
) -> None:
    """A rule denies analysis results to bob (as a recipient): alice's stream shows them, bob's
    never does, though his request runs the same way."""
    rules = (
        "    - id: no-analysis-for-bob\n"
        '      when: \'to == "bob" AND type == "analysis_result"\'\n'
        "      reason: bob may not see analyses\n"
    )
    pipeline = finance(tmp_path, rules)
    async with serving([pipeline], keyring(tmp_path)) as client:
        seen = {}
        for who, key in (("alice", ALICE), ("bob", BOB)):
            r = await client.post(ASK + "/stream", json=csv_body(), headers=auth(key))
            seen[who] = sse(r.text)
    alice_types = {d.get("type") for _, _, d in seen["alice"]}
    bob_types = {d.get("type") for _, _, d in seen["bob"]}
    assert "analysis_result" in alice_types
    assert "analysis_result" not in bob_types
    assert seen["bob"][-1][2]["status"] == "ok"  # the run itself is not denied
    assert "ingest_csv" in bob_types  # and everything else is streamed


async def test_a_stream_over_its_frame_limit_says_how_many_it_dropped(tmp_path: Path) -> None:
    settings = ServeSettings(stream_frames=5)
    async with serving([finance(tmp_path)], keyring(tmp_path), settings) as client:
        r = await client.post(ASK + "/stream", json=csv_body(), headers=auth(ALICE))
    frames = sse(r.text)
    assert [e for _, e, _ in frames[-2:]] == ["dropped", "result"]
    assert len(frames) == 7
    dropped = frames[-2][2]["count"]
    assert isinstance(dropped, int)
    assert dropped > 10  # the finance run has dozens of events
    assert frames[-1][2]["status"] == "ok"


async def test_a_quiet_stream_sends_keep_alive_comments(tmp_path: Path) -> None:
    slow = load_pipeline(ROOT / "tests/pipelines/good/slow.yaml")  # a 1 s agent
    settings = ServeSettings(heartbeat=0.2)
    async with serving([slow], keyring(tmp_path), settings) as client:
        r = await client.post(
            "/v1/pipelines/slow/ask/stream?timeout=5", json={}, headers=auth(ALICE)
        )
    blocks = r.text.split("\n\n")
    assert ": keep-alive" in blocks  # a comment, which an SSE client ignores
    frames = sse("".join(b + "\n\n" for b in blocks[:-1] if b != ": keep-alive"))
    assert frames[-1][1] == "result"
