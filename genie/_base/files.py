"""Reading a file a user names (a pipeline, a policy file, a run's input, a key): a regular file,
no larger than a bound, in UTF-8.

Every file the CLI reads comes through here, so a hostile or mistaken path is refused, named as
what it is, before anything is parsed:

- only a regular file is read, and a name holding a NUL character is refused as no file's
  name. A directory, a named pipe (whose open would wait for a writer
  for ever), a socket or a device (``/dev/zero`` never ends) is refused by name, also behind a
  symbolic link;
- the size is checked before reading, and reading stops one byte past the bound, so a file
  that grows while it is read, or that says it is empty (``/proc``), is refused without being
  held in memory;
- text is UTF-8, with or without a byte order mark; other bytes are named with their offset,
  line and column, UTF-16 by name.

The caller words its own refusal from ``FileRefusedError.problem``: ``is a directory``, ``does
not exist``, the size against its own bound.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from .._errors import ConfigurationError

__all__ = [
    "FileRefusedError",
    "decode_utf8",
    "file_problem",
    "open_regular",
    "read_bounded",
    "write_problem",
]


class FileRefusedError(ConfigurationError):
    """``path`` cannot be read as asked: ``problem`` says why (``is a directory``); ``size`` is
    set when the file is larger than the bound (at least the bound + 1: it was not read past
    it); ``line`` when its bytes are not UTF-8 text."""

    def __init__(
        self, path: str | os.PathLike[str], problem: str, *, size: int | None = None, line: int = 0
    ) -> None:
        where = f"{os.fspath(path)}:{line}" if line else os.fspath(path)
        super().__init__(f"{where}: {problem}")
        self.path = os.fspath(path)
        self.problem = problem
        self.size = size
        self.line = line


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_regular(path: str | os.PathLike[str], mode: int) -> str | None:
    """What ``path`` is, when not a regular file: ``is a named pipe (FIFO), not a regular
    file``; through a symbolic link, where it leads."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    if os.path.islink(path):
        kind += f" (a link to {os.path.realpath(path)})"
    return f"is {kind}" if stat.S_ISDIR(mode) else f"is {kind}, not a regular file"


def _open_problem(path: str | os.PathLike[str], exc: OSError) -> str:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "does not exist"
    if exc.errno == errno.ENXIO:  # a socket cannot be opened: say what it is
        try:
            problem = _not_regular(path, os.stat(path).st_mode)
        except OSError:
            problem = None
        if problem:
            return problem
    return f"cannot be read: {exc.strerror or exc}"


def file_problem(
    path: str | os.PathLike[str], limit: int | None = None, limit_name: str = "the limit"
) -> str | None:
    """Why ``path`` could not be read as a regular file of at most ``limit`` bytes (``does not
    exist``, ``is a directory``, ``is 2,000,000 bytes, over <limit_name> (1,048,576)``), or
    None. Looks without opening, for checks before a run (the read itself checks again)."""
    try:
        found = os.stat(path)
    except OSError as exc:
        return _open_problem(path, exc)
    except ValueError:  # a NUL written in a YAML string ("a\0b"): no file can have that name
        return "is no file name: it holds a NUL character"
    problem = _not_regular(path, found.st_mode)
    if problem is None and limit is not None and found.st_size > limit:
        problem = f"is {found.st_size:,} bytes, over {limit_name} ({limit:,})"
    return problem


def write_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a file the CLI writes (an audit log, the metrics) cannot be ``path``: what is there
    when it is no regular file (``is a named pipe (FIFO), not a regular file``: its open would
    wait for a reader for ever; a directory or a device keeps nothing), or None: a regular
    file, or nothing yet (the file is made)."""
    return file_problem(path) if os.path.exists(path) else None


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened to read its bytes, once it is seen to be a regular file. Raises
    FileRefusedError: not a regular file, or cannot be opened. For a file read as a stream
    (an audit log); ``read_bounded`` reads a whole file within a bound."""
    # Looked at before it is opened (opening a device may act on it: a tape rewinds, a modem
    # hangs up) and again once open, so what is checked is what is read (a path swapped for a
    # pipe in between is seen as a pipe). Non-blocking, so opening a pipe swapped in returns
    # at once instead of waiting for a writer.
    problem = file_problem(path)
    if problem is not None:
        raise FileRefusedError(path, problem)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise FileRefusedError(path, _open_problem(path, exc)) from None
    try:
        problem = _not_regular(path, os.fstat(fd).st_mode)
    except OSError as exc:
        problem = f"cannot be read: {exc.strerror or exc}"
    if problem is not None:
        os.close(fd)
        raise FileRefusedError(path, problem)
    return open(fd, "rb")


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them. Raises
    FileRefusedError: not a regular file, cannot be opened, or larger than ``limit`` (``size``
    set; the problem says ``is N bytes``)."""
    with open_regular(path) as file:
        try:
            size = os.fstat(file.fileno()).st_size
            if size > limit:
                raise FileRefusedError(path, f"is {size:,} bytes", size=size)
            raw = file.read(limit + 1)  # a file growing while read stops one byte past
        except OSError as exc:
            raise FileRefusedError(path, f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise FileRefusedError(path, f"grew past {limit:,} bytes while read", size=len(raw))
    return raw


def decode_utf8(raw: bytes, path: str | os.PathLike[str]) -> str:
    """``raw`` (the content of ``path``) as text: UTF-8, a byte order mark dropped. Raises
    FileRefusedError with the line: UTF-16 by name, another byte with its offset and column."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileRefusedError(path, "the file is UTF-16; save it as UTF-8", line=1)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise FileRefusedError(
            path,
            f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} (column {column}); "
            "save the file as UTF-8",
            line=line,
        ) from None
