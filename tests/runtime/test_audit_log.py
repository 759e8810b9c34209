"""The hash-chained JSONL audit log: it records what the runtime decides, and verify finds
any edited, deleted or reordered row."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from genie import AuditRecord, JsonlAuditLog, Runtime, verify_audit_log
from genie._cli.main import main
from genie._runtime.audit import AuditLogError

from ..conftest import DenyTo, Echo, Ping

FINANCE = Path(__file__).resolve().parents[2] / "config" / "pipelines" / "finance.yaml"


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


def test_text_utf8_cannot_hold_is_written_as_go_writes_it(tmp_path: Path) -> None:
    """A detail from outside may hold a lone surrogate (a command line's bytes, decoded with
    surrogateescape): the row is written with U+FFFD in its place, as Go's encoder writes text
    that is not UTF-8, and the chain verifies; a pair written as two code points is the one
    character it makes."""
    path = tmp_path / "audit.jsonl"
    log = JsonlAuditLog(path)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    log.record(AuditRecord(at, "approvals", "rejected", "pay\udcff", {"reason": "no \udcffgo"}))
    log.record(AuditRecord(at, "approvals", "approved", "pay", {"reason": "ok \ud83d\ude00"}))
    log.close()
    first, second = (json.loads(line) for line in rows(path))
    assert (first["target"], first["details"]["reason"]) == ("pay\ufffd", "no \ufffdgo")
    assert second["details"]["reason"] == "ok \U0001f600"
    assert [first["seq"], second["seq"]] == [1, 2]
    assert verify_audit_log(path).ok


def test_a_row_that_cannot_be_made_leaves_no_gap_in_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = JsonlAuditLog(path)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    log.record(AuditRecord(at, "policy", "denied", "a", {"reason": "first"}))
    with pytest.raises(TypeError):  # a detail with no JSON form: the caller's mistake
        log.record(AuditRecord(at, "policy", "denied", "b", {"reason": {1, 2}}))  # type: ignore[dict-item]
    log.record(AuditRecord(at, "policy", "denied", "c", {"reason": "third"}))
    log.close()
    assert [json.loads(line)["seq"] for line in rows(path)] == [1, 2]
    verdict = verify_audit_log(path)
    assert (verdict.ok, verdict.rows) == (True, 2)


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
    from genie._runtime.audit import _go_json, _row_hash

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


# --- hostile and damaged files ----------------------------------------------------------------
KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENIE_AUDIT_KEY", raising=False)


def record(log: JsonlAuditLog, i: int, **details: str) -> None:
    at = datetime(2026, 1, 1, 10, 0, i % 60, tzinfo=UTC)
    log.record(AuditRecord(at, "policy", "denied", f"agent{i}", {"reason": f"r{i}", **details}))


def keyed_log(path: Path, rows: int = 5, key: bytes = KEY) -> None:
    log = JsonlAuditLog(path, key=key)
    for i in range(rows):
        record(log, i)
    log.close()


def test_invalid_utf8_is_broken_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    data = path.read_bytes().split(b"\n")
    data[2] = data[2].replace(b"agent2", b"agent\xff\xfe")
    path.write_bytes(b"\n".join(data))
    verdict = verify_audit_log(path)
    assert (verdict.ok, verdict.line, verdict.rows) == (False, 3, 2)
    assert verdict.problem == "line 3: not UTF-8 (byte 99)"
    assert main(["audit", "verify", str(path)]) == 1
    assert capsys.readouterr().out == f"BROKEN: {path}:3: line 3: not UTF-8 (byte 99)\n"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        # json.loads keeps the last of two keys: the row below still hashes right, yet a
        # reader that takes the first one sees "allowed"
        (lambda r: r.replace('{"seq"', '{"action":"allowed","seq"'), "duplicated key 'action'"),
        (lambda r: r.replace('"details":{', '"details":{"reason":"x",'), "duplicated key 'reason'"),
        (lambda r: r.replace('"seq":3', '"seq":3.0'), "not an audit row (seq 3.0)"),
        (lambda r: r.replace('"seq":3', '"seq":true'), "not an audit row (seq True)"),
        (lambda r: r.replace('"target"', '"extra":1,"target"'), "not an audit row (the fields"),
        (lambda r: r.replace('"row_hash":"', '"row_hash":NaN,"x":"'), "NaN is not JSON"),
        (lambda r: r[:-1] + ',"deep":' + "[" * 100_000 + "]" * 100_000 + "}", "nested too"),
        (lambda r: "[" + r + "]", "not an audit row"),
        (lambda r: "3", "not an audit row (the fields"),
    ],
)
def test_malformed_rows_are_broken(tmp_path: Path, edit: Any, problem: str) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    lines = rows(path)
    lines[2] = edit(lines[2])
    path.write_text("\n".join(lines) + "\n")
    verdict = verify_audit_log(path)
    assert (verdict.ok, verdict.line) == (False, 3)
    assert problem in verdict.problem


def test_duplicated_key_row_hashes_right_but_fails(tmp_path: Path) -> None:
    """The attack the duplicate check stops: the hash covers the last value only."""
    path = tmp_path / "audit.jsonl"
    write_log(path, 1)
    row = rows(path)[0]
    path.write_text(row.replace('{"seq"', '{"action":"allowed","seq"') + "\n")
    assert json.loads(rows(path)[0])["action"] == "denied"  # what the hash covers
    assert verify_audit_log(path).problem == "line 1: duplicated key 'action'"


def tear(path: Path, keep: int) -> bytes:
    """Append the first ``keep`` bytes of a next row (a crash mid-write); returns them."""
    scratch = path.with_suffix(".scratch")
    scratch.write_bytes(path.read_bytes())
    log = JsonlAuditLog(scratch)
    record(log, 99, note="caf\u00e9 \u2603")
    log.close()
    torn = scratch.read_bytes()[len(path.read_bytes()) :][:keep]
    scratch.unlink()
    with path.open("ab") as f:
        f.write(torn)
    return torn


@pytest.mark.parametrize("keep", [1, 40, 140, 143])  # 143: inside the three bytes of U+2603
def test_a_torn_last_line_is_recovered_with_a_record(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    torn = tear(path, keep)
    before = verify_audit_log(path)
    assert (before.ok, before.line) == (False, 4)
    assert before.problem == "line 4: torn last line (a crash mid-write?)"

    log = JsonlAuditLog(path)  # used to raise JSONDecodeError (every later run crashed)
    record(log, 4)
    log.close()
    verdict = verify_audit_log(path)
    assert (verdict.ok, verdict.rows, verdict.recovered) == (True, 5, (4,))
    lines = path.read_bytes().split(b"\n")
    assert lines[3] == torn  # kept as evidence, not truncated away
    recovery = json.loads(lines[4])
    assert (recovery["seq"], recovery["actor"], recovery["action"]) == (
        4,
        "audit",
        "recovered_torn_line",
    )
    assert recovery["details"] == {
        "torn_line": "4",
        "torn_bytes": str(len(torn)),
        "torn_sha256": hashlib.sha256(torn).hexdigest(),
    }
    assert json.loads(lines[5])["target"] == "agent4"

    # the torn line is vouched for by its hash: changing it breaks the log
    lines[3] = torn[:-1] + b"X"
    path.write_bytes(b"\n".join(lines))
    assert (verify_audit_log(path).ok, verify_audit_log(path).line) == (False, 4)


def test_a_row_that_lost_only_its_newline_continues(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    path.write_bytes(path.read_bytes()[:-1])
    log = JsonlAuditLog(path)
    record(log, 3)
    log.close()
    verdict = verify_audit_log(path)
    assert (verdict.ok, verdict.rows, verdict.recovered) == (True, 4, ())


def test_recovery_rows_cannot_excuse_other_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 2)
    tear(path, 30)
    JsonlAuditLog(path).close()
    lines = rows(path)
    # garbage inserted in the middle, away from its recovery row
    path.write_text("\n".join([lines[0], "{garbage", *lines[1:]]) + "\n")
    assert verify_audit_log(path).line == 2
    # a recovery row with no torn line before it
    path.write_text("\n".join([lines[0], lines[1], lines[3]]) + "\n")
    verdict = verify_audit_log(path)
    assert (verdict.ok, verdict.line) == (False, 3)
    assert "recovers a torn line not there" in verdict.problem


def test_a_run_after_a_crash_mid_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, 2)
    tear(log, 50)
    argv = ["run", str(FINANCE), "--set", "GENIE_USER= ", "--audit", str(log), "--audit-unkeyed"]
    assert main(argv) == 1  # denied, as without the torn line; no traceback
    assert "Traceback" not in capsys.readouterr().err
    verdict = verify_audit_log(log)
    assert (verdict.ok, verdict.rows, verdict.recovered) == (True, 4, (3,))


def test_an_unreadable_last_row_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, 2)
    with log.open("a") as f:
        f.write("not a row\n")
    with pytest.raises(AuditLogError, match=r"audit.jsonl: line 3: not JSON"):
        JsonlAuditLog(log)
    assert main(["run", str(FINANCE), "--audit", str(log), "--audit-unkeyed"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genie run: cannot continue audit log {log}: line 3: not JSON")
    assert err.count("\n") == 1


# --- two writers ------------------------------------------------------------------------------
def test_two_logs_on_one_file_interleave_in_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first, second = JsonlAuditLog(path), JsonlAuditLog(path)
    for i in range(10):
        record(first if i % 3 else second, i)
    first.close()
    second.close()
    verdict = verify_audit_log(path)
    assert (verdict.ok, verdict.rows) == (True, 10)
    assert [json.loads(r)["target"] for r in rows(path)] == [f"agent{i}" for i in range(10)]


WRITER = """
import os, sys, time
from datetime import UTC, datetime
from genie import AuditRecord, JsonlAuditLog
path, rows, name, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
log = JsonlAuditLog(path)
open(go + "." + name, "w").close()  # ready
while not os.path.exists(go):  # both start writing at once
    time.sleep(0.001)
for i in range(rows):
    log.record(AuditRecord(datetime.now(UTC), name, "denied", f"t{i}", {"n": str(i)}))
log.close()
"""


def test_two_processes_appending_are_serialised(tmp_path: Path) -> None:
    """Without the lock this breaks within the first hundred rows (measured: seq 42 out of
    order at line 118 of 2,000)."""
    path, go = tmp_path / "audit.jsonl", tmp_path / "go"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), "500", name, str(go)])
        for name in ("a", "b")
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{name}").exists() for name in "ab"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go.touch()
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    verdict = verify_audit_log(path)
    assert (verdict.ok, verdict.rows) == (True, 1000)
    actors = [json.loads(r)["actor"] for r in rows(path)]
    assert actors.count("a") == actors.count("b") == 500


def test_a_long_log_is_continued_from_its_tail(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = JsonlAuditLog(path)
    for i in range(50):
        record(log, i, blob="x" * 5_000 * (i % 3))  # rows wider than the 64 KiB read step
    record(log, 50, blob="y" * 200_000)
    log.close()
    log = JsonlAuditLog(path)
    record(log, 51)
    log.close()
    verdict = verify_audit_log(path)
    assert (verdict.ok, verdict.rows) == (True, 52)


# --- the keyed chain --------------------------------------------------------------------------
def test_keyed_chain_verifies_with_its_key_only(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    keyed_log(path)
    assert all(json.loads(r)["row_hash"].startswith("hmac-sha256:") for r in rows(path))
    verdict = verify_audit_log(path, key=KEY)
    assert (verdict.ok, verdict.rows, verdict.keyed) == (True, 5, True)
    without = verify_audit_log(path)
    assert (without.ok, without.line) == (False, 1)
    assert "is keyed (HMAC-SHA-256): give the key" in without.problem
    wrong = verify_audit_log(path, key=b"another key of 32 bytes........")
    assert (wrong.ok, wrong.line) == (False, 1)
    assert "HMAC does not match" in wrong.problem


def rewrite_chain(path: Path, key: bytes | None, edit: str) -> None:
    """What an attacker with write access does: edit a row, recompute every hash."""
    from genie._runtime.audit import _go_json, _row_hash

    prev, out = "genesis", []
    for line in rows(path):
        row = json.loads(line)
        if row["seq"] == 2:
            row["target"] = edit
        row["prev_hash"] = prev
        row["row_hash"] = prev = _row_hash(
            prev, {k: v for k, v in row.items() if k != "row_hash"}, key
        )
        out.append(_go_json(row))
    path.write_text("\n".join(out) + "\n")


def test_a_rewritten_chain_fools_the_plain_chain_not_the_keyed_one(tmp_path: Path) -> None:
    plain, keyed = tmp_path / "plain.jsonl", tmp_path / "keyed.jsonl"
    write_log(plain)
    keyed_log(keyed)
    rewrite_chain(plain, None, "nobody")
    assert verify_audit_log(plain).ok  # the limit of an unkeyed chain (docs/governance.md)
    for guess in (None, b"a guessed key, not the real one!"):
        rewrite_chain(keyed, guess, "nobody")
        verdict = verify_audit_log(keyed, key=KEY)
        assert (verdict.ok, verdict.line) == (False, 1)


def forge_row(path: Path, key: bytes | None) -> None:
    from genie._runtime.audit import _go_json, _row_hash

    last = json.loads(rows(path)[-1])
    row: dict[str, Any] = {
        "seq": last["seq"] + 1,
        "occurred_at": "2026-01-01T11:00:00Z",
        "actor": "policy",
        "action": "allowed",
        "target": "mallory",
        "details": {},
        "prev_hash": last["row_hash"],
    }
    row["row_hash"] = _row_hash(last["row_hash"], row, key)
    with path.open("a") as f:
        f.write(_go_json(row) + "\n")


def test_a_forged_appended_row_is_found_with_the_key(tmp_path: Path) -> None:
    plain, keyed = tmp_path / "plain.jsonl", tmp_path / "keyed.jsonl"
    write_log(plain)
    keyed_log(keyed)
    forge_row(plain, None)
    assert verify_audit_log(plain).ok  # the limit of an unkeyed chain
    forge_row(keyed, b"not the key but sixteen bytes or more")
    verdict = verify_audit_log(keyed, key=KEY)
    assert (verdict.ok, verdict.line, verdict.rows) == (False, 6, 6)
    assert verdict.problem == ("audit: seq 6 HMAC does not match (forged, or a wrong key)")
    # and the runtime will not continue a chain from the forged row
    with pytest.raises(AuditLogError, match="line 6: audit: seq 6 HMAC does not match"):
        JsonlAuditLog(keyed, key=KEY)


def test_keyed_and_unkeyed_chains_do_not_mix(tmp_path: Path) -> None:
    plain, keyed = tmp_path / "plain.jsonl", tmp_path / "keyed.jsonl"
    write_log(plain, 2)
    keyed_log(keyed, 2)
    with pytest.raises(AuditLogError, match="seq 2 is not keyed"):
        JsonlAuditLog(plain, key=KEY)
    with pytest.raises(AuditLogError, match="seq 2 is keyed"):
        JsonlAuditLog(keyed)
    # an unkeyed row appended to a keyed log fails with the key
    with keyed.open("a") as f:
        f.write(rows(plain)[0] + "\n")
    assert verify_audit_log(keyed, key=KEY).line == 3


def test_key_from_a_file_or_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY.decode() + "\n")  # as `openssl rand -hex 32 > audit.key` leaves it
    log = tmp_path / "audit.jsonl"
    args = ["run", str(FINANCE), "--set", "GENIE_USER= ", "--audit", str(log)]
    assert main([*args, "--audit-key-file", str(key_file)]) == 1  # the run is denied
    monkeypatch.setenv("GENIE_AUDIT_KEY", f"  {KEY.decode()} ")
    assert main(args) == 1
    capsys.readouterr()
    assert verify_audit_log(log, key=KEY).rows == 2
    assert main(["audit", "verify", str(log)]) == 0  # the key from the environment
    assert "keyed (HMAC-SHA-256) chain intact" in capsys.readouterr().out
    monkeypatch.delenv("GENIE_AUDIT_KEY")
    assert main(["audit", "verify", str(log), "--key-file", str(key_file)]) == 0
    assert main(["audit", "verify", str(log)]) == 1
    assert "is keyed (HMAC-SHA-256): give the key" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["audit", "verify", "LOG", "--key-file", "KEY"], "audit key KEY is too short (5 bytes"),
        (
            ["audit", "verify", "LOG", "--key-file", "NOKEY"],
            "cannot read audit key NOKEY: does not exist",
        ),
        (["run", str(FINANCE), "--audit", "LOG", "--audit-key-file", "KEY"], "too short"),
        (["run", str(FINANCE), "--audit-key-file", "KEY"], "--audit-key-file needs --audit"),
    ],
)
def test_bad_keys_are_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], error: str
) -> None:
    (tmp_path / "KEY").write_text("short\n")
    write_log(tmp_path / "LOG", 1)
    names = {"LOG": str(tmp_path / "LOG"), "KEY": str(tmp_path / "KEY")}
    names["NOKEY"] = str(tmp_path / "NOKEY")
    argv = [names.get(a, a) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert error.replace("KEY", names["KEY"]).replace("NO" + names["KEY"], names["NOKEY"]) in err
    assert err.count("\n") == 1
    assert rows(tmp_path / "LOG") == rows(tmp_path / "LOG")[:1]  # nothing written


def test_an_anchor_finds_rows_removed_at_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    assert main(["audit", "verify", str(path)]) == 0
    anchor = capsys.readouterr().out.splitlines()[1].removeprefix("last row_hash: ")
    assert anchor == json.loads(rows(path)[-1])["row_hash"]
    write_log(path, 2)  # the log grows: the anchor stays in it
    assert main(["audit", "verify", str(path), "--anchor", anchor]) == 0
    path.write_text("\n".join(rows(path)[:4]) + "\n")  # the last three rows removed
    assert verify_audit_log(path).ok  # undetectable from the file alone
    assert main(["audit", "verify", str(path), "--anchor", anchor]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"BROKEN: {path}: anchor {anchor} is not in the log: rows were removed at its end, "
        "or the log was replaced"
    )


def test_the_audit_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/governance.md, "The audit log": each snippet runs and prints what it says."""
    page = Path(__file__).resolve().parents[2] / "docs" / "governance.md"
    section = page.read_text().split("## The audit log", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, str(page), "exec"), {"__name__": "__main__"})
        printed = capsys.readouterr().out.splitlines()
        promised = re.findall(r"print\(.*\)  # (.*)", code)
        assert len(promised) == len(printed)
        for said, out in zip(promised, printed, strict=True):
            assert said in out
