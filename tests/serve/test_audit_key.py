"""A served audit log is keyed by default (issue 35, item 7): ``genie serve --audit PATH``
keys its chain with HMAC-SHA-256 and says where the key is, so a forged row appended or a
chain rewritten (keyed or not) is found by ``genie audit verify``; an unkeyed log is a
choice made out loud. Each test runs a real ``genie serve`` process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from genie._cli.main import main
from genie._runtime.audit import _go_json, _row_hash

from .conftest import ALICE, ROOT, auth

SLOW = "tests/pipelines/good/slow.yaml"
ENV = {**os.environ, "GENIE_API_KEYS": f"{{keys: [{{principal: alice, key: {ALICE}}}]}}"}
ENV.pop("GENIE_AUDIT_KEY", None)


async def serve_once(*args: str) -> str:
    """Runs ``genie serve`` with ``args``, has one request refused as too large (an audit
    record), stops it with SIGTERM and returns its stderr."""
    command = [sys.executable, "-m", "genie._cli", "serve", SLOW, "--port", "0"]
    proc = subprocess.Popen(  # noqa: ASYNC220 - a server process the test runs beside its loop
        [*command, "--max-body", "8", *args],
        cwd=ROOT,
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", first)
        assert found, first + proc.stderr.read()
        async with httpx.AsyncClient(base_url=found.group(1), timeout=10) as client:
            refused = await client.post(
                "/v1/pipelines/slow/ask", json={"x": "y" * 64}, headers=auth(ALICE)
            )
            assert refused.status_code == 413
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        rest = proc.stderr.read()  # through the buffer readline filled (communicate is not)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == 0, first + rest
    return first + rest


def verify(path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["audit", "verify", str(path), *args])
    return code, capsys.readouterr().out


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def write_rows(path: Path, rows_: list[dict[str, Any]], key: bytes | None) -> None:
    """What someone who can write the log does: rehash every row (with a key of their own)."""
    prev, out = "genesis", []
    for row in rows_:
        row["prev_hash"] = prev
        body = {k: v for k, v in row.items() if k != "row_hash"}
        row["row_hash"] = prev = _row_hash(prev, body, key)
        out.append(_go_json(row))
    path.write_text("\n".join(out) + "\n")


async def test_a_served_log_is_keyed_with_a_key_made_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    err = await serve_once("--audit", str(log))
    key_file = tmp_path / "audit.jsonl.key"
    assert f"audit log {log} is keyed (HMAC-SHA-256) with a new key written to {key_file}" in err
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    [row] = rows(log)
    assert (row["actor"], row["action"]) == ("genie-serve", "too_large")
    assert row["row_hash"].startswith("hmac-sha256:")

    # A second run continues the chain with the same key, and says so.
    err = await serve_once("--audit", str(log))
    assert f"is keyed (HMAC-SHA-256) with the key in {key_file}" in err
    assert len(rows(log)) == 2
    code, out = verify(log, capsys)
    assert code == 0
    assert out.startswith(f"key: {key_file}\nOK: 2 rows, keyed (HMAC-SHA-256) chain intact")

    # A forged row appended, and the whole chain rewritten, with a key of the forger's own,
    # or rewritten as a plain chain: none verifies.
    original = log.read_text()
    forged = rows(log)
    forged.append({**forged[-1], "seq": 3, "target": "mallory"})
    write_rows(log, forged, b"the forger's own key, 32 bytes..")
    assert verify(log, capsys)[0] == 1
    for key in (b"the forger's own key, 32 bytes..", None):
        write_rows(log, rows(log)[:2], key)
        code, out = verify(log, capsys)
        assert code == 1
        assert "BROKEN" in out
    log.write_text(original)
    assert verify(log, capsys)[0] == 0


async def test_a_given_key_file_keys_the_log_and_unkeyed_is_a_choice_said_aloud(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "my.key"
    key_file.write_text("0123456789abcdef0123456789abcdef\n")
    keyed = tmp_path / "keyed.jsonl"
    err = await serve_once("--audit", str(keyed), "--audit-key-file", str(key_file))
    assert f"with the key in {key_file}" in err
    assert not (tmp_path / "keyed.jsonl.key").exists()
    assert verify(keyed, capsys, "--key-file", str(key_file))[0] == 0
    code, out = verify(keyed, capsys)
    assert code == 1
    assert "is keyed (HMAC-SHA-256): give the key" in out

    plain = tmp_path / "plain.jsonl"
    err = await serve_once("--audit", str(plain), "--audit-unkeyed")
    assert "is unkeyed (--audit-unkeyed)" in err
    code, out = verify(plain, capsys)
    assert code == 0
    assert "unkeyed: this proves no row was edited" in out
    assert "rewritten from row 1" in out


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--audit-key-file", "K"], "--audit-key-file needs --audit PATH"),
        (["--audit-unkeyed"], "--audit-unkeyed needs --audit PATH"),
        (
            ["--audit", "LOG", "--audit-unkeyed", "--audit-key-file", "K"],
            "--audit-unkeyed and --audit-key-file exclude each other",
        ),
        (["--audit", "OLD"], "exists and has no key beside it"),
    ],
)
def test_audit_key_mistakes_are_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    error: str,
) -> None:
    monkeypatch.delenv("GENIE_AUDIT_KEY", raising=False)
    (tmp_path / "OLD").write_text('{"an": "older, unkeyed log"}\n')
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"keys:\n  - {{principal: alice, key: {ALICE}}}\n")
    names = {"LOG": str(tmp_path / "LOG"), "OLD": str(tmp_path / "OLD"), "K": str(keys)}
    argv = ["serve", str(ROOT / SLOW), "--keys", str(keys), "--port", "0"]
    assert main([*argv, *(names.get(a, a) for a in args)]) == 2
    err = capsys.readouterr().err
    assert error in err
    assert err.count("\n") == 1
    assert not (tmp_path / "OLD.key").exists()
