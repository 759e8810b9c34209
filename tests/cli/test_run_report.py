"""How ``genie run`` reports a run: what was lost although the output arrived, a run paused for
a person, the agents a deadline or a handler's exit cut short, and how to answer an approval,
each in a line that works as printed (docs/cli.md)."""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genie._cli.main import LOST_WORK, main
from genie.pipeline import load_pipeline

Capture = pytest.CaptureFixture[str]

AGENTS = """
import time

import anyio

from genie import ApprovalRequest, BaseAgent, Context, Message, Payload, handler


class Order(Payload):
    message_type = "order"
    item: str = "apple"


class Priced(Payload):
    message_type = "priced"
    item: str


class Receipt(Payload):
    message_type = "receipt"
    text: str


class WordCount(Payload):  # a name no other test gives a payload class
    message_type = "answer"
    words: int


class Pricer(BaseAgent):
    produces = (Priced,)

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> Message:
        return ctx.emit(Priced(item=payload.item))


class MisspeltPricer(BaseAgent):
    produces = (Priced, Receipt)

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> list[Message]:
        return [
            ctx.emit(Priced(item=payload.item), recipient="ledgr"),
            ctx.emit(Receipt(text=payload.item)),
        ]


class Stuck(BaseAgent):
    produces = (Receipt,)

    @handler
    def on_order(self, payload: Order, ctx: Context) -> Message:
        time.sleep(60)  # a blocking call that will not return in time
        return ctx.emit(Receipt(text=payload.item))


class Printer(BaseAgent):
    produces = (Receipt,)

    @handler
    async def on_priced(self, payload: Priced, ctx: Context) -> Message:
        return ctx.emit(Receipt(text=payload.item))


class Ledger(BaseAgent):
    @handler
    async def on_priced(self, payload: Priced, ctx: Context) -> None:
        raise RuntimeError("ledger write failed")


class LateLedger(BaseAgent):  # fails after the run's output has come
    @handler
    async def on_priced(self, payload: Priced, ctx: Context) -> None:
        await anyio.sleep(0.3)
        raise RuntimeError("ledger write failed")


class Counter(BaseAgent):
    produces = (WordCount,)

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> Message:
        return ctx.emit(WordCount(words="many"))  # type: ignore[arg-type]


class Slow(BaseAgent):
    produces = (Receipt,)

    @handler
    async def on_priced(self, payload: Priced, ctx: Context) -> Message:
        await anyio.sleep(30)
        return ctx.emit(Receipt(text=payload.item))


class SlowAsker(BaseAgent):
    produces = (ApprovalRequest, Receipt)

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> Message:
        await anyio.sleep(30)
        return ctx.emit(ApprovalRequest(subject="pay", role="treasurer"))


class Garbled(BaseAgent):
    produces = (Receipt,)

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> Message:
        raise RuntimeError(f"cannot price {payload.item}")


class Asker(BaseAgent):
    produces = (ApprovalRequest, Receipt)

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> Message:
        return ctx.emit(ApprovalRequest(subject=f"pay for {payload.item}", role="treasurer"))


class Interrupter(BaseAgent):
    produces = (Receipt,)

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> Message:
        raise KeyboardInterrupt
"""


def _pipeline(tmp_path: Path, body: str) -> str:
    """A pipeline file beside its agents module (named for the test, so that the modules of
    in-process runs do not meet in ``sys.modules``)."""
    module = f"report_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(AGENTS)
    path = tmp_path / "p.yaml"
    path.write_text(body.replace("MOD", module))
    return str(path)


FAN = """
agents:
  - {id: pricer, use: 'MOD:Pricer'}
  - {id: printer, use: 'MOD:Printer'}
  - {id: ledger, use: 'MOD:Ledger'}
routes:
  priced: [ledger, printer]
entry: {type: order, to: pricer}
output: receipt
timeout: 10s
"""


@pytest.mark.parametrize("ledger", ["Ledger", "LateLedger"])
def test_a_failed_side_branch_of_an_ok_run_is_said_with_its_own_exit_code(
    tmp_path: Path, capsys: Capture, ledger: str
) -> None:
    # The run printed its output only, exit 0: the ledger's failure was in --json alone; a
    # ledger that failed after the output came was in no report at all.
    pipeline = _pipeline(tmp_path, FAN.replace("MOD:Ledger", f"MOD:{ledger}"))
    assert main(["run", pipeline]) == LOST_WORK == 3
    out, err = capsys.readouterr()
    assert out == "apple\n"
    assert err.splitlines() == [
        "genie run: p: the run ended ok, and lost work: 1 dead letter",
        "  dead letter: priced to ledger: failed: RuntimeError: ledger write failed",
        f"  (a handler failed: genie --debug run {pipeline} ... shows where it raised)",
    ]


async def test_a_pipelines_run_counts_what_its_side_branches_did_after_the_output(
    tmp_path: Path,
) -> None:
    """``Pipeline.run`` closes its runtime, which lets the rest of the request finish: its
    result says what that did (here a side branch that failed after the output came)."""
    result = await load_pipeline(
        _pipeline(tmp_path, FAN.replace("MOD:Ledger", "MOD:LateLedger"))
    ).run()
    assert result.ok
    assert [(d.agent_id, d.reason) for d in result.dead_letters] == [
        ("ledger", "RuntimeError: ledger write failed")
    ]
    assert (result.stats.dead_lettered, result.stats.in_flight) == (1, 0)


def test_the_debug_command_said_for_a_failed_handler_runs_as_printed(
    tmp_path: Path, capsys: Capture
) -> None:
    # The pipeline file was printed bare: a shell split it at the space, or stopped at the quote.
    pipeline = Path(_pipeline(tmp_path, FAN)).rename(tmp_path / "Tina's fan.yaml")
    assert main(["run", str(pipeline)]) == LOST_WORK
    said = capsys.readouterr().err.splitlines()[-1]
    command = said.removeprefix("  (a handler failed: ").removesuffix(" ... shows where it raised)")
    assert shlex.split(command) == ["genie", "--debug", "run", str(pipeline)], said


def test_an_unrouted_message_of_an_ok_run_is_said(tmp_path: Path, capsys: Capture) -> None:
    pipeline = _pipeline(
        tmp_path,
        "agents: [{id: pricer, use: 'MOD:MisspeltPricer'}]\n"
        "entry: {type: order, to: pricer}\noutput: receipt\n",
    )
    assert main(["run", pipeline]) == LOST_WORK
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "genie run: p: the run ended ok, and lost work: 1 dead letter"
    assert err[1].startswith("  dead letter: priced to ledgr: unrouted: ")
    assert len(err) == 2


def test_a_handlers_validation_error_is_one_line(tmp_path: Path, capsys: Capture) -> None:
    # Pydantic's report took four lines, the later ones unindented.
    pipeline = _pipeline(
        tmp_path,
        "agents: [{id: counter, use: 'MOD:Counter'}]\n"
        "entry: {type: order, to: counter}\noutput: answer\n",
    )
    assert main(["run", pipeline]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[1] == (
        "  counter: failed: ValidationError: invalid 'answer' message: field 'words': Input "
        "should be a valid integer, unable to parse string as an integer"
    )
    assert main(["run", pipeline, "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert "\n" not in document["dead_letters"][0]["reason"]


def test_a_timed_out_run_names_the_agents_still_working(tmp_path: Path, capsys: Capture) -> None:
    # It said "1 of 1 replies did not arrive before the deadline", and --json "agent": null.
    pipeline = _pipeline(
        tmp_path,
        "agents:\n  - {id: pricer, use: 'MOD:Pricer'}\n  - {id: worker, use: 'MOD:Slow'}\n"
        "routes: {priced: [worker]}\nentry: {type: order, to: pricer}\noutput: receipt\n",
    )
    assert main(["run", pipeline, "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[1] == (
        "  reply: timed_out: 1 of 1 replies did not arrive before the deadline; still working "
        "then, cancelled: worker"
    )
    assert main(["run", pipeline, "--timeout", "0.5", "--json"]) == 1
    [missing] = json.loads(capsys.readouterr().out)["missing"]
    assert (missing["kind"], missing["agent"]) == ("timed_out", "worker")


def _genie() -> str:
    exe = shutil.which("genie", path=str(Path(sys.executable).parent))
    assert exe is not None, "the genie console script is not installed"
    return exe


def test_a_keyboard_interrupt_a_handler_raised_names_its_agent(tmp_path: Path) -> None:
    # It said "genie run: interrupted", as if the user had pressed Ctrl-C.
    pipeline = _pipeline(
        tmp_path,
        "agents: [{id: stopper, use: 'MOD:Interrupter'}]\n"
        "entry: {type: order, to: stopper}\noutput: receipt\n",
    )
    done = subprocess.run(
        [_genie(), "run", pipeline], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (130, "")
    assert done.stderr == (
        "genie run: the handler of stopper raised KeyboardInterrupt: the run stopped, what was "
        "in flight cancelled\n"
    )


def test_a_thread_given_up_does_not_hold_the_command_at_its_exit(tmp_path: Path) -> None:
    # The run ended at its timeout, but Python's exit joined the handler's thread: the command
    # ended only when the 60 s sleep did, and Ctrl-C meanwhile printed a traceback.
    pipeline = _pipeline(
        tmp_path,
        "agents: [{id: stuck, use: 'MOD:Stuck'}]\nentry: {type: order, to: stuck}\n"
        "output: receipt\n",
    )
    started = time.monotonic()
    done = subprocess.run(
        [_genie(), "run", pipeline, "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "genie run: p: the run ended timed_out", done.stderr
    assert lines[-1] == (
        "genie: 1 thread still running (AnyIO worker thread; a plain def handler given up at "
        "its deadline or with its request, say): the command ends without waiting for it"
    )
    assert took < 30  # start-up, the timeout, 2 s for the cancelled work, 2 s for the thread


def _paused_payment(store: Path, capsys: Capture, *json_flag: str) -> tuple[int, str, str]:
    """``genie run payments --store STORE`` that stops waiting while its approval is pending;
    its exit code, stdout and stderr."""
    code = main(["run", "payments", "--store", str(store), "--timeout", "1", *json_flag])
    out, err = capsys.readouterr()
    return code, out, err


def _asked(err: str) -> tuple[str, str]:
    """The line of a paused payments run's stderr that asks for the approval, and its id."""
    asked = next(line for line in err.splitlines() if "answer from another terminal" in line)
    return asked, asked.removeprefix("genie run: payments: approval ").split(" ", 1)[0]


def test_a_run_paused_on_an_approval_says_so_not_timed_out(tmp_path: Path, capsys: Capture) -> None:
    # --json said "status": "timed_out" and nothing of the approval the store keeps.
    store = tmp_path / "pay.db"
    code, out, err = _paused_payment(store, capsys, "--json")
    assert code == 1  # no output yet, as before: the status says why
    document = json.loads(out)
    assert document["status"] == "paused"
    # Nothing was cut short: the desk's timer is kept with the request, not cancelled.
    assert [m["agent"] for m in document["missing"]] == [None]
    [waiting] = document["paused_on"]
    approval = waiting["approval"]
    assert waiting == {
        "approval": approval,
        "agent": "payment_orchestrator",
        "subject": "pay Rs 75,000.00 to Shree Ganesh Traders by IMPS",
        "role": "treasurer",
        "principal": None,
    }
    code, out, err = _paused_payment(store, capsys)  # resumes it, and pauses again
    assert code == 1
    lines = err.splitlines()
    assert "genie run: payments: the run paused: 1 approval waits for a person" in lines
    assert not any("timed_out" in line for line in lines)
    assert lines[-1] == (
        f"  paused: approval {approval} (payment_orchestrator: pay Rs 75,000.00 to Shree "
        f"Ganesh Traders by IMPS) waits for a person: genie approvals approve {approval} "
        f"--store {store} --as PRINCIPAL --role treasurer; the next genie run payments --store "
        f"{store} resumes the request"
    )


def test_the_commands_said_for_an_approval_work_as_printed(tmp_path: Path, capsys: Capture) -> None:
    # "genie run --store x.db" lacked the pipeline (argparse refuses it), and the answer's
    # command lacked the --role the approval needs.
    store = tmp_path / "pay.db"
    _, _, err = _paused_payment(store, capsys)
    asked, approval = _asked(err)
    assert (
        f"genie approvals approve {approval} --store {store} --as PRINCIPAL --role treasurer "
        "(or reject)"
    ) in asked
    answer = ["approvals", "approve", approval, "--store", str(store), "--as", "tina"]
    assert main([*answer, "--role", "treasurer", "--wait", "0"]) == 0
    # The store names the pipeline file its run was of: the command is whole, as printed.
    payments = load_pipeline("payments").path.resolve()
    assert capsys.readouterr().err == (
        f"genie approvals: the answer is left in {store}: the runtime that resumes the request "
        f"takes it: genie run {payments} --store {store}\n"
    )
    assert main(["run", str(payments), "--store", str(store), "--timeout", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "approved by tina"


def test_the_commands_said_for_a_store_path_with_a_space_and_a_quote_run_as_printed(
    tmp_path: Path, capsys: Capture
) -> None:
    # The store's path was printed bare: a shell split it at the space, or stopped at the quote.
    folder = tmp_path / "Tina's runs"
    folder.mkdir()
    store = folder / "pay day.db"
    _, _, err = _paused_payment(store, capsys)
    asked, approval = _asked(err)
    answer = asked.split("answer from another terminal with ", 1)[1].split(" (or reject)")[0]
    assert shlex.split(answer) == [
        *("genie", "approvals", "approve", approval, "--store", str(store)),
        *("--as", "PRINCIPAL", "--role", "treasurer"),
    ]
    resume = asked.split("the next genie run ", 1)[1].removesuffix(" resumes the request")
    assert shlex.split(resume) == ["payments", "--store", str(store)]
    _, _, err = _paused_payment(store, capsys)  # paused again: the report says it once more
    paused = next(line for line in err.splitlines() if line.startswith("  paused: "))
    command = paused.split("waits for a person: ", 1)[1].split("; the next genie run ")[0]
    assert shlex.split(command)[4:6] == ["--store", str(store)]
    resume = paused.split("; the next genie run ", 1)[1].removesuffix(" resumes the request")
    assert shlex.split(resume) == ["payments", "--store", str(store)]


def test_a_store_that_names_no_pipeline_file_is_answered_still(
    tmp_path: Path, capsys: Capture
) -> None:
    # A store made before stores named their pipeline file: the answer is left all the same,
    # and the command to resume it names the pipeline as the user must.
    store = tmp_path / "pay.db"
    _, _, err = _paused_payment(store, capsys)
    _, approval = _asked(err)
    db = sqlite3.connect(store)
    db.execute("DROP TABLE about")  # as genie left it before
    db.commit()
    db.close()
    answer = ["approvals", "approve", approval, "--store", str(store), "--as", "tina"]
    assert main([*answer, "--role", "treasurer", "--wait", "0"]) == 0
    assert capsys.readouterr().err == (
        f"genie approvals: the answer is left in {store}: the runtime that resumes the request "
        f"takes it: genie run PIPELINE --store {store}, PIPELINE the pipeline file (or name) "
        "whose run asked for it\n"
    )
    code, out, _ = _paused_payment(store, capsys)  # resumes the request, which takes it
    assert (code, json.loads(out)["reason"]) == (0, "approved by tina")


def _older(store: Path) -> None:
    """``store`` as a genie made it before stores named their pipeline file."""
    db = sqlite3.connect(store)
    db.execute("DROP TABLE about")
    db.commit()
    db.close()


def _tables(store: Path) -> set[str]:
    db = sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True)
    try:
        return {str(n) for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()


def _writable(path: Path) -> bool:
    try:
        if path.is_dir():
            (path / "probe").touch()
            (path / "probe").unlink()
        else:
            path.open("r+b").close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """``path`` as a file (or folder) nobody may write: its mode, and where that does not stop
    the user (root), its immutable attribute; where neither does, the test is skipped, as it
    could not tell a read-only store from any other."""
    mode = path.stat().st_mode & 0o777
    path.chmod(0o555 if path.is_dir() else 0o444)
    immutable = False
    try:
        if _writable(path) and shutil.which("chattr"):
            made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
            immutable = made.returncode == 0
        if _writable(path):
            pytest.skip("no way here to make a file read-only to this user")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


def test_an_older_store_is_listed_and_its_tables_made(tmp_path: Path, capsys: Capture) -> None:
    store = tmp_path / "pay.db"
    _paused_payment(store, capsys)
    _older(store)
    assert main(["approvals", "list", "--store", str(store)]) == 0
    listed = capsys.readouterr().out
    assert "payment_orchestrator: pay Rs 75,000.00 to Shree Ganesh Traders by IMPS" in listed
    assert "about" in _tables(store)  # brought up to date: the next run names its pipeline


@pytest.mark.parametrize("older", [False, True], ids=["current", "older"])
def test_a_store_that_cannot_be_written_is_listed_and_not_answered(
    tmp_path: Path, capsys: Capture, older: bool
) -> None:
    # An older store that could not be written could not be listed: its missing table could
    # not be made ("attempt to write a readonly database"); an answer to a current one was a
    # traceback.
    store = tmp_path / "pay.db"
    _, _, err = _paused_payment(store, capsys)
    _, approval = _asked(err)
    if older:
        _older(store)
    tables = _tables(store)
    with _read_only(store):
        assert main(["approvals", "list", "--store", str(store)]) == 0
        listed = capsys.readouterr().out
        assert listed.startswith(f"{approval}  payment_orchestrator: pay Rs 75,000.00"), listed
        answer = ["approvals", "approve", approval, "--store", str(store), "--as", "tina"]
        assert main([*answer, "--role", "treasurer", "--wait", "0"]) == 2
        assert capsys.readouterr().err == (
            f"genie approvals: cannot leave an answer in {store}: it cannot be written "
            "(attempt to write a readonly database)\n"
        )
    assert _tables(store) == tables
    code, out, _ = _paused_payment(store, capsys)  # nothing was left: it pauses again
    assert code == 1, out


def test_a_store_in_a_folder_that_cannot_be_written_is_listed(
    tmp_path: Path, capsys: Capture
) -> None:
    # A store closed cleanly has no -wal and -shm files beside it, and SQLite makes them to
    # read it at all: in a read-only folder (a mounted backup, a disk shared read-only) the
    # store could not be opened ("unable to open database file").
    folder = tmp_path / "backup"
    folder.mkdir()
    store = folder / "pay.db"
    _, _, err = _paused_payment(store, capsys)
    _, approval = _asked(err)
    db = sqlite3.connect(store)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()  # the last connection: the side files go
    assert not (folder / "pay.db-wal").exists()
    with _read_only(folder):
        assert main(["approvals", "list", "--store", str(store)]) == 0
        listed = capsys.readouterr().out
        assert listed.startswith(f"{approval}  payment_orchestrator: pay Rs 75,000.00"), listed
        answer = ["approvals", "approve", approval, "--store", str(store), "--as", "tina"]
        assert main([*answer, "--role", "treasurer", "--wait", "0"]) == 2
        said = capsys.readouterr().err
        assert said == (
            f"genie approvals: cannot leave an answer in {store}: it cannot be written "
            "(unable to open database file: the file or its folder is read-only)\n"
        )


def test_a_store_with_a_log_it_cannot_read_is_not_read_without_it(
    tmp_path: Path, capsys: Capture
) -> None:
    # Its write-ahead log holds what is not in the file yet (here: the approval was taken
    # since): read as an immutable file, without the log, the store would list the approval
    # as still pending.
    live = tmp_path / "pay.db"
    _paused_payment(live, capsys)
    db = sqlite3.connect(live)
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("DELETE FROM messages WHERE body LIKE '%genie.approval_request%'")
    db.commit()
    folder = tmp_path / "backup"  # a copy taken while the log was not checkpointed
    folder.mkdir()
    store = folder / "pay.db"
    shutil.copy(live, store)
    shutil.copy(tmp_path / "pay.db-wal", folder / "pay.db-wal")
    db.close()
    with _read_only(folder):
        assert main(["approvals", "list", "--store", str(store)]) == 2
        said = capsys.readouterr().err
    assert said == f"genie approvals: cannot use {store} as a store: unable to open database file\n"


def test_a_run_with_a_store_is_not_told_to_use_one(tmp_path: Path, capsys: Capture) -> None:
    # Timed out before its approval was asked, a run with --store was told to run with one.
    pipeline = _pipeline(
        tmp_path,
        "agents: [{id: asker, use: 'MOD:SlowAsker'}]\n"
        "entry: {type: order, to: asker}\noutput: receipt\n",
    )
    store = str(tmp_path / "s.db")
    assert main(["run", pipeline, "--store", store, "--timeout", "0.5"]) == 1
    assert "run it with --store PATH" not in capsys.readouterr().err
    assert main(["run", pipeline, "--timeout", "0.5"]) == 1
    assert "run it with --store PATH" in capsys.readouterr().err


# What a request may carry into a handler's error or an approval's subject: a line break that
# would forge a line of the report, and escapes that set the terminal's title and clear it.
GARBLED_ITEM = r'"apple\nok: all fine\e]0;pwned\a\e[2J\e[31mred\e[0m"'
GARBLED_SHOWN = r"apple\nok: all fine\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m"
GARBLED_RAW = "apple\nok: all fine\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m"


def _garbled(tmp_path: Path, agent: str) -> str:
    return _pipeline(
        tmp_path,
        f"agents: [{{id: clerk, use: 'MOD:{agent}'}}]\n"
        f"entry: {{type: order, to: clerk, payload: {{item: {GARBLED_ITEM}}}}}\n"
        "output: receipt\n",
    )


def _unsafe(text: str) -> list[str]:
    """The characters of ``text`` that a terminal acts on, but its line ends."""
    return [c for c in text if (c < " " and c != "\n") or "\x7f" <= c <= "\x9f"]


def test_a_handlers_error_reaches_the_terminal_on_one_line_and_inert(
    tmp_path: Path, capsys: Capture
) -> None:
    # It printed the reason raw: three lines, the second a forged "ok: all fine", and the
    # escapes set the window's title and cleared the screen.
    pipeline = _garbled(tmp_path, "Garbled")
    assert main(["-v", "--debug", "run", pipeline]) == 1
    err = capsys.readouterr().err
    assert _unsafe(err) == []
    assert not any(line.startswith("ok: all fine") for line in err.splitlines())
    said = f"  clerk: failed: RuntimeError: cannot price {GARBLED_SHOWN}"
    assert said in err.splitlines()
    # The log's warning of the dead letter is one line too; the traceback keeps Python's lines,
    # each indented under the line that introduces it.
    [logged] = [line for line in err.splitlines() if "dead letter (failed)" in line]
    assert logged.endswith(f"RuntimeError: cannot price {GARBLED_SHOWN}")
    shown = err.split("  clerk: the traceback of its last attempt:\n", 1)[1]
    assert all(line.startswith("    ") for line in shown.splitlines())
    # JSON holds the reason exactly as the handler raised it.
    assert main(["run", pipeline, "--json"]) == 1
    [letter] = json.loads(capsys.readouterr().out)["dead_letters"]
    assert letter["reason"] == f"RuntimeError: cannot price {GARBLED_RAW}"


def test_an_approvals_subject_reaches_the_terminal_on_one_line_and_inert(
    tmp_path: Path, capsys: Capture
) -> None:
    pipeline = _garbled(tmp_path, "Asker")
    store = str(tmp_path / "s.db")
    assert main(["run", pipeline, "--store", store, "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err
    assert _unsafe(err) == []
    assert not any(line.startswith("ok: all fine") for line in err.splitlines())
    assert sum(f"(clerk: pay for {GARBLED_SHOWN})" in line for line in err.splitlines()) == 2
    assert main(["approvals", "list", "--store", store]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert f"  clerk: pay for {GARBLED_SHOWN}  (role treasurer; asked " in line
    assert main(["approvals", "list", "--store", store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["subject"] == f"pay for {GARBLED_RAW}"


def test_every_character_a_terminal_acts_on_is_shown_escaped() -> None:
    from genie._errors import for_terminal

    # C1's CSI and NEL, Unicode's line separator, a right-to-left override: each acts on a
    # terminal (or on the order it shows the text in) as ESC and a line break do.
    said = "a\tb\rc\x9b2Jd\x85e\u2028f\u202eg\x7fh"
    assert for_terminal(said) == r"a\tb\rc\x9b2Jd\x85e\u2028f\u202eg\x7fh"
    assert for_terminal("Tina's café: ₹75,000 ✓ C:\\runs") == "Tina's café: ₹75,000 ✓ C:\\runs"
    assert for_terminal("one\ntwo\x1b[2J", keep_lines=True) == "one\ntwo\\x1b[2J"
