"""``genie serve --store`` with the shipped sme-loan workflow (issue 37): the server is killed
with SIGKILL while the loan's approval is pending, and started again on the same store. The
approval is listed again, with the same id, to the credit officer's key; approved over HTTP,
the loan runs on, and the client that asked reads the sanctioned outcome on its stream."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx

from .conftest import auth, sse

ROOT = Path(__file__).resolve().parents[2]
DESK = "desk-key-0123456789abc"  # principal loan-desk, role advisor: may ask for a loan
RAVI = "ravi-key-0123456789abc"  # principal ravi, role credit_officer: may approve it
KEYS = (
    f"{{keys: [{{principal: loan-desk, key: {DESK}, roles: [advisor]}}, "
    f"{{principal: ravi, key: {RAVI}, roles: [credit_officer]}}]}}"
)


def start(store: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "GENIE_API_KEYS": KEYS}
    command = [sys.executable, "-m", "genie._cli", "serve", "sme-loan", "--port", "0"]
    command += ["--store", str(store)]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
    assert found, line
    return proc, found.group(1)


async def pending(client: httpx.AsyncClient) -> list[dict[str, object]]:
    with anyio.fail_after(20):
        while True:
            listed = await client.get("/v1/approvals", headers=auth(RAVI))
            assert listed.status_code == 200
            approvals: list[dict[str, object]] = listed.json()["approvals"]
            if approvals:
                return approvals
            await anyio.sleep(0.05)


async def test_a_pending_loan_approval_survives_a_killed_server(tmp_path: Path) -> None:
    store = tmp_path / "store"
    loan = json.loads((ROOT / "config" / "data" / "sme-loan.json").read_text())
    proc, url = start(store)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            ask = client.stream(
                "POST", "/v1/pipelines/sme-loan/ask/stream", json=loan, headers=auth(DESK)
            )
            async with ask as response:
                assert response.status_code == 200, await response.aread()
                location = response.headers["location"]
                [before] = await pending(client)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    offer = "Rs 2,000,000 at 10.5% for 60 months"
    assert before["subject"] == f"Sanction {offer} to shree-ganesh-traders"

    proc, url = start(store)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            [after] = await pending(client)
            assert after["id"] == before["id"]  # the same approval, kept
            approve = f"/v1/approvals/{after['id']}/approve"
            answered = await client.post(approve, json={"reason": "ok"}, headers=auth(RAVI))
            assert answered.status_code == 200, answered.text
            with anyio.fail_after(20):
                resumed = await client.get(location, headers=auth(DESK))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert resumed.status_code == 200, resumed.text
    [result] = [data for _, kind, data in sse(resumed.text) if kind == "result"]
    assert result["status"] == "ok"
    outcome = result["output"]["payload"]  # type: ignore[index]
    assert outcome["status"] == "completed"
    assert outcome["state"]["sanction_letter"].startswith("Sanctioned to shree-ganesh-traders")
