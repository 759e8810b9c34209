"""The CLI as a whole: help, exit codes, and the installed console script."""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from genie._agent.catalogue import Catalogue
from genie._cli import plugins
from genie._cli.audit_key import audit_log_key
from genie._cli.main import SIGPIPE_EXIT, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
FINANCE = ROOT / "config" / "pipelines" / "finance.yaml"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    for command in ("run", "validate", "graph", "agents", "policy", "audit"):
        assert command in out


@pytest.mark.parametrize(
    "command",
    [["run"], ["validate"], ["graph"], ["agents"], ["policy", "check"], ["audit", "verify"]],
)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    assert "usage: genie" in capsys.readouterr().out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run"])
    assert done.value.code == 2
    assert "the following arguments are required: pipeline" in capsys.readouterr().err


RUN = ["run", str(FINANCE)]
SERVE = ["serve", str(FINANCE)]
ANSWER = ["approvals", "approve", "some-id", "--store", "no.db", "--as", "ravi"]
SECONDS = "a number of seconds above 0"
PORT = "a port number from 0 to 65535"


@pytest.mark.parametrize(
    ("argv", "option", "value", "expected"),
    [
        (RUN, "--timeout", "nan", SECONDS),  # a ValueError traceback, exit 1
        (RUN, "--timeout", "-1", SECONDS),  # taken (genie simulate refuses it)
        (RUN, "--timeout", "0", SECONDS),
        (RUN, "--timeout", "inf", SECONDS),
        (RUN, "--timeout", "soon", SECONDS),
        (RUN, "--metrics-port", "99999", PORT),  # an OverflowError traceback, exit 1
        (RUN, "--metrics-port", "-1", PORT),
        (SERVE, "--port", "70000", PORT),  # a traceback
        (SERVE, "--port", "-5", PORT),
        (SERVE, "--port", "80.5", PORT),
        (SERVE, "--rate", "nan", "a number above 0"),  # a traceback
        (SERVE, "--drain", "nan", SECONDS),  # taken
        (SERVE, "--drain", "inf", SECONDS),
        (SERVE, "--burst", "0", "a whole number, 1 or more"),
        (SERVE, "--max-body", "1e6", "a number of bytes, 1 or more"),
        (ANSWER, "--wait", "nan", "a number of seconds, 0 or more"),  # taken
        (ANSWER, "--wait", "-1", "a number of seconds, 0 or more"),
        # Python reads these as 5 and 10; the pipeline file and genie serve do not.
        (RUN, "--timeout", "\u0665", SECONDS),
        (SERVE, "--port", "1_0", PORT),
        (SERVE, "--burst", "\uff13", "a whole number, 1 or more"),
    ],
)
def test_a_bad_option_value_is_one_line_and_exit_2(
    argv: list[str], option: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*argv, option, value])
    assert done.value.code == 2
    prog = "genie " + " ".join(a for a in argv[:2] if not a.startswith(("/", "-")))
    assert capsys.readouterr().err == (
        f"{prog}: argument {option}: {expected}, not {value!r} (see {prog} --help)\n"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2.5", 2.5), ("1e-3", 0.001), ("200ms", 0.2), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0)],
)
def test_an_option_of_seconds_takes_a_duration_as_a_pipeline_file_writes_it(
    text: str, seconds: float
) -> None:
    """``timeout: 5s`` in the file, ``--timeout 5s`` on the command line: the same words."""
    parsers = {p.prog: p for p in _commands(build_parser())}
    assert parsers["genie run"].parse_args([str(FINANCE), "--timeout", text]).timeout == seconds
    assert parsers["genie serve"].parse_args([str(FINANCE), "--drain", text]).drain == seconds
    store_sync = parsers["genie run"].parse_args([str(FINANCE), "--store-sync", text]).store_sync
    assert store_sync == seconds


def test_the_console_script_refuses_a_bad_port_without_a_traceback() -> None:
    exe = shutil.which("genie", path=str(Path(sys.executable).parent))
    assert exe is not None
    done = subprocess.run(
        [exe, *RUN, "--metrics-port", "99999"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"genie run: argument --metrics-port: {PORT}, not '99999' (see genie run --help)\n"
    )


def _commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _commands(sub)
    return found


def test_no_numeric_option_takes_a_bare_int_or_float() -> None:
    # int and float take NaN, infinities, negatives and ports past 65535; each numeric option
    # names what it takes (genie._cli.options), genie worker's and genie simulate's too.
    parsers = _commands(build_parser())
    bare = [
        f"{parser.prog} {'/'.join(action.option_strings)}"
        for parser in parsers
        for action in parser._actions
        if action.type in (int, float)
    ]
    assert bare == []
    assert {"genie worker", "genie simulate"} <= {parser.prog for parser in parsers}


@pytest.mark.parametrize(
    ("option", "what"),
    [
        ("--audit", "a path"),
        ("--audit-key-file", "a path"),
        ("--metrics-out", "a path"),
        ("--store", "a path"),
        ("--input", "a path"),
        ("--nats", "a URL"),
        ("--namespace", "a name"),
        ("--origin", "a name"),
    ],
)
def test_an_empty_file_or_server_is_refused_not_taken_as_left_out(
    option: str, what: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--audit "$LOG"` with the variable unset ran without an audit log, `--nats ""` in this
    # process, `--metrics-out ""` wrote no metrics: all with exit 0 and nothing said.
    with pytest.raises(SystemExit) as done:
        main([*RUN, option, ""])
    assert done.value.code == 2
    assert capsys.readouterr().err == (
        f"genie run: argument {option}: {what}, not '' (see genie run --help)\n"
    )


def test_every_option_naming_a_file_or_server_refuses_the_empty_text() -> None:
    named = {"PATH", "FILE", "DIR", "URL", "NS", "NAME", "HASH"}
    bare = [
        f"{parser.prog} {'/'.join(action.option_strings)}"
        for parser in _commands(build_parser())
        for action in parser._actions
        if action.option_strings and (action.metavar in named or action.dest == "probes")
        if action.type is None
    ]
    assert bare == []


def test_an_unknown_option_is_named_by_its_command(capsys: pytest.CaptureFixture[str]) -> None:
    # It used to be reported by the top-level parser, with genie's usage instead of run's.
    for argv, prog in [
        (RUN, "genie run"),
        (["audit", "verify", "log.jsonl"], "genie audit verify"),
    ]:
        with pytest.raises(SystemExit) as done:
            main([*argv, "--tiemout", "5"])
        assert done.value.code == 2
        assert capsys.readouterr().err == (
            f"{prog}: unrecognized arguments: --tiemout 5 (see {prog} --help)\n"
        )


def test_good_option_values_are_taken() -> None:
    args = build_parser().parse_args([*RUN, "--timeout", "2.5", "--metrics-port", "0"])
    assert (args.timeout, args.metrics_port) == (2.5, 0)
    args = build_parser().parse_args([*SERVE, "--port", "65535", "--rate", "0.5", "--burst", "3"])
    assert (args.port, args.rate, args.burst) == (65535, 0.5, 3)
    assert build_parser().parse_args([*ANSWER, "--wait", "0"]).wait == 0


def _genie() -> str:
    exe = shutil.which("genie", path=str(Path(sys.executable).parent))
    assert exe is not None, "the genie console script is not installed"
    return exe


def _first_line(proc: subprocess.Popen[str], within: float) -> str:
    """The first line ``proc`` writes on stderr, read within ``within`` seconds."""
    assert proc.stderr is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        assert sel.select(within), f"nothing on stderr within {within} s"
    return proc.stderr.readline()


def test_a_run_without_a_store_says_at_once_that_nobody_can_answer() -> None:
    # It printed nothing for the pipeline's 60 s, then said to use --store.
    proc = subprocess.Popen(
        [_genie(), "run", "payments", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _first_line(proc, 20)
    finally:
        proc.kill()
        proc.communicate()
    assert line.startswith("genie run: payments: approval ")
    assert line.endswith(
        "(payment_orchestrator: pay Rs 75,000.00 to Shree Ganesh Traders by IMPS) waits for a "
        "person, and a run without --store cannot be answered: stop it (Ctrl-C), run genie run "
        "payments --store PATH and answer from another terminal with genie approvals "
        "(docs/workflows.md)\n"
    )


def test_a_run_with_a_store_says_how_to_answer_and_takes_the_answer(tmp_path: Path) -> None:
    store = str(tmp_path / "payments.db")
    proc = subprocess.Popen(
        [_genie(), "run", "payments", "--timeout", "60", "--store", store],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _first_line(proc, 20)
        approval = line.removeprefix("genie run: payments: approval ").split(" ", 1)[0]
        assert line.endswith(
            f"waits for a person: answer from another terminal with genie approvals approve "
            f"{approval} --store {store} --as PRINCIPAL --role treasurer (or reject); this run "
            "waits for it "
            f"until its timeout, and the next genie run payments --store {store} resumes the "
            "request\n"
        )
        approve = ["approvals", "approve", approval, "--store", store]
        answer = subprocess.run(
            [_genie(), *approve, "--as", "tina", "--role", "treasurer"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (answer.returncode, answer.stdout) == (0, f"{approval}: approved\n")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 0, err
    assert json.loads(out)["reason"] == "approved by tina"


def _command(way: str) -> list[str]:
    if way == "python -m genie":  # where the console script is not on the PATH
        return [sys.executable, "-m", "genie"]
    # The script sits beside the interpreter running the tests (the project's virtualenv).
    exe = shutil.which("genie", path=str(Path(sys.executable).parent))
    assert exe is not None, "the genie console script is not installed"
    return [exe]


@pytest.mark.parametrize("way", ["the console script", "python -m genie"])
def test_the_command_runs_the_main_job_and_refuses_a_mistake_in_a_line(way: str) -> None:
    command = _command(way)
    done = subprocess.run(
        [*command, "run", str(FINANCE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Genie Financial Report\n")
    assert done.stderr == ""
    bad = subprocess.run(
        [*command, "run", "nope"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr


def test_agents_page_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agents", "--markdown"]) == 0
    page = (ROOT / "docs" / "agents.md").read_text()
    assert capsys.readouterr().out == page, "docs/agents.md is stale: genie agents --markdown"


PLUGIN = '''
"""A package that adds commands to genie."""
import sys


def hello(argv, prog):
    """Say hello with the arguments.

    Only the first paragraph is the help line."""
    print(prog, *argv)
    return 3
'''


def plugged(tmp_path: Path, *argv: str, broken: bool = False) -> subprocess.CompletedProcess[str]:
    """`genie ARGV` in a child that has a package adding `genie hello` (and `genie broken`)."""
    (tmp_path / "genie_hello.py").write_text(PLUGIN)
    info = tmp_path / "genie_hello-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: genie-hello\nVersion: 1.0\n")
    entries = "[genie.commands]\nhello = genie_hello:hello\n"
    if broken:
        entries += "broken = genie_hello_missing:main\n"
    (info / "entry_points.txt").write_text(entries)
    code = "import sys; from genie._cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        check=False,
    )


def test_another_package_adds_a_command_through_an_entry_point(tmp_path: Path) -> None:
    done = plugged(tmp_path, "-v", "hello", "a", "--b")
    assert (done.returncode, done.stdout, done.stderr) == (3, "genie hello a --b\n", "")
    done = plugged(tmp_path, "--help")
    assert "hello        say hello with the arguments\n" in done.stdout


def test_a_broken_command_says_so_in_help_and_breaks_nothing_else(tmp_path: Path) -> None:
    done = plugged(tmp_path, "--help", broken=True)
    assert done.returncode == 0
    assert "(from genie_hello_missing:main: cannot be loaded: ModuleNotFoundError" in " ".join(
        done.stdout.split()
    )
    done = plugged(tmp_path, "nope", broken=True)
    assert done.returncode == 2
    assert "invalid choice: 'nope' (choose from" in done.stderr
    assert "'bench', 'broken', 'hello'" in done.stderr


def test_the_library_never_imports_the_harness(capsys: pytest.CaptureFixture[str]) -> None:
    # `genie bench` is the harness's own entry point (genie.commands); the CLI imports it only
    # to run it or to print its help line.
    code = (
        "import sys; from genie._cli.main import main\n"
        f"assert main(['validate', {str(FINANCE)!r}]) == 0\n"
        "assert 'genie_bench' not in sys.modules, 'imported'\n"
        "import genie, genie.simulation, genie.pipeline, genie.policies\n"
        "assert 'genie_bench' not in sys.modules, 'imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    with pytest.raises(SystemExit) as done_help:
        main(["bench", "--help"])
    assert done_help.value.code == 0
    assert capsys.readouterr().out.startswith("usage: genie bench ")


@pytest.mark.parametrize("args", [["agents"], ["agents", "--json"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(args: list[str]) -> None:
    """`genie agents | head`: the pipe's read end is closed before the command writes, so every
    write meets EPIPE; the command says nothing and exits as a process killed by SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "genie._cli", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == SIGPIPE_EXIT


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("args", [["agents"], ["validate", "finance"], ["run", "finance"]])
def test_an_output_that_cannot_be_written_is_one_line(args: list[str]) -> None:
    """`genie run P > file` on a full disk: the write's OSError was a traceback."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [_genie(), *args], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60
        )
    assert done.stderr == (
        f"genie {args[0]}: cannot write to standard output: No space left on device\n"
    )
    assert done.returncode == 1


@pytest.mark.parametrize(
    "args", [["graph", "finance"], ["validate", "finance"], ["run", "finance"]]
)
def test_a_closed_output_is_one_line(args: list[str]) -> None:
    """`genie run P >&-`: Python then has no sys.stdout at all, and the first print raised
    AttributeError from inside the output's wrapper, a traceback."""
    done = subprocess.run(
        [_genie(), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        # The child's standard output closed before Python starts, as the shell's `>&-` does.
        preexec_fn=lambda: os.close(1),
    )
    assert done.stderr == f"genie {args[0]}: cannot write to standard output: it is closed\n"
    assert done.returncode == 1


def test_ctrl_c_before_the_command_runs_is_one_line() -> None:
    """A SIGINT while the command line is still being read (the parser built, the entry
    points scanned: about a second on a loaded machine) was a traceback; a command says its
    own Ctrl-C, and so does ``genie`` before one runs."""
    code = (
        "import os, signal, sys\n"
        # A shell that starts a job in the background has it ignore SIGINT: a terminal's.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from genie._cli import main as m\n"
        "built = m.build_parser\n"
        "def interrupted(*args, **kw):\n"
        "    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, as the parser is built\n"
        "    return built(*args, **kw)\n"
        "m.build_parser = interrupted\n"
        "sys.argv = ['genie', 'run', 'finance']\n"
        "raise SystemExit(m.cli())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (130, "genie run: interrupted\n")


# Blocks the first import of a genie module (genie's own imports under way) until a SIGINT
# comes, having said so on stdout: the Ctrl-C lands while Python imports genie, every time.
_BLOCKS_GENIES_IMPORT = """
import signal, sys

class _Blocks:
    blocked = False

    def find_spec(self, name, path=None, target=None):
        if name.startswith("genie.") and not self.blocked:
            self.blocked = True
            print("importing", flush=True)
            while True:
                signal.pause()  # the SIGINT's KeyboardInterrupt ends it
        return None

sys.meta_path.insert(0, _Blocks())
"""


def test_ctrl_c_while_genie_is_imported_is_one_line(tmp_path: Path) -> None:
    """A SIGINT before genie's imports were done printed Python's KeyboardInterrupt
    traceback: the console script imported genie before any of it could catch one."""
    (tmp_path / "sitecustomize.py").write_text(_BLOCKS_GENIES_IMPORT)
    # The console script as pip writes it, of the entry point the project declares.
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = declared["genie"].split(":")
    script = tmp_path / "genie"
    script.write_text(f"import sys\nfrom {module} import {function}\nsys.exit({function}())\n")
    paths = [str(tmp_path), str(ROOT), str(ROOT / "agents"), str(ROOT / "benchmarks")]
    proc = subprocess.Popen(
        [sys.executable, str(script), "run", "finance"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "importing\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out, err) == (130, "", "genie run: interrupted\n")


def test_a_reader_that_reads_everything_sees_it_all() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "genie._cli", "agents", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert len(json.loads(done.stdout)) == len(Catalogue.installed())


def test_the_command_list_of_cli_md_is_what_genie_help_lists(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It listed 8 of the 13 commands, some with words --help does not say.
    page = (ROOT / "docs" / "cli.md").read_text()
    [block] = re.findall(r"```\ngenie \[--debug\] \[-v\] COMMAND \.\.\.\n(.*?)```", page, re.S)
    documented = [tuple(line.split(None, 1)) for line in block.splitlines()]
    installed = {n: plugins.summary(e) for n, e in plugins.installed().items()}
    [commands] = [
        a for a in build_parser(installed)._actions if isinstance(a, argparse._SubParsersAction)
    ]
    assert documented == [(c.dest, c.help) for c in commands._choices_actions]


def test_the_documented_graph_is_what_genie_graph_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reporter's edge was shown last; genie graph prints it fourth.
    page = (ROOT / "docs" / "pipelines.md").read_text()
    [block] = re.findall(r"```\n\$ (genie graph .*?)```", page, re.S)
    command, *shown = block.splitlines()
    monkeypatch.chdir(ROOT)
    assert main(command.split()[1:]) == 0
    assert capsys.readouterr().out.splitlines() == shown


def test_verbose_is_described_as_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    # genie --help said "log warnings"; -v logs at info level, as run --help and cli.md say.
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "-v, --verbose  log at info level (dead letters, denies)" in capsys.readouterr().out
    page = (ROOT / "docs" / "cli.md").read_text()
    assert "`-v` logs at info level" in " ".join(page.split())


def test_serve_md_shows_the_new_audit_key_line_as_printed(tmp_path: Path) -> None:
    # The page said "where the server cannot write"; the program says "the process".
    args = argparse.Namespace(
        audit=str(tmp_path / "audit.jsonl"), audit_key_file=None, audit_unkeyed=False
    )
    _, said = audit_log_key(args)
    line = f"genie serve: audit log audit.jsonl {said}".replace(f"{tmp_path}/", "")
    assert line in (ROOT / "docs" / "serve.md").read_text().splitlines()


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        # "Input should be a valid tuple", then "keys: Tuple should have at least 1 item
        # after validation, not 0" as a second problem.
        (
            "key: 0123456789abcdef, roles: user",
            "keys.0.roles: Input should be a valid list (for one: [user])",
        ),
        ("key: short", "keys.0.key: String should have at least 16 characters"),
    ],
)
def test_a_key_file_mistake_is_one_problem_in_yaml_words(
    entry: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"keys:\n  - {{principal: a, {entry}}}\n")
    assert main(["serve", str(FINANCE), "--keys", str(keys), "--port", "0"]) == 2
    assert capsys.readouterr().err == f"{keys}:2: {problem}\ngenie serve: 1 problem\n"


QUITTERS = """
import asyncio
import sys

import anyio

from genie import BaseAgent, Context, Message, Payload, handler


class Question(Payload):
    message_type = "quit_question"


class Plan(Payload):
    message_type = "quit_plan"


class InItsHandler(BaseAgent):
    produces = (Plan,)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        sys.exit(3)


class InItsTaskGroup(BaseAgent):
    produces = (Plan,)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        async def leave() -> None:
            await anyio.sleep(0)
            sys.exit(3)

        async with anyio.create_task_group() as tg:
            tg.start_soon(leave)
        return ctx.emit(Plan())


class InATaskItCreated(BaseAgent):
    produces = (Plan,)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        async def leave() -> None:
            sys.exit(3)

        await asyncio.create_task(leave())
        return ctx.emit(Plan())
"""


@pytest.mark.parametrize("agent", ["InItsHandler", "InItsTaskGroup", "InATaskItCreated"])
def test_a_handler_that_exits_stops_the_run_in_one_line_with_its_code(
    agent: str, tmp_path: Path
) -> None:
    # asyncio let the exit out of the task that raised it, then logged the run's own task,
    # which held it too, as "unhandled exception during asyncio.run() shutdown".
    (tmp_path / "quitters.py").write_text(QUITTERS)
    pipeline = tmp_path / "quit.yaml"
    pipeline.write_text(
        f"agents: [{{id: quitter, use: 'quitters:{agent}'}}]\n"
        "entry: {type: quit_question, to: quitter}\noutput: quit_plan\n"
    )
    done = subprocess.run(
        [_genie(), "run", str(pipeline)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (3, "")
    # It did not say whose handler. An exit in a task the handler started may leave the
    # event loop (asyncio lets it out) before the handler's delivery hears of it: then the
    # runtime cannot tell whose it was, and says "a handler".
    said = "called sys.exit(3): the run stopped, what was in flight cancelled\n"
    if agent == "InItsHandler":
        assert done.stderr == f"genie run: the handler of quitter {said}"
    else:
        assert done.stderr in (
            f"genie run: the handler of quitter {said}",
            f"genie run: a handler {said}",
        )


@pytest.mark.parametrize(
    ("command", "made"),
    [
        (["simulate", "finance", "--sessions", "5000", "--out"], "sessions.png"),
        (["bench", "--quick", "--variants", "genie", "--workloads", "fanout", "--out"], "bench"),
    ],
)
def test_ctrl_c_ends_any_command_in_one_line_with_130(
    tmp_path: Path, command: list[str], made: str
) -> None:
    # Ctrl-C during a long `genie simulate` or `genie bench` (a command another package adds)
    # was KeyboardInterrupt's traceback (genie run alone said `interrupted`), and the report
    # half made was neither printed nor written.
    proc = subprocess.Popen(
        [_genie(), *command, str(tmp_path / made)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's
    )
    try:
        _first_line(proc, 30)  # its progress: it is running
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out) == (130, ""), err
    assert err.splitlines()[-1] == f"genie {command[0]}: interrupted", err
    assert "Traceback" not in err
    assert not any(tmp_path.rglob("*.*"))  # no plot, no results


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--namespace", "x"], "--namespace names a namespace of --nats: give --nats URL"),
        (["--origin", "x"], "--origin names an entry process of --nats: give --nats URL"),
        (
            ["--nats", "nats://127.0.0.1:1", "--store", "s.db"],
            "--store keeps a run's deliveries in this process; with --nats JetStream keeps them",
        ),
    ],
)
def test_options_that_do_not_go_together_are_refused_before_any_file_is_made(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    said: str,
) -> None:
    # They were found once the audit log, its new key and the metrics file were made: the
    # refused command left them behind (and an empty store beside them).
    made = ["--audit", str(tmp_path / "a.jsonl"), "--metrics-out", str(tmp_path / "m.txt")]
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(FINANCE), *made, *options]) == 2
    assert capsys.readouterr().err == f"genie run: {said}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_run_refused_at_its_store_or_port_leaves_none_of_the_files_made_for_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The audit log, its new key and the metrics file were made (and left open) before the
    # store was refused: an empty log with a key, for a run that never ran.
    made = ["--audit", str(tmp_path / "a.jsonl"), "--metrics-out", str(tmp_path / "m.txt")]
    assert main(["run", str(FINANCE), *made, "--store", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == f"genie run: cannot use {tmp_path} as a store: it is a directory\n"
    )
    assert list(tmp_path.iterdir()) == []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["run", str(FINANCE), *made, "--metrics-port", port]) == 2
    assert capsys.readouterr().err.startswith(
        f"genie run: cannot serve metrics on 127.0.0.1:{port}"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("pipeline", "asker"),
    [("payments", "payment_orchestrator"), ("sme-loan", "sme_loan_workflow")],
)
def test_genie_graph_draws_the_approval_desk_a_pipeline_asks(
    pipeline: str, asker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An approval is a step of the flow: the request goes to the runtime's desk, and its
    decision comes back to whoever asked, drawn as the desk the runtime adds."""
    path = str(ROOT / "config" / "pipelines" / f"{pipeline}.yaml")
    assert main(["graph", path]) == 0
    edges = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert f"{asker} --genie.approval_request--> (approvals)" in edges
    assert f"(approvals) --genie.approval_decision--> {asker}" in edges
    assert main(["graph", path, "--format", "mermaid"]) == 0
    drawn = capsys.readouterr().out
    assert '(["(approvals)"])' in drawn
