"""``genie serve`` as an attacker and a newcomer would try it (issue 22's review)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import pytest
from starlette.routing import Route

from genie import MemoryAuditLog, Runtime
from genie._cli.main import main
from genie.serve import ServeSettings, create_app

from .conftest import ALICE, BOB, ROOT, auth, csv_body, finance, keyring, serving, sse

ASK = "/v1/pipelines/finance/ask"


async def test_genie_metadata_counts_against_the_size_limit(tmp_path: Path) -> None:
    """The header's metadata ends up in the message like the body: it cannot carry past the
    limit what the body may not."""
    audit = MemoryAuditLog()
    settings = ServeSettings(max_body=4000)
    body = {"csv": "a,b\n1,2\n"}
    fat = json.dumps({"note": "x" * 3990})
    async with serving([finance(tmp_path)], keyring(tmp_path), settings, audit) as client:
        refused = await client.post(ASK, json=body, headers={**auth(ALICE), "Genie-Metadata": fat})
        small = json.dumps({"note": "x" * 100})
        fits = await client.post(ASK, json=body, headers={**auth(ALICE), "Genie-Metadata": small})
    assert refused.status_code == 413
    assert "Genie-Metadata over the limit of 4000 bytes" in refused.json()["error"]
    assert [r.action for r in audit.records if r.actor == "genie-serve"] == ["too_large"]
    assert fits.status_code != 413


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/v1/pipelines/..%2Ffinance/ask", "'../finance'"),  # a slash is no part of a name
        ("/v1/pipelines/%2e%2e/ask", "'..'"),
        ("/v1/pipelines/fin%0Aance/ask", "'fin\\nance'"),  # quoted: no line injection
        ("/v1/pipelines/finance%00/ask", "'finance\\x00'"),
    ],
)
async def test_pipeline_names_with_path_characters_are_404(
    tmp_path: Path, path: str, named: str | None
) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        r = await client.post(path, json=csv_body(), headers=auth(ALICE))
        listed = await client.get("/v1/pipelines", headers=auth(ALICE))
    assert r.status_code == 404
    error = r.json()["error"]
    assert "\n" not in error
    if named is not None:
        assert f"no pipeline {named} is served" in error
    assert [p["name"] for p in listed.json()["pipelines"]] == ["finance"]


@pytest.mark.parametrize(
    ("method", "path", "error"),
    [
        (
            "POST",
            "/v1/pipelines/fin%2Fance/ask",
            "no pipeline 'fin/ance' is served: a pipeline's name has no '/' (sent as %2F)",
        ),
        (
            "POST",
            "/v1/pipelines/finance%2Fask/stream",
            "no pipeline 'finance/ask' is served: a pipeline's name has no '/' (sent as %2F)",
        ),
        (
            "POST",
            "/v1/pipelines/finance%2fask",
            "no pipeline 'finance/ask' is served: a pipeline's name has no '/' (sent as %2F)",
        ),
        (
            "POST",
            "/v1/pipelines/finance/ask%2Fstream",
            "POST /v1/pipelines/finance/ask%2Fstream: Not Found (an encoded slash, %2F, "
            "separates nothing in a path here)",
        ),
        (
            "GET",
            "/v1%2Fpipelines",
            "GET /v1%2Fpipelines: Not Found (an encoded slash, %2F, separates nothing in a "
            "path here)",
        ),
        (
            "GET",
            "/v1/pipelines/finance%2F..%2Ffinance/statistics",
            "no pipeline 'finance/../finance' is served: a pipeline's name has no '/' "
            "(sent as %2F)",
        ),
    ],
)
async def test_an_encoded_slash_is_no_path_separator(
    tmp_path: Path, method: str, path: str, error: str
) -> None:
    """A proxy routing by the path as sent would read ``finance%2Fask/stream`` as one name and
    a route it does not know; the server must not read it as the stream of ``finance``: an
    encoded slash separates nothing, so the path names no route, and nothing runs."""
    runtimes: list[Runtime] = []
    async with serving(
        [finance(tmp_path)], keyring(tmp_path), observers=lambda _, rt: runtimes.append(rt)
    ) as client:
        r = await client.request(
            method, path, json=csv_body() if method == "POST" else None, headers=auth(ALICE)
        )
        published = runtimes[0].statistics().published
    assert r.status_code == 404, r.text
    assert r.json() == {"error": error}
    assert published == 0


async def test_a_stream_client_that_disconnects_is_still_accounted(tmp_path: Path) -> None:
    """The request runs to its end without its client, nothing stays in flight, its result is
    kept for a reconnection, and the server serves the next request."""
    runtimes: list[Runtime] = []
    async with serving(
        [finance(tmp_path)], keyring(tmp_path), observers=lambda _, rt: runtimes.append(rt)
    ) as client:
        async with client.stream(
            "POST", ASK + "/stream", json=csv_body(), headers=auth(ALICE)
        ) as r:
            first = await anext(r.aiter_lines())  # then the connection is dropped
        cid = first[4:].rpartition(":")[0]
        (rt,) = runtimes
        with anyio.fail_after(10):
            while True:
                metrics = (await client.get("/metrics")).text
                if "genie_serve_in_flight 0.0" in metrics and rt.statistics().in_flight == 0:
                    break
                await anyio.sleep(0.05)
        rest = await client.get(f"/v1/streams/{cid}", headers=auth(ALICE))
        after = await client.post(ASK, json=csv_body(), headers=auth(ALICE))
        stats = rt.statistics()
    frames = sse(rest.text)
    assert frames[-1][1] == "result"
    assert frames[-1][2]["status"] == "ok"
    assert after.status_code == 200
    assert stats.delivered == stats.handled
    assert stats.dead_lettered == 0
    assert stats.correlations.gathers_pending == 0


async def test_two_principals_streaming_at_once_see_only_their_own(tmp_path: Path) -> None:
    """bob may not see analyses; alice may. Streamed at once, neither stream holds the other's
    messages and bob's holds no analysis."""
    rules = (
        "    - id: no-analysis-for-bob\n"
        '      when: \'to == "bob" AND type == "analysis_result"\'\n'
        "      reason: bob may not see analyses\n"
    )
    seen: dict[str, list[tuple[str | None, str, dict[str, object]]]] = {}
    async with serving([finance(tmp_path, rules)], keyring(tmp_path)) as client:

        async def stream(who: str, key: str) -> None:
            r = await client.post(ASK + "/stream", json=csv_body(), headers=auth(key))
            seen[who] = sse(r.text)

        async with anyio.create_task_group() as tg:
            for who, key in (("alice", ALICE), ("bob", BOB)):
                tg.start_soon(stream, who, key)
    ids = {
        who: {str(d["message_id"]) for _, _, d in frames if d.get("message_id")}
        for who, frames in seen.items()
    }
    cids = {who: frames[0][2]["correlation_id"] for who, frames in seen.items()}
    assert cids["alice"] != cids["bob"]
    assert ids["alice"]
    assert ids["bob"]
    assert not ids["alice"] & ids["bob"]
    assert "analysis_result" in {d.get("type") for _, _, d in seen["alice"]}
    assert "analysis_result" not in {d.get("type") for _, _, d in seen["bob"]}
    for who in ("alice", "bob"):
        assert seen[who][-1][2]["status"] == "ok"


@pytest.mark.parametrize("mcp", [False, True], ids=["plain", "mcp"])
async def test_the_openapi_document_matches_the_routes(tmp_path: Path, mcp: bool) -> None:
    """Every route of the app is in the document with its methods, and nothing else is; every
    ``/v1`` operation (and ``/mcp``) lists the refusals every keyed request may get."""
    pipeline = finance(tmp_path)
    settings = ServeSettings(mcp=mcp)
    app = create_app([pipeline], keyring(tmp_path), settings=settings)
    routes = {
        re.sub(r"\{name\}", pipeline.name, r.path)
        if r.path.endswith("/ask") or r.path.endswith("/ask/stream")
        else r.path: {m.lower() for m in (r.methods or ()) if m != "HEAD"}
        for r in app.routes
        if isinstance(r, Route)
    }
    async with serving([pipeline], keyring(tmp_path), settings) as client:
        doc = (await client.get("/openapi.json")).json()
    assert {path: set(ops) for path, ops in doc["paths"].items()} == routes
    assert ("/mcp" in routes) is mcp
    for path, ops in doc["paths"].items():
        for op in ops.values():
            if path.startswith("/v1/") or path == "/mcp":
                assert {"401", "429", "503"} <= set(op["responses"]), path
                assert op["security"]
            for code, response in op["responses"].items():
                assert response["description"], (path, code)
    ask = doc["paths"][ASK]["post"]
    assert {"400", "404", "408", "413"} <= set(ask["responses"])
    assert {"400", "404", "408", "413"} <= set(doc["paths"][ASK + "/stream"]["post"]["responses"])
    if mcp:  # its body is read as every served body is: strict, bounded in size and time
        assert {"400", "406", "408", "413", "415"} <= set(doc["paths"]["/mcp"]["post"]["responses"])
    assert "404" in doc["paths"]["/v1/streams/{correlation_id}"]["get"]["responses"]
    answer = doc["paths"]["/v1/approvals/{approval_id}/{verb}"]["post"]["responses"]
    assert "names the field" in answer["400"]["description"]
    assert {"408", "413"} <= set(answer)
    assert "names the field" in ask["responses"]["400"]["description"]  # not written over
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "apiKey"}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("keys:\n  - {principal: a, key: 0123456789abcdef\n", ":3"),  # unclosed flow mapping
        ("keys:\n\t- principal: a\n", ":2"),  # a tab indent
        ("keys:\n  - principal: a\n  key: [\n", ":3"),
    ],
)
def test_a_key_file_with_bad_yaml_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(text)
    code = main(["serve", str(ROOT / "config/pipelines/finance.yaml"), "--keys", str(keys)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert f"{keys}{where}" in err, err


def test_a_missing_key_file_is_named_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nokeys.yaml"
    code = main(["serve", str(ROOT / "config/pipelines/finance.yaml"), "--keys", str(missing)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert f"{missing}: does not exist" in err


@pytest.mark.parametrize(
    ("header", "error", "field"),
    [
        ('{"a": {"b": 1}}', "header Genie-Metadata: 'a' must be text", "metadata.a"),
        ('{"a": [1, "x"]}', "'a' must be text, a number, a boolean, null or a list", "metadata.a"),
        ('{"a": NaN}', "header Genie-Metadata is not valid JSON: NaN is not JSON", None),
        ('{"a": "x", "a": "y"}', "Genie-Metadata is not valid JSON: key 'a' given twice", None),
    ],
)
async def test_metadata_a_message_cannot_hold_is_a_400_naming_the_key(
    tmp_path: Path, header: str, error: str, field: str | None
) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        r = await client.post(
            ASK, json=csv_body(), headers={**auth(ALICE), "Genie-Metadata": header}
        )
        fine = await client.post(
            ASK,
            json=csv_body(),
            headers={**auth(ALICE), "Genie-Metadata": '{"a": ["x"], "n": 1.5, "z": null}'},
        )
    assert r.status_code == 400
    assert error in r.json()["error"]
    assert r.json().get("field") == field
    assert fine.status_code == 200


async def test_a_body_with_a_key_twice_or_nan_is_a_400(tmp_path: Path) -> None:
    """Two parsers may disagree on which of two values counts: the server takes neither."""
    csv = json.dumps(csv_body()["csv"])
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        twice = await client.post(ASK, content=f'{{"csv": {csv}, "csv": "x"}}', headers=auth(ALICE))
        nan = await client.post(
            ASK, content=f'{{"csv": {csv}, "n": Infinity}}', headers=auth(ALICE)
        )
    assert twice.status_code == 400
    assert "the request body is not valid JSON: key 'csv' given twice" in twice.json()["error"]
    assert nan.status_code == 400
    assert "Infinity is not JSON" in nan.json()["error"]
