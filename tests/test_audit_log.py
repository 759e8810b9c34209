"""The hash-chained JSONL audit log: it records what the runtime decides, and verify finds
any edited, deleted or reordered row."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from genie import AuditRecord, JsonlAuditLog, Runtime, verify_audit_log
from genie._cli import main

from .conftest import DenyTo, Echo, Ping


def write_log(path: Path, rows: int = 5) -> None:
    log = JsonlAuditLog(path)
    for i in range(rows):
        at = datetime(2026, 1, 1, 10, 0, i, 120000, tzinfo=UTC)
        log.record(AuditRecord(at, "policy", "denied", f"agent{i}", {"reason": f"r<{i}>"}))
    log.close()


def rows(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_rows_follow_the_go_format(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 2)
    first, second = (json.loads(line) for line in rows(path))
    assert list(first) == [
        "seq", "occurred_at", "actor", "action", "target", "details", "prev_hash", "row_hash"
    ]  # fmt: skip
    assert first["seq"] == 1
    assert first["prev_hash"] == "genesis"
    assert first["occurred_at"] == "2026-01-01T10:00:00.12Z"
    assert second["prev_hash"] == first["row_hash"]
    assert "\\u003c" in rows(path)[0]  # Go escapes < and >
    assert verify_audit_log(path).ok


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    write_log(path, 2)
    verdict = verify_audit_log(path)
    assert verdict.ok
    assert verdict.rows == 5


def test_edit_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    lines = rows(path)
    lines[2] = lines[2].replace("agent2", "agentX")
    path.write_text("\n".join(lines) + "\n")
    verdict = verify_audit_log(path)
    assert (verdict.ok, verdict.line, verdict.problem) == (
        False,
        3,
        "audit: seq 3 row_hash tampered",
    )


def test_delete_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    lines = rows(path)
    del lines[1]
    path.write_text("\n".join(lines) + "\n")
    verdict = verify_audit_log(path)
    assert (verdict.ok, verdict.line) == (False, 2)
    assert verdict.problem == "audit: seq 3 out of order (expected 2)"


def test_reorder_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    lines = rows(path)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("\n".join(lines) + "\n")
    assert not verify_audit_log(path).ok
    assert verify_audit_log(path).line == 2


def test_rehashed_edit_still_breaks_the_next_link(tmp_path: Path) -> None:
    from genie._audit import _go_json, _row_hash

    path = tmp_path / "audit.jsonl"
    write_log(path)
    lines = rows(path)
    row = json.loads(lines[1])
    row["target"] = "someone-else"
    row["row_hash"] = _row_hash(row["prev_hash"], {k: v for k, v in row.items() if k != "row_hash"})
    lines[1] = _go_json(row)
    path.write_text("\n".join(lines) + "\n")
    verdict = verify_audit_log(path)
    assert (verdict.line, verdict.problem) == (3, "audit: seq 3 prev_hash mismatch")


def test_cli_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    assert main(["audit", "verify", str(path)]) == 0
    assert capsys.readouterr().out.startswith("OK: 5 rows, hash chain intact")
    path.write_text(path.read_text().replace("agent4", "agent5"))
    assert main(["audit", "verify", str(path)]) == 1
    assert f"BROKEN: {path}:5: audit: seq 5 row_hash tampered" in capsys.readouterr().out
    assert main(["audit", "verify", str(tmp_path / "missing.jsonl")]) == 2
    path.write_text("{not json\n")
    assert main(["audit", "verify", str(path)]) == 1


async def test_denied_fan_out_branch_end_to_end(tmp_path: Path) -> None:
    """A policy denies one branch of a fan-out: the fan-in returns at once with the policy
    named, and the audit log of the run verifies."""
    path = tmp_path / "run-audit.jsonl"
    log = JsonlAuditLog(path)
    ids = ["forecaster", "anomaly_detector", "recommender"]
    async with Runtime(
        [Echo(i) for i in ids], policies=[DenyTo("recommender", name="rbac")], audit=log
    ) as rt:
        for agent_id in ids:
            rt.subscribe(agent_id, "ping")
        msg = rt.message(Ping(n=1))
        gather = rt.gather(msg.correlation_id, senders=ids, timeout=30)
        await rt.publish(msg)
        result = await gather.wait()
    log.close()
    assert result.status == "partial"
    assert sorted(r.sender for r in result.replies) == ["anomaly_detector", "forecaster"]
    [missing] = result.missing
    assert (missing.key, missing.policy, missing.reason) == (
        "recommender",
        "rbac",
        "recommender is blocked",
    )
    assert verify_audit_log(path).ok
    [row] = [json.loads(line) for line in rows(path)]
    assert (row["actor"], row["action"], row["target"]) == ("rbac", "denied", "recommender")
    assert row["details"]["correlation_id"] == msg.correlation_id
