"""A served runtime whose audit sink refuses a record stops, and the server says why: every
request still to answer is a 503 naming the sink's failure (docs/governance.md)."""

from __future__ import annotations

from pathlib import Path

import anyio

from genie import AuditRecord, MemoryAuditLog
from genie.pipeline import load_pipeline

from .conftest import ALICE, auth, keyring, serving

PIPELINE = """\
agents:
  - id: failing
    use: tests.runtime.test_audit_failure:Failing
entry: {type: ping, to: failing, payload: {n: 1}}
output: pong
timeout: 10s
"""


class Refusing(MemoryAuditLog):
    def record(self, record: AuditRecord) -> None:
        if record.action.startswith("dead_letter"):
            raise OSError(28, "No space left on device")
        super().record(record)


async def test_a_refused_record_stops_the_runtime_and_the_server_answers_503(
    tmp_path: Path,
) -> None:
    (tmp_path / "failing.yaml").write_text(PIPELINE)
    pipeline = load_pipeline(tmp_path / "failing.yaml")
    said = (
        "the audit sink refused a dead_letter:failed record: OSError: [Errno 28] No space left "
        "on device; the runtime stopped, as nothing governed goes on unrecorded; the server is "
        "stopping"
    )
    async with serving([pipeline], keyring(tmp_path), audit=Refusing()) as web:
        asked = await web.post("/v1/pipelines/failing/ask", json={}, headers=auth(ALICE))
        assert asked.status_code == 503
        assert asked.json()["error"] == said
        with anyio.fail_after(5):
            health = await web.get("/healthz")
        assert (health.status_code, health.json()["status"]) == (503, "failed")
