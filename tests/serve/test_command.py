"""``genie serve`` refuses a bad setup with one line and exit 2, before anything listens."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from genie._cli.main import main

from .conftest import KEYS, ROOT

FINANCE = str(ROOT / "config/pipelines/finance.yaml")


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0
    assert "--drain" in capsys.readouterr().out


def _fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_no_keys(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENIE_API_KEYS", raising=False)
    err = _fails([FINANCE, "--port", "0"], capsys)
    assert err == (
        "genie serve: genie serve needs API keys: --keys FILE or the GENIE_API_KEYS "
        "variable (docs/serve.md)\n"
    )


def test_bad_key_file_names_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n  - {principal: a, key: 0123456789abcdef, roles: admin}\n")
    err = _fails([FINANCE, "--keys", str(keys)], capsys)
    assert f"{keys}:2: keys.0.roles" in err


def test_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(KEYS)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = _fails([FINANCE, "--keys", str(keys), "--port", str(port)], capsys)
    assert f"cannot listen on 127.0.0.1:{port}" in err


def test_principal_named_like_an_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n  - {principal: reporter, key: 0123456789abcdef}\n")
    err = _fails([FINANCE, "--keys", str(keys), "--port", "0"], capsys)
    assert "principal 'reporter' is also an agent of pipeline 'finance'" in err


@pytest.mark.parametrize(
    ("principal", "said"),
    [
        ("genie", "the runtime's own (the sender of its notices of losses and cancellations)"),
        ("approvals", "the runtime's own (its approval desk, whose decisions workflows act on)"),
        ("genie-serve", "this server's own (its actor in the audit log)"),
    ],
)
def test_a_principal_cannot_take_a_name_the_runtime_or_the_server_uses(
    principal: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A client's requests are sent under its principal: as "genie" a store did not keep them
    # (the runtime's own), and as "genie-serve" its audit rows read as the server's.
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"keys:\n  - {{principal: {principal}, key: 0123456789abcdef}}\n")
    err = _fails([FINANCE, "--keys", str(keys), "--port", "0"], capsys)
    assert f"principal {principal!r} is {said}: rename the principal" in err


@pytest.mark.parametrize("option", ["--max-body", "--burst", "--rate", "--drain", "--max-timeout"])
def test_a_limit_must_be_positive(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(KEYS)
    with pytest.raises(SystemExit) as done:  # refused by the parser, before anything loads
        main(["serve", FINANCE, "--keys", str(keys), "--port", "0", option, "0"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genie serve: argument {option}: ")
    assert err.endswith(", not '0' (see genie serve --help)\n")


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--audit", "{pipeline}", "--audit-unkeyed"], "--audit and the pipeline file"),
        (["--audit", "{keys}", "--audit-unkeyed"], "--audit and --keys"),
        (["--store", "{store}", "--audit", "{db}", "--audit-unkeyed"], "--store and --audit"),
        (
            ["--store", "{store}", "--audit", "{db}.lock", "--audit-unkeyed"],
            "the lock of --store and --audit",
        ),
        (["--audit", "{new}", "--audit-key-file", "{new}"], "--audit and --audit-key-file"),
        (["--audit", "{new}", "--keys", "{new}.key"], "the key of --audit and --keys"),
    ],
)
def test_one_file_named_for_two_roles_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], said: str
) -> None:
    # `--audit` over the pipeline file or the keys appended its rows to them, and over a
    # pipeline's store (`DIR/NAME.db`) to the database that keeps its requests.
    pipeline = tmp_path / "household.yaml"
    pipeline.write_text(
        "name: household\nagents:\n  - id: planner\n    use: tests.pipelines.household:Planner\n"
        "entry: {type: household_question, to: planner}\noutput: household_plan\n"
    )
    keys = tmp_path / "keys.yaml"
    keys.write_text(KEYS)
    (tmp_path / "sub").mkdir()
    (tmp_path / "st").mkdir()  # the store folder of an earlier start, say
    names = {
        "pipeline": pipeline,
        "keys": keys,
        "store": tmp_path / "st",
        "db": tmp_path / "sub" / ".." / "st" / "household.db",  # two spellings of one file
        "new": tmp_path / "new.log",
    }
    argv = [o.format(**names) for o in options]
    if "--keys" in argv:  # a keys file named as the audit log's key would be
        Path(argv[argv.index("--keys") + 1]).write_text(KEYS)
    else:
        argv += ["--keys", str(keys)]
    before = sorted(tmp_path.rglob("*"))
    contents = {p: p.read_bytes() for p in before if p.is_file()}
    err = _fails([str(pipeline), "--port", "0", *argv], capsys)
    assert err.startswith(f"genie serve: {said} name one file: "), err
    assert err.count("\n") == 1
    assert sorted(tmp_path.rglob("*")) == before  # no store, log or key made
    assert {p: p.read_bytes() for p in before if p.is_file()} == contents
