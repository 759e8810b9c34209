"""Reading a file a user names: a regular file only, named as what it is otherwise, never read
past its bound, UTF-8 text; and values cut when a message quotes them."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from genie._base.files import FileRefusedError, decode_utf8, file_problem, read_bounded
from genie._errors import shown


def refusal(path: Path, limit: int = 1024) -> FileRefusedError:
    with pytest.raises(FileRefusedError) as caught:
        read_bounded(path, limit)
    return caught.value


def test_a_regular_file_within_its_bound_is_read(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"x" * 10)
    assert read_bounded(path, 10) == b"x" * 10
    assert file_problem(path, 10) is None


def test_special_files_are_named_as_what_they_are(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes: opening it to read would wait for ever
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        cases = {
            tmp_path: "is a directory",
            fifo: "is a named pipe (FIFO), not a regular file",
            tmp_path / "sock": "is a socket, not a regular file",
            Path("/dev/null"): "is a character device, not a regular file",
            tmp_path / "missing": "does not exist",
            tmp_path / "missing" / "below": "does not exist",
        }
        for path, problem in cases.items():
            started = time.monotonic()
            caught = refusal(path)
            assert time.monotonic() - started < 1.0
            assert (caught.problem, caught.path, caught.size) == (problem, str(path), None)
            assert str(caught) == f"{path}: {problem}"
            assert file_problem(path) == problem
    finally:
        sock.close()


def test_a_link_to_a_device_says_where_it_leads(tmp_path: Path) -> None:
    link = tmp_path / "statement.csv"
    link.symlink_to("/dev/zero")  # endless: read whole, it would fill the memory
    problem = "is a character device (a link to /dev/zero), not a regular file"
    assert refusal(link).problem == problem
    assert file_problem(link) == problem
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert refusal(tmp_path / "loop").problem.startswith("cannot be read: ")


def test_the_size_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB that the test never writes
    started = time.process_time()
    caught = refusal(path, 1024)
    assert time.process_time() - started < 0.1
    assert (caught.problem, caught.size) == ("is 52,428,800 bytes", 52_428_800)
    assert file_problem(path, 1024, "max_bytes") == "is 52,428,800 bytes, over max_bytes (1,024)"
    assert read_bounded(path, 50 * 1024 * 1024) == bytes(50 * 1024 * 1024)


def test_a_file_whose_size_is_not_its_length_is_read_no_further_than_the_bound() -> None:
    # A /proc file says it is empty and is not: the bound holds on what is read.
    caught = refusal(Path("/proc/self/maps"), 16)
    assert (caught.problem, caught.size) == ("grew past 16 bytes while read", 17)


def test_text_is_utf8_with_or_without_a_bom() -> None:
    assert decode_utf8("\ufeffdate,amount\n".encode(), "f.csv") == "date,amount\n"
    with pytest.raises(FileRefusedError, match=r"^f.csv:1: the file is UTF-16; save it as UTF-8"):
        decode_utf8("date\n".encode("utf-16"), "f.csv")
    with pytest.raises(FileRefusedError) as caught:
        decode_utf8(b"a\nb,caf\xe9\n", "f.csv")
    assert caught.value.line == 2
    assert caught.value.problem == (
        "not UTF-8: byte 0xe9 at offset 7 (column 6); save the file as UTF-8"
    )


def test_a_quoted_value_is_cut_in_a_message() -> None:
    assert shown("short") == "'short'"
    assert shown("9" * 5000) == "'" + "9" * 37 + "...'"
    assert len(shown("x" * 100_000_000)) == 42
    assert shown("abcdef", limit=5) == "'ab...'"
