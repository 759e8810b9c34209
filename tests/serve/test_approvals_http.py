"""Approvals over HTTP (issue 37): ``GET /v1/approvals`` lists what the key's principal may
answer, ``POST /v1/approvals/{id}/approve|reject`` answers as the server-asserted identity
(the key's principal and roles), and the live page lists them with buttons, in Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import httpx

from genie import MemoryAuditLog
from genie.pipeline import Pipeline, load_pipeline
from genie.serve import load_keys

from ..conftest import must_skip, optional
from ..durable.test_approvals_kept import PIPELINE
from .conftest import ALICE, auth, finance, keyring, serving, sse

TREASURER = "tina-key-0123456789ab"  # principal tina, role treasurer
CLERK = "carl-key-0123456789abc"  # principal carl, role clerk
KEYS = f"""
keys:
  - {{principal: tina, key: {TREASURER}, roles: [treasurer]}}
  - {{principal: carl, key: {CLERK}, roles: [clerk]}}
"""


def setup(tmp_path: Path) -> tuple[Pipeline, Path]:
    (tmp_path / "pay.yaml").write_text(PIPELINE)
    (tmp_path / "keys.yaml").write_text(KEYS)
    return load_pipeline(tmp_path / "pay.yaml"), tmp_path / "keys.yaml"


async def pending(client: httpx.AsyncClient, key: str) -> list[dict[str, object]]:
    answer = await client.get("/v1/approvals", headers=auth(key))
    assert answer.status_code == 200
    approvals: list[dict[str, object]] = answer.json()["approvals"]
    return approvals


async def first_pending(client: httpx.AsyncClient, key: str) -> dict[str, object]:
    """The approval the request asks for, once it is asked: the request reaches the desk
    through the server's own tasks, which a loaded machine may run late."""
    with anyio.fail_after(10):
        while not (approvals := await pending(client, key)):  # noqa: ASYNC110 (over HTTP)
            await anyio.sleep(0.01)
    [approval] = approvals
    return approval


async def test_an_approval_is_listed_and_answered_as_the_keys_identity(tmp_path: Path) -> None:
    pipeline, keys = setup(tmp_path)
    audit = MemoryAuditLog()
    async with serving([pipeline], load_keys(keys, {}), audit=audit) as client:
        streamed: list[httpx.Response] = []

        async def ask() -> None:
            stream = "/v1/pipelines/pay/ask/stream"
            streamed.append(await client.post(stream, json={}, headers=auth(CLERK), timeout=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            approval = await first_pending(client, TREASURER)  # the request waits at the desk
            assert approval["subject"] == "pay Rs 25000"
            assert approval["pipeline"] == "pay"
            assert await pending(client, CLERK) == []  # not his to answer
            url = f"/v1/approvals/{approval['id']}"
            refused = await client.post(f"{url}/approve", json={}, headers=auth(CLERK))
            assert refused.status_code == 403
            assert "needs the role 'treasurer', which carl does not hold" in refused.json()["error"]
            unknown = await client.post("/v1/approvals/nope/approve", headers=auth(TREASURER))
            assert unknown.status_code == 404
            assert unknown.json()["error"] == (
                "no pending approval 'nope' (unknown: never asked here, or forgotten)"
            )
            verb = await client.post(f"{url}/ignore", headers=auth(TREASURER))
            assert verb.status_code == 404
            answered = await client.post(
                f"{url}/approve", json={"reason": "in budget"}, headers=auth(TREASURER)
            )
            assert answered.status_code == 200
            assert answered.json()["answer"] == "approved"
        late = await client.post(f"{url}/reject", headers=auth(TREASURER))
        assert late.status_code == 404
        assert late.json()["error"] == (
            f"no pending approval {approval['id']!r} (decided already: approved by tina: in budget)"
        )
    [result] = [d for _, kind, d in sse(streamed[0].text) if kind == "result"]
    assert result["status"] == "ok"
    assert result["output"]["payload"] == {  # type: ignore[index]
        "approved": True,
        "by": "tina",
        "reason": "in budget",
    }
    actions = [(r.actor, r.action) for r in audit.records if r.action.startswith(("appr", "rej"))]
    assert actions == [
        ("payer", "approval_requested"),
        ("carl", "approval_refused"),
        ("tina", "approval_refused"),
        ("tina", "approved"),
        ("tina", "approval_refused"),
    ]
    refusals = [
        (r.actor, r.target, r.details["answer"], r.details["reason"])
        for r in audit.records
        if r.action == "approval_refused"
    ]
    assert refusals[1:] == [
        ("tina", "nope", "approve", "unknown: never asked here, or forgotten"),
        ("tina", approval["id"], "reject", "too late: it was decided already"),
    ]


async def test_an_answer_to_a_server_that_asks_for_no_approval_is_audited(
    tmp_path: Path,
) -> None:
    """No pipeline served asks for approvals: an answer is to an id nobody asked, refused
    as unknown and audited, as on a server that does."""
    audit = MemoryAuditLog()
    async with serving([finance(tmp_path)], keyring(tmp_path), audit=audit) as client:
        unknown = await client.post("/v1/approvals/nope/reject", headers=auth(ALICE))
    assert unknown.status_code == 404
    assert unknown.json()["error"] == (
        "no pending approval 'nope' (unknown: never asked here, or forgotten)"
    )
    refused = [
        (r.actor, r.target, r.details["answer"], r.details["reason"])
        for r in audit.records
        if r.action == "approval_refused"
    ]
    assert refused == [("alice", "nope", "reject", "unknown: never asked here, or forgotten")]


async def test_the_live_page_lists_an_approval_and_its_button_answers_it(tmp_path: Path) -> None:
    optional("playwright", "browser")
    from playwright.async_api import async_playwright, expect

    from .test_page import CHROMIUM, FLAGS

    if shutil.which(CHROMIUM) is None:
        must_skip("Debian's chromium is not installed (.ci/run installs it)")
    pipeline, keys = setup(tmp_path)
    async with (
        serving([pipeline], load_keys(keys, {})) as client,
        async_playwright() as pw,
        anyio.create_task_group() as tg,
    ):
        streamed: list[httpx.Response] = []

        async def ask() -> None:
            stream = "/v1/pipelines/pay/ask/stream"
            streamed.append(await client.post(stream, json={}, headers=auth(CLERK), timeout=60))

        tg.start_soon(ask)
        browser = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            page = await browser.new_page()
            await page.goto(str(client.base_url))
            await page.fill("#key", TREASURER)
            await page.dispatch_event("#key", "change")
            row = page.locator("#approvals tbody tr")
            await expect(row).to_have_count(1, timeout=10_000)
            await expect(row.locator("td").nth(2)).to_have_text("pay Rs 25000")
            await row.locator("button.approve").click()
            await expect(row).to_have_count(0, timeout=10_000)  # answered: no longer pending
        finally:
            await browser.close()
    [result] = [d for _, kind, d in sse(streamed[0].text) if kind == "result"]
    assert result["output"]["payload"]["by"] == "tina"  # type: ignore[index]


async def test_an_answer_a_policy_denies_is_refused_and_the_approval_waits(
    tmp_path: Path,
) -> None:
    """The policies may keep a person's answer from the desk: she is told so (403, with the
    policy and its reason), not that it was given, and another answer still decides."""
    four_eyes = (
        "governance:\n  rules:\n"
        "    - {id: four-eyes, when: 'from == \"mallory\"', reason: mallory raised it}\n"
    )
    (tmp_path / "pay.yaml").write_text(PIPELINE + four_eyes)
    mallory = "mallory-key-0123456789"
    (tmp_path / "keys.yaml").write_text(
        KEYS + f"  - {{principal: mallory, key: {mallory}, roles: [treasurer]}}\n"
    )
    pipeline = load_pipeline(tmp_path / "pay.yaml")
    async with serving([pipeline], load_keys(tmp_path / "keys.yaml", {})) as client:
        streamed: list[httpx.Response] = []

        async def ask() -> None:
            stream = "/v1/pipelines/pay/ask/stream"
            streamed.append(await client.post(stream, json={}, headers=auth(CLERK), timeout=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            approval = await first_pending(client, TREASURER)
            url = f"/v1/approvals/{approval['id']}"
            denied = await client.post(f"{url}/approve", json={}, headers=auth(mallory))
            assert denied.status_code == 403
            assert denied.json()["error"] == (
                "denied by four-eyes: mallory raised it (the answer of mallory is not given: "
                f"approval {approval['id']} is still pending)"
            )
            assert await pending(client, TREASURER) == [approval]
            answered = await client.post(f"{url}/reject", json={}, headers=auth(TREASURER))
            assert answered.status_code == 200
    [result] = [d for _, kind, d in sse(streamed[0].text) if kind == "result"]
    assert result["output"]["payload"]["by"] == "tina"  # type: ignore[index]
