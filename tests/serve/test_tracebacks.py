"""A served answer says where a failed handler raised only to a principal whose key allows
it (``tracebacks: true``: a developer's key), in the answer and in its event stream; every
other principal gets the failure's type and reason, never the code's lines (issue 36)."""

from __future__ import annotations

from pathlib import Path

from genie.pipeline import load_pipeline
from genie.serve import load_keys

from ..pipelines.test_run import failing_pipeline
from .conftest import ALICE, auth, serving, sse

DEV = "dev-key-0123456789abc"
KEYS = f"""
keys:
  - {{principal: alice, key: {ALICE}, roles: [user]}}
  - {{principal: dev, key: {DEV}, roles: [user], tracebacks: true}}
"""
ASK = "/v1/pipelines/divide/ask"


async def test_only_a_key_that_allows_it_sees_the_traceback(tmp_path: Path) -> None:
    pipeline = load_pipeline(failing_pipeline(tmp_path))
    (tmp_path / "keys.yaml").write_text(KEYS)
    keys = load_keys(tmp_path / "keys.yaml", {})
    module = str(tmp_path / "tb_divider.py")
    async with serving([pipeline], keys) as client:
        seen = (await client.post(ASK, json={"n": 0}, headers=auth(DEV))).json()
        hidden = (await client.post(ASK, json={"n": 0}, headers=auth(ALICE))).json()
        dev_stream = sse((await client.post(ASK + "/stream", json={}, headers=auth(DEV))).text)
        alice_stream = sse((await client.post(ASK + "/stream", json={}, headers=auth(ALICE))).text)
    assert seen["status"] == hidden["status"] == "failed"
    [letter] = seen["dead_letters"]
    assert letter["tracebacks"][-1].startswith(f"{module}:")
    [letter] = hidden["dead_letters"]
    assert "tracebacks" not in letter
    assert letter["reason"] == "ZeroDivisionError: integer division or modulo by zero"

    def dead(frames: list[tuple[str | None, str, dict[str, object]]]) -> dict[str, object]:
        [data] = [d for _, kind, d in frames if kind == "dead_lettered"]
        return data

    assert str(dead(dev_stream)["traceback"]).startswith(f"{module}:")
    assert "traceback" not in dead(alice_stream)
    assert module not in str(alice_stream)  # nor in the stream's result
