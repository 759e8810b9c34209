"""``import genie`` leaves out what only a rarely used part needs (issue 19, import time).

Pinned without a clock: a fresh interpreter imports genie and reports which modules that import
loaded, so a later change that brings one of them back to start-up fails here, not only in a
benchmark run on a quiet machine. Each lazily loaded part is then used, to show it still works.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import genie

ROOT = Path(__file__).resolve().parents[2]

# What `import genie` used to load and a user who only builds a runtime does not need at import,
# with what it costs (callgrind, `import genie` from bytecode: 689 M instructions before).
LAZY = {
    # anyio's synchronization primitives (5 dataclasses), loaded by an `anyio.Event` default
    # nobody used; the runtime takes its backend's own event class when it starts: 22 M.
    "anyio._core._synchronization",
    # `anyio.abc.TaskGroup` was imported for annotations only: 3 M.
    "anyio.abc",
    "anyio._core._tasks",
    # `anyio.lowlevel`, for `checkpoint` only: the executor and the runtime take
    # `anyio.sleep(0)`, the same checkpoint; a started runtime's backend loads it: 4 M.
    "anyio.lowlevel",
    # only a file-backed audit log, a transport between processes and the JSON log formatter
    # write JSON: 5 M.
    "json",
    # `SerializeAsAny`'s module, for the envelope model's payload field: the model (with its
    # 13 fields and two validators) is built when a boundary first needs it: 14 M.
    "pydantic.functional_serializers",
    # `logging` (with `traceback` and `string`): genie's loggers import it when they first
    # write (genie/_log.py), the log formatters when first asked for: 14 M.
    "logging",
    # The `Lost` model (seven fields: 2.5 M to define), loaded when an agent subscribes to
    # loss notices; the event stream at `rt.events()`; the statistics record at
    # `rt.statistics()`: 4.4 M with their modules.
    "genie._runtime.losses",
    "genie._runtime.observe.events",
    "genie._runtime.statistics",
    # `fcntl`, a C extension, for the file-backed audit log's lock only: 0.6 M.
    "fcntl",
}


def loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter loaded while running ``code`` (not those it started
    with: a coverage hook in site-packages may import json before the code runs)."""
    probe = (
        "import sys\n_before = set(sys.modules)\n"
        + code
        + "\nprint(' '.join(sorted(set(sys.modules) - _before)))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE_", "COVERAGE_"))}
    argv = [sys.executable, "-c", probe]
    out = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_import_genie_leaves_the_lazy_modules_out() -> None:
    loaded = loaded_by("import genie")
    assert "genie._runtime.runtime" in loaded  # the probe sees what the import loads
    assert loaded & LAZY == set()


def test_every_public_name_imports_from_a_fresh_interpreter() -> None:
    names = ", ".join(genie.__all__)
    loaded = loaded_by(f"from genie import {names}")
    assert "genie._runtime.observe.metrics" in loaded  # the lazily loaded names did load


def test_a_runtime_started_after_import_loads_what_it_needs() -> None:
    # The laziness moves the cost to first use; it must not break first use.
    code = """
import anyio
from genie import BaseAgent, Context, Message, Payload, Runtime, handler

class Ping(Payload):
    message_type = "lazy_ping"
    n: int

class Pong(Payload):
    message_type = "lazy_pong"
    n: int

class Echo(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.n + 1))

async def main() -> None:
    async with Runtime() as rt:
        rt.add(Echo("echo"), subscribe=["lazy_ping"])
        result = await rt.ask(rt.message(Ping(n=1)), timeout=5)
        assert result.message.payload == Pong(n=2), result

anyio.run(main)
"""
    assert "anyio._core._synchronization" in loaded_by(code)


def test_a_runtime_loads_losses_events_and_statistics_when_first_used() -> None:
    # Each lazily loaded part works at its first use in a fresh interpreter, and a runtime
    # that does not use it leaves it out (the probe would see the module otherwise).
    code = """
import sys
import anyio
from genie import BaseAgent, Context, Message, Payload, Runtime, handler

class Ping(Payload):
    message_type = "lazy_loss_ping"
    n: int

class Fails(BaseAgent):
    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        raise ValueError("boom")

heard = []

async def main() -> None:
    async with Runtime() as rt:
        rt.add(Fails("fails"), subscribe=["lazy_loss_ping"])
        await rt.publish(rt.message(Ping(n=1)))
        await anyio.sleep(0.05)
        assert "genie._runtime.losses" not in sys.modules  # nobody listens: no notice, no model
        assert "genie._runtime.observe.events" not in sys.modules
        assert "genie._runtime.statistics" not in sys.modules
        from genie import Lost

        class Watcher(BaseAgent):
            @handler
            async def on_lost(self, payload: Lost, ctx: Context) -> None:
                heard.append(payload)

        rt.add(Watcher("watcher"), subscribe=[Lost.message_type])
        msg = rt.message(Ping(n=2))
        with anyio.fail_after(5):
            async with rt.events(msg.correlation_id) as events:
                await rt.publish(msg)
                kinds = [event.kind async for event in events]
        assert "failed" in kinds, kinds
        assert rt.statistics().dead_lettered == 2
    from genie import Lost
    assert [(type(p), p.kind, p.consumer) for p in heard] == [(Lost, "failed", "fails")]

anyio.run(main)
"""
    assert {
        "genie._runtime.losses",
        "genie._runtime.observe.events",
        "genie._runtime.statistics",
    } <= loaded_by(code)


def test_the_envelope_model_is_built_at_the_first_boundary() -> None:
    code = """
import sys
from genie import Message, Payload, Role
from genie._message.envelope import _FIELD_NAMES, _SLOTS

class Ping(Payload):
    message_type = "ping"
    n: int

fast = Message.top(Ping(n=1), "m-1", "user", None, Role.USER, 0.0)  # rt.message: no model
assert "pydantic.functional_serializers" not in sys.modules
assert tuple(Message.model_fields) == _FIELD_NAMES  # the slots follow the model's fields
assert len(_SLOTS) == len(_FIELD_NAMES)
assert Message(**{name: getattr(fast, name) for name in _FIELD_NAMES}) == fast
"""
    assert "pydantic.functional_serializers" in loaded_by(code)


def test_genie_records_stay_quiet_without_logging_configured() -> None:
    # The NullHandler that keeps genie's records from logging's last resort is hung when the
    # first one is written; a dead letter (WARNING) and an agent's own warning, with no logging
    # configured, print nothing, as when it was hung at import.
    code = """
import sys
import anyio
from genie import BaseAgent, Context, Message, Payload, Runtime, handler

class Ping(Payload):
    message_type = "quiet_ping"
    n: int

class Loud(BaseAgent):
    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        ctx.logger.warning("agent warning %d", payload.n)
        if payload.n == 2:
            raise ValueError("boom")  # dead-lettered as failed

async def main() -> None:
    async with Runtime() as rt:
        rt.add(Loud("loud"), subscribe=["quiet_ping"])
        await rt.ask(rt.message(Ping(n=1)), timeout=0.5)
        await rt.publish(rt.message(Ping(n=2)))
        await anyio.sleep(0.1)
        assert [d.kind for d in rt.dead_letters] == ["failed"]

assert "logging" not in sys.modules
anyio.run(main)
import logging
assert [type(h) for h in logging.getLogger("genie").handlers] == [logging.NullHandler]
"""
    argv = [sys.executable, "-c", code]
    out = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


def test_a_lazy_logger_is_the_logger_it_stands_for() -> None:
    import logging

    from genie._base.log import lazy_logger

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    real = logging.getLogger("genie.test_lazy_logger")
    handler = Keep()
    real.addHandler(handler)
    try:
        log = lazy_logger("genie.test_lazy_logger")
        log.warning("one %d", 1, extra={"agent_id": "a"})
        real.setLevel(logging.ERROR)  # read at each call, not kept from the first
        log.warning("two")
        assert log.level == logging.ERROR
        log.error("three")
        assert [r.getMessage() for r in records] == ["one 1", "three"]
        assert records[0].agent_id == "a"  # type: ignore[attr-defined]
        assert log.name == real.name == "genie.test_lazy_logger"
    finally:
        real.removeHandler(handler)
        real.setLevel(logging.NOTSET)


def test_the_json_users_load_json_when_they_run(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    code = f"""
import logging
from datetime import UTC, datetime
from genie import JsonFormatter, JsonlAuditLog, verify_audit_log
from genie._runtime.audit import AuditRecord
from genie import Message, MessageTypes
from genie._runtime.transport import Delivery
from tests.conftest import Ping

record = logging.makeLogRecord({{"msg": "hello", "agent_id": "a"}})
assert '"agent_id": "a"' in JsonFormatter().format(record)

audit = JsonlAuditLog({str(log)!r})
audit.record(AuditRecord(datetime.now(UTC), "policy", "deny", "msg-1", {{"why": "test"}}))
audit.close()
assert verify_audit_log({str(log)!r}).ok

sent = Delivery(Message.new(Ping(n=1), sender="user"), "echo")
assert Delivery.decode(sent.encode(), MessageTypes([Ping])) == sent
"""
    loaded = loaded_by(code)
    assert "json" in loaded
    assert log.read_text().count("\n") == 1


# `import genie` builds no dataclass (each compiles six generated methods with `exec` as its
# module loads: about 4 to 6 M instructions); genie's records are `Record`s (genie/_record.py),
# which compile nothing. A dataclass on the import path fails here.


def test_import_genie_builds_no_new_dataclass() -> None:
    probe = """
import dataclasses, sys
import genie
print(' '.join(sorted(
    f"{name}.{attr}"
    for name, module in list(sys.modules.items()) if name.startswith("genie")
    for attr, value in vars(module).items()
    if isinstance(value, type) and value.__module__ == name and dataclasses.is_dataclass(value)
)))
"""
    argv = [sys.executable, "-c", probe]
    out = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    built = set(out.stdout.split())
    assert built == set(), built
    assert not dataclasses.is_dataclass(genie.AgentOptions)  # the probe would have seen it
