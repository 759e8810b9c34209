"""The HTTP edge never answers a client's bytes with a traceback (issue 35, item 6): strict,
bounded parsing of every header and body, the limits docs/serve.md states enforced at and just
past their bound, one credential a request, failed keys throttled per address, streams kept per
principal, and the page's security headers. Against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import random
import re
from pathlib import Path

import anyio
import httpx
import pytest

from genie import MemoryAuditLog
from genie.serve import ServeSettings, load_keys

from .conftest import ALICE, BOB, ROOT, auth, csv_body, finance, keyring, serving, sse

ASK = "/v1/pipelines/finance/ask"
MAX_HEADER_BYTES = 16 * 1024  # docs/serve.md: "Headers as a whole are bounded ... 16 KiB"


def raw(*pairs: tuple[str, str | bytes]) -> list[tuple[bytes, bytes]]:
    """Headers as the bytes a client sends (httpx takes only ASCII text otherwise)."""
    return [(n.encode(), v if isinstance(v, bytes) else v.encode()) for n, v in pairs]


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    faults = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert faults == [], [r.getMessage() for r in faults]


async def test_a_last_event_id_int_refuses_replays_the_stream_instead_of_a_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        first = sse((await client.post(ASK + "/stream", json=csv_body(), headers=auth(ALICE))).text)
        cid = first[0][2]["correlation_id"]
        for number in ("\u00b2", "\u0663", "7" * 5000, "1" * 10):
            last = f"{cid}:{number}".encode()  # the header's bytes, as a client may send them
            again = await client.get(
                f"/v1/streams/{cid}", headers=raw(*auth(ALICE).items(), ("Last-Event-ID", last))
            )
            assert again.status_code == 200, number[:8]
            assert sse(again.text) == first  # a malformed id replays everything
    no_traceback(caplog)


async def test_bodies_and_metadata_are_strict_json_in_strict_utf8(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv = json.dumps(csv_body()["csv"])
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        huge_number = await client.post(
            ASK, content=f'{{"csv": {csv}, "n": 1e999}}', headers=auth(ALICE)
        )
        long_int = await client.post(
            ASK, content=f'{{"csv": {csv}, "n": {"7" * 5000}}}', headers=auth(ALICE)
        )
        long_meta = await client.post(
            ASK,
            json=csv_body(),
            headers={**auth(ALICE), "Genie-Metadata": f'{{"n": -{"1" * 4301}}}'},
        )
        longest = await client.post(
            ASK,
            json=csv_body(),
            headers={**auth(ALICE), "Genie-Metadata": f'{{"n": {"1" * 4300}}}'},
        )
        huge_meta = await client.post(
            ASK, json=csv_body(), headers={**auth(ALICE), "Genie-Metadata": '{"n": -1e400}'}
        )
        latin1 = await client.post(
            ASK, content=b'{"csv": "caf\xe9"}', headers=auth(ALICE)
        )  # Latin-1, not UTF-8
        meta_bytes = await client.post(
            ASK,
            json=csv_body(),
            headers=raw(*auth(ALICE).items(), ("Genie-Metadata", b'{"who": "\xff"}')),
        )
        meta_twice = await client.post(
            ASK,
            json=csv_body(),
            headers=raw(*auth(ALICE).items(), ("Genie-Metadata", "{}"), ("Genie-Metadata", "{}")),
        )
        utf8_meta = await client.post(
            ASK,
            json=csv_body(),
            headers=raw(*auth(ALICE).items(), ("Genie-Metadata", '{"city": "Zürich"}'.encode())),
        )
    for answer, error in (
        (huge_number, "the request body is not valid JSON: number 1e999 is out of range"),
        (huge_meta, "header Genie-Metadata is not valid JSON: number -1e400 is out of range"),
        (
            long_int,
            "the request body is not valid JSON: number 77777777777777777777777777777777... "
            "is too long: 5000 digits, at most 4300",
        ),
        (
            long_meta,
            "header Genie-Metadata is not valid JSON: number -1111111111111111111111111111111... "
            "is too long: 4301 digits, at most 4300",
        ),
        (latin1, "the request body is not UTF-8 (byte 12)"),
        (meta_bytes, "header Genie-Metadata is not UTF-8 (byte 9)"),
        (meta_twice, "header Genie-Metadata given twice"),
    ):
        assert answer.status_code == 400, answer.text
        assert error in answer.json()["error"]
    assert utf8_meta.status_code == 200
    assert longest.status_code == 200  # as long as an integer may be
    no_traceback(caplog)


async def test_a_lone_surrogate_in_the_body_or_metadata_is_a_400_naming_where(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``\ud800`` escape decoded to text the policies could not read as JSON: the request
    was denied (403, "policy raised PydanticSerializationError"), or refused for whatever the
    payload said next; now it is refused as the JSON it is, with where in it."""
    csv = json.dumps(csv_body()["csv"])
    bodies = {
        "$.question": f'{{"csv": {csv}, "question": "how much \\ud800?"}}',
        "$.extra.items[1].note": (
            f'{{"csv": {csv}, "question": "q", "extra": {{"items": [1, {{"note": "\\udfff"}}]}}}}'
        ),
        "$": f'{{"csv": {csv}, "question\\udc00": "q"}}',  # a key: of the body itself
    }
    audit = MemoryAuditLog()
    async with serving([finance(tmp_path)], keyring(tmp_path), audit=audit) as client:
        answers = {
            path: await client.post(ASK, content=body, headers=auth(ALICE))
            for path, body in bodies.items()
        }
        streamed = await client.post(
            ASK + "/stream", content=bodies["$.question"], headers=auth(ALICE)
        )
        meta = await client.post(
            ASK, json=csv_body(), headers={**auth(ALICE), "Genie-Metadata": '{"who": "\\ud800"}'}
        )
        paired = await client.post(
            ASK,
            content=f'{{"csv": {csv}, "question": "how much \\ud83d\\ude00?"}}',
            headers=auth(ALICE),
        )
    for path, answer in [*answers.items(), ("$.question", streamed)]:
        assert answer.status_code == 400, answer.text
        assert answer.json()["path"] == path
        assert answer.json()["error"].startswith(
            f"the request body is not valid JSON: {'a key of ' if path == '$' else ''}{path}: "
        )
        assert "holds a lone surrogate" in answer.json()["error"]
    assert (
        answers["$.question"]
        .json()["error"]
        .startswith(
            "the request body is not valid JSON: $.question: 'how much \\ud800?' holds a lone "
            "surrogate (U+D800 at index 9), which is no character"
        )
    )
    assert meta.status_code == 400, meta.text
    assert meta.json()["path"] == "$.who"
    assert meta.json()["error"].startswith("header Genie-Metadata is not valid JSON: $.who: ")
    # A pair of escapes is one character: the request runs, and its report quotes it.
    assert paired.status_code == 200, paired.text
    assert "Question: how much \U0001f600?" in paired.json()["output"]["payload"]["text"]
    # Refused before a message was made: nothing was judged, so nothing was denied.
    assert not [r for r in audit.records if "denied" in r.action]
    no_traceback(caplog)


def padded(client: httpx.AsyncClient, size: int) -> httpx.Request:
    """A GET /healthz whose request line and headers come to ``size`` bytes as the server
    counts them (path, and each header's name and value plus 4)."""
    request = client.build_request("GET", "/healthz", headers={"x-pad": ""})
    used = len(b"/healthz") + sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
    return client.build_request("GET", "/healthz", headers={"x-pad": "p" * (size - used)})


async def test_the_header_limit_is_the_documented_16_kib_at_and_past_its_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert "16 KiB" in (ROOT / "docs/serve.md").read_text()
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        at = await client.send(padded(client, MAX_HEADER_BYTES))
        past = await client.send(padded(client, MAX_HEADER_BYTES + 1))
        big = await client.send(padded(client, 119 * 1024))
    assert at.status_code == 200
    assert past.status_code == 431
    assert past.json() == {"error": "the request line and headers are over 16384 bytes"}
    # Far past it, h11 may refuse first (a 400 of its own); either way it is not served.
    assert big.status_code in (400, 431)
    no_traceback(caplog)


@pytest.mark.parametrize("length", [b"abc", b"-1", b"+5", b"1e3"])
async def test_a_malformed_content_length_is_uvicorns_plain_400_the_documented_limit(
    tmp_path: Path, length: bytes
) -> None:
    """docs/serve.md's known limit: uvicorn's HTTP parser refuses the request line and
    headers it cannot frame before any ASGI app is called, so the answer is its plain-text 400,
    not the server's JSON (and no request of the app is counted)."""
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        port = client.base_url.port
        assert port is not None
        async with await anyio.connect_tcp("127.0.0.1", port) as sock:
            await sock.send(
                b"POST "
                + ASK.encode()
                + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + ALICE.encode()
                + b"\r\nContent-Length: "
                + length
                + b"\r\n\r\n{}"
            )
            answer = b""
            with anyio.fail_after(5):
                while True:
                    try:
                        answer += await sock.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
        metrics = (await client.get("/metrics")).text
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"content-type: text/plain" in head.lower()
    assert body == b"Invalid HTTP request received."
    assert 'route="ask"' not in metrics


async def test_two_credentials_in_one_request_are_refused(tmp_path: Path) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        both = await client.get("/v1/pipelines", headers={**auth(ALICE), "X-API-Key": BOB})
        keys = await client.get("/v1/pipelines", headers=[("X-API-Key", ALICE)] * 2)
        bearers = await client.get(
            "/v1/pipelines",
            headers=[("Authorization", f"Bearer {ALICE}"), ("Authorization", f"Bearer {BOB}")],
        )
        one = await client.get("/v1/pipelines", headers={"X-API-Key": ALICE})
    for answer in (both, keys, bearers):
        assert answer.status_code == 400
        assert answer.json()["error"].startswith("two credentials in one request")
    assert one.status_code == 200


async def test_a_key_beyond_ascii_is_the_utf8_bytes_its_digest_was_taken_of(
    tmp_path: Path,
) -> None:
    """docs/serve.md's recipe, ``printf %s "$KEY" | sha256sum``, digests the key's UTF-8:
    a client sending those bytes was refused (the server hashed the header's bytes read as
    Latin-1 and written again as UTF-8), and only the key's Latin-1 bytes were taken."""
    secret = "schl\u00fcssel-\u00e9t\u00e9-0123456789"
    path = tmp_path / "keys.yaml"
    sha = hashlib.sha256(secret.encode()).hexdigest()
    path.write_text(f"keys:\n  - {{principal: zoe, key_sha256: {sha}, roles: [user]}}\n")
    async with serving([finance(tmp_path)], load_keys(path, {})) as client:
        utf8 = await client.get("/v1/pipelines", headers=raw(("X-API-Key", secret.encode())))
        bearer = await client.get(
            "/v1/pipelines", headers=raw(("Authorization", b"Bearer " + secret.encode()))
        )
        latin1 = await client.get(
            "/v1/pipelines", headers=raw(("X-API-Key", secret.encode("latin-1")))
        )
    assert (utf8.status_code, bearer.status_code) == (200, 200)
    assert latin1.status_code == 401


async def test_failed_keys_are_throttled_per_address_with_retry_after(tmp_path: Path) -> None:
    audit = MemoryAuditLog()
    settings = ServeSettings(auth_failures=3, auth_failure_rate=0.5)
    async with serving([finance(tmp_path)], keyring(tmp_path), settings, audit) as client:
        guesses = [
            (await client.get("/v1/pipelines", headers=auth(f"guess-{n:016d}"))).status_code
            for n in range(3)
        ]
        throttled = await client.get("/v1/pipelines", headers=auth("guess-0000000000000004"))
        even_a_good_key = await client.get("/v1/pipelines", headers=auth(ALICE))
    assert guesses == [401, 401, 401]
    for answer in (throttled, even_a_good_key):
        assert answer.status_code == 429
        assert int(answer.headers["Retry-After"]) >= 1
        assert "too many failed authentications" in answer.json()["error"]
    assert [(r.action, r.target) for r in audit.records] == [("auth_throttled", "127.0.0.1")]


async def test_one_principals_burst_does_not_evict_anothers_streams(tmp_path: Path) -> None:
    settings = ServeSettings(replay=2)
    async with serving([finance(tmp_path)], keyring(tmp_path), settings) as client:
        mine = sse((await client.post(ASK + "/stream", json=csv_body(), headers=auth(ALICE))).text)
        for _ in range(3):
            await client.post(ASK + "/stream", json=csv_body(), headers=auth(BOB))
            await anyio.sleep(0.6)  # bob's own rate: 2 a second
        cid = mine[0][2]["correlation_id"]
        again = await client.get(f"/v1/streams/{cid}", headers=auth(ALICE))
    assert again.status_code == 200
    assert sse(again.text) == mine


async def test_the_page_sends_csp_frame_and_nosniff_headers(tmp_path: Path) -> None:
    async with serving([finance(tmp_path)], keyring(tmp_path)) as client:
        page = await client.get("/")
        api = await client.get("/healthz")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "connect-src 'self'" in csp
    [script] = re.findall(r"<script>(.*?)</script>", page.text, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp  # the page's own script, and no other
    assert "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert api.headers["X-Content-Type-Options"] == "nosniff"


async def test_fuzzing_the_edge_gets_no_500_and_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Random bytes on the socket, random headers and random JSON-ish bodies, seeded."""
    caplog.set_level(logging.INFO)
    rng = random.Random(35)
    settings = ServeSettings(rate=10_000, auth_failures=10_000)
    paths = [ASK, ASK + "/stream", "/v1/pipelines", "/v1/streams/x", "/", "/nope", "/v1/%ff"]
    values = ["", "\u00b2", "9" * 5000, "1e999", "NaN", '{"a":1,"a":2}', "[]", "{", "Bearer x y"]
    values += ['{"n": 1e999}', '{"who": "\u00ff"}', "x:" + "\u0663", "\u00e9" * 40]
    async with serving([finance(tmp_path)], keyring(tmp_path), settings) as client:
        port = client.base_url.port
        assert port is not None
        streamed = await client.post(ASK + "/stream", json=csv_body(), headers=auth(ALICE))
        cid = sse(streamed.text)[0][2]["correlation_id"]
        resume = f"/v1/streams/{cid}"
        paths += [resume] * 3  # a stream that is there, so its Last-Event-ID is read
        codes: list[int] = []
        for _ in range(60):
            noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
            head = rng.choice([b"", b"GET / HTTP/1.1\r\nHost: x\r\n", b"POST " + ASK.encode()])
            async with await anyio.connect_tcp("127.0.0.1", port) as sock:
                await sock.send(head + noise + b"\r\n\r\n")
                answer = b""
                with anyio.move_on_after(2):
                    while not answer.endswith(b"\r\n\r\n") and len(answer) < 4096:
                        try:
                            answer += await sock.receive()
                        except (anyio.EndOfStream, anyio.BrokenResourceError):
                            break
                assert not answer.startswith(b"HTTP/1.1 500"), answer[:200]
        for _ in range(150):
            secret = rng.choice([ALICE] * 3 + ["x"])
            headers = raw(
                rng.choice([("authorization", f"Bearer {secret}"), ("x-api-key", secret)])
            )
            for _ in range(rng.randrange(4)):
                name = rng.choice(["genie-metadata", "last-event-id", "content-type", "x-a"])
                headers += raw((name, rng.choice(values)))
            if rng.random() < 0.5:
                body = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
            else:
                body = rng.choice([*values, json.dumps(csv_body()), '{"csv": 1e999}']).encode()
            path = rng.choice(paths) + rng.choice(["", "?timeout=" + rng.choice(values)])
            method = "GET" if path.startswith(resume) else rng.choice(["GET", "POST"])
            if path.startswith(resume):
                headers[1:1] = raw(("last-event-id", f"{cid}:{rng.choice(values)}"))
            reply = await client.request(method, path, content=body, headers=headers)
            codes.append(reply.status_code)
            assert reply.status_code != 500, (method, path, headers, body[:80], reply.text)
            if reply.status_code >= 400:
                assert "error" in reply.json()
    assert len(set(codes)) > 3  # the fuzz reached more than one refusal
    no_traceback(caplog)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("rate", 0),
        ("rate", math.nan),
        ("rate", math.inf),
        ("rate", "10"),
        ("heartbeat", 0),
        ("body_timeout", -1.0),
        ("max_timeout", math.nan),
        ("auth_failure_rate", 0.0),
        ("max_body", 0),
        ("max_body", 1.5),
        ("burst", 0),
        ("burst", True),
        ("replay", -1),
        ("stream_bytes", "1"),
        ("hold_back", -1),
    ],
)
def test_a_setting_no_server_can_run_with_is_refused_naming_it(setting: str, value: object) -> None:
    """Refused where it is given: a rate of 0 was a ZeroDivisionError (a 500) at a principal's
    second request, a heartbeat of 0 a stream of keep-alives without end."""
    with pytest.raises(ValueError, match=f"^{setting} must be "):
        ServeSettings(**{setting: value})  # type: ignore[arg-type]


async def test_the_settings_at_their_bounds_serve(tmp_path: Path) -> None:
    settings = ServeSettings(rate=1e-9, burst=1, replay=0, stream_frames=0, hold_back=None)
    async with serving([finance(tmp_path)], keyring(tmp_path), settings) as client:
        first = await client.get("/v1/pipelines", headers=auth(ALICE))
        second = await client.get("/v1/pipelines", headers=auth(ALICE))
    assert (first.status_code, second.status_code) == (200, 429)
