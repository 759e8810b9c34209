"""Why a handler failed, as the person who wrote it reads it: its traceback, kept with the
dead letter (docs/semantics.md, "Dead letters").

A traceback of a failed delivery runs through the event loop, the runtime's delivery loop and
the handler's own code. The frames of genie and of the event loop (anyio, asyncio, trio) say
nothing a handler's author can act on, so each run of them is folded into one line, and the
text starts with the line that raised in the author's own code. Each attempt of a retried
delivery keeps its traceback (the last ``KEPT``), each cut to ``MAX_CHARS``: a dead letter is
kept in memory and may be sent to a client, so it stays small.

What a handler raised is described whatever its class does when read: an API error that looks
its attributes up in a dict (``KeyError`` for ``__notes__``), or a property that raises, gives
a shorter text, never an error of the runtime's own (it would stop the runtime).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import traceback
from collections.abc import Iterator

import anyio

from .._errors import described, middle_cut

__all__ = [
    "KEPT",
    "MAX_CHARS",
    "attempts_of",
    "exiting",
    "format_failure",
    "formatted_there",
    "interrupted",
    "remember_attempt",
    "stops_runtime",
]

KEPT = 3  # the tracebacks of a retried delivery's last attempts
MAX_CHARS = 4_000  # of one traceback; the middle is cut, the raising line always kept

_GENIE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _package_dir(name: str) -> str | None:
    # Found without importing it: ``import genie`` must not load asyncio (and logging).
    spec = importlib.util.find_spec(name)
    origin = spec.origin if spec is not None else None
    return os.path.dirname(os.path.abspath(origin)) + os.sep if origin else None


# trio's own folder, not any folder named trio: a project may be kept in one.
_LOOPS = tuple(d for d in map(_package_dir, ("anyio", "asyncio", "trio")) if d is not None)
_PLUMBING = (_GENIE, *_LOOPS, f"{os.sep}contextlib.py")
# The traceback of a failure raised in another process, formatted there (its frames are not
# this process's): on the exception rebuilt here.
_THERE = "__genie_formatted_there__"


def _is_plumbing(filename: str) -> bool:
    return any(part in filename for part in _PLUMBING)


class _Folded(traceback.StackSummary):
    """One exception's frames, each run of genie's and the event loop's folded into a line."""

    def format(self, **how: object) -> list[str]:
        lines: list[str] = []
        run: list[traceback.FrameSummary] = []
        folded = 0
        for frame in (*self, None):
            if frame is not None and not _is_plumbing(frame.filename):
                if folded:
                    lines.append(_folded(folded))
                    folded = 0
                run.append(frame)
                continue
            if run:  # formatted together, so a recursion's repeated lines are said once
                lines.extend(traceback.StackSummary.from_list(run).format())
                run = []
            folded += frame is not None
        if folded:
            lines.append(_folded(folded))
        return lines


# Of each group, the failures Python's traceback shows (its ``max_group_width``; the rest it
# counts), and the levels of groups in groups it shows (``max_group_depth``).
_SHOWN_IN_GROUP = 15
_GROUP_DEPTH = 10
# Exceptions a traceback is built of, at most: each shows as a line or more, so past these its
# text is far longer than ``MAX_CHARS`` and cut in the middle anyway. A group may hold the same
# failure many times over, in groups in groups, and so show more than memory holds.
_BUILT = 200


def _traceback(error: BaseException) -> traceback.TracebackException:
    """``TracebackException.from_exception(error)``, built of what its text shows, and with the
    frames of every exception it shows folded: of each group, the first failures Python shows
    (a group of 100,000 is formatted from 15 and the count of the rest) to the depth it shows
    them, and at most ``_BUILT`` exceptions in all; a group whose failures that leaves out says
    so in a note. Built one exception at a time, as Python's own constructor does for the
    first (``_seen``: the exceptions already built, so that a loop of causes ends)."""
    seen: set[int] = set()
    built = 0

    def one(exc: BaseException) -> traceback.TracebackException:
        nonlocal built
        built += 1
        te = traceback.TracebackException(
            type(exc),
            exc,
            exc.__traceback__,
            max_group_width=_SHOWN_IN_GROUP,
            max_group_depth=_GROUP_DEPTH,
            _seen=seen,
        )
        te.stack = _Folded(te.stack)
        te.__cause__ = te.__context__ = None
        te.exceptions = None
        return te

    top = one(error)
    todo = [(top, error, 0)]  # what to build next, first shown first: the budget goes in order
    while todo:
        te, exc, depth = todo.pop()
        after: list[tuple[traceback.TracebackException, BaseException, int]] = []
        for link in ("__cause__", "__context__"):
            linked: BaseException | None = getattr(exc, link)
            if linked is not None and id(linked) not in seen and built < _BUILT:
                setattr(te, link, one(linked))
                after.append((getattr(te, link), linked, depth))
        if isinstance(exc, BaseExceptionGroup):
            failures = exc.exceptions
            wanted = failures[:_SHOWN_IN_GROUP] if depth <= _GROUP_DEPTH else ()
            held = []
            for failure in wanted:
                if built >= _BUILT:
                    break
                held.append(one(failure))
                after.append((held[-1], failure, depth + 1))
            if len(held) == len(wanted):
                # The ones not built are never read: Python shows the first and counts the rest.
                te.exceptions = held + held[-1:] * (len(failures) - len(held))
            else:
                te.exceptions = held
                left = f"the other {len(failures) - len(held)} of" if held else "none of"
                te.__notes__ = [
                    *(te.__notes__ or ()),
                    f"({left} its {len(failures)} failures shown: the traceback is cut)",
                ]
        todo.extend(reversed(after))
    return top


_CAUSES_FOLLOWED = 64  # links of a chain of causes read for the line that raised


def _raised_at(
    error: BaseException, seen: frozenset[int] = frozenset()
) -> traceback.FrameSummary | None:
    """The last frame of the handler's code in ``error``'s traceback; for a group of one
    failure (through groups of one), in that failure's, where it was raised; for an error
    raised outside the handler's code from one raised in it (Python's RuntimeError for a
    StopIteration that left a coroutine), in its cause's."""
    # The groups of one, outermost first: the innermost that has a line gives it. Gone down
    # without recursion, as a group may nest deeper than Python's recursion limit.
    ones = [error]
    while isinstance(ones[-1], BaseExceptionGroup) and len(ones[-1].exceptions) == 1:
        ones.append(ones[-1].exceptions[0])
    for one in reversed(ones):
        own = [f for f in traceback.extract_tb(one.__traceback__) if not _is_plumbing(f.filename)]
        if own:
            return own[-1]
        cause = one.__cause__
        # A chain that loops back, or runs deeper than any handler's would, has no line.
        if cause is not None and id(cause) not in seen and len(seen) < _CAUSES_FOLLOWED:
            found = _raised_at(cause, seen | {id(one)})
            if found is not None:
                return found
    return None


def _folded(n: int) -> str:
    return f"  [{n} frame{'s' if n > 1 else ''} of genie and the event loop]\n"


def format_failure(error: BaseException) -> str:
    """``error``'s traceback as Python prints it (what it was raised from, each failure of a
    group), genie's and the event loop's frames folded: first the line of the handler's code
    that raised (``file:line in function: Type: message``), then the traceback, at most
    ``MAX_CHARS`` long (as it was formatted in the process that raised it, for an exception
    rebuilt here: ``formatted_there``). Never raises: of an error whose class fails a read
    (see the module docstring), what can be read of it."""
    try:
        there: str | None = getattr(error, _THERE, None)
    except BaseException:  # its class looks up a name it lacks its own way: none was set
        there = None
    if there is not None:
        return there
    said = described(error)  # as the dead letter's reason says it
    try:
        raised_at = _raised_at(error)
    except BaseException:  # its traceback or cause cannot be read: no line to name
        raised_at = None
    head = (
        f"{raised_at.filename}:{raised_at.lineno} in {raised_at.name}: {said}\n"
        if raised_at is not None
        else f"{said}\n"
    )
    return middle_cut((head + _shown(error, said)).rstrip("\n"), MAX_CHARS)


def _shown(error: BaseException, said: str) -> str:
    """The traceback of ``error`` as Python prints it, frames folded; of an error whose class
    fails a read that printing makes (``__notes__``, its group's failures, a syntax error's
    file), its own frames and ``said``; of one whose frames cannot be read either, nothing."""
    try:
        return "".join(_traceback(error).format())
    except BaseException:
        pass
    try:
        frames = _Folded(traceback.extract_tb(error.__traceback__)).format()
    except BaseException:
        return ""
    return "Traceback (most recent call last):\n" + "".join(frames) + said


def formatted_there(error: BaseException, text: str) -> None:
    """``error`` was rebuilt from one raised in another process, whose traceback, formatted
    there, is ``text``: its dead letter shows that, not the frames that rebuilt it."""
    # An exception class with slots and no room, or one that refuses attributes its own way,
    # keeps the frames that rebuilt it.
    with contextlib.suppress(Exception):
        setattr(error, _THERE, text)


def remember_attempt(
    earlier: tuple[str, ...], failed: BaseException | None, then: BaseException
) -> tuple[str, ...]:
    """The tracebacks of a delivery's attempts before the one that ended in ``then``, the last
    ``KEPT - 1``: ``earlier`` (those before ``failed``), then ``failed``'s (None: none failed).
    The delivery keeps them, not the exception: one exception may end deliveries of several
    requests (a failed fetch many handlers share), and one's tracebacks are not another's."""
    if then is failed:
        return earlier  # the same exception raised again: one traceback
    return attempts_of(failed, earlier)[-(KEPT - 1) :]


def attempts_of(error: BaseException | None, earlier: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The tracebacks of the attempts of a delivery that ended in ``error``, oldest first:
    ``earlier`` (``remember_attempt``), then ``error``'s, unless the runtime made it without
    raising it (an open circuit)."""
    if error is None:
        return earlier
    try:
        made = error.__traceback__ is None
    except BaseException:  # raised, but its frames cannot be read: described all the same
        made = False
    return earlier if made else (*earlier, format_failure(error))


def held(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` if it is no group, else each failure its groups hold, in order, however deep
    they nest (a task group per level of a recursive walk): walked without recursion, since
    what a handler raised must never fail the runtime's own task that looks into it. A group
    held more than once is walked once: the same group many times over, in groups in groups,
    would hold more failures than memory does, each of them one of a few."""
    todo = [exc]
    walked: set[int] = set()
    while todo:
        one = todo.pop()
        if isinstance(one, BaseExceptionGroup) and id(one) not in walked:
            walked.add(id(one))
            try:
                todo.extend(reversed(one.exceptions))
            except BaseException:  # its class hides what it holds: it is one failure itself
                yield one
        elif not isinstance(one, BaseExceptionGroup):
            yield one


def stops_runtime(exc: BaseException) -> bool:
    """True for what must not be handled as a failure of a handler that raised it: a
    ``KeyboardInterrupt`` or ``SystemExit`` (``exiting``), or a cancellation of the task's own
    cancel scopes (a shutdown, a cancelled request, a deadline). A stray ``CancelledError``
    (from awaiting a future another task cancelled) is a failure like any."""
    return exiting(exc) is not None or _cancelled_here(exc)


def interrupted(exc: BaseException) -> bool:
    """True for what ends code from outside it: a Ctrl-C (a ``KeyboardInterrupt``, alone or in
    a group) or a cancellation of the task's own cancel scopes. What a policy raises otherwise,
    ``sys.exit()`` included, is its failure on the message it judged."""
    return any(isinstance(one, KeyboardInterrupt) for one in held(exc)) or _cancelled_here(exc)


def _cancelled_here(exc: BaseException) -> bool:
    # Cancellation that is ours shows as an effective deadline of -inf; a stray one does not.
    # Read first: a failure is walked once, not twice, unless the runtime cancelled it.
    if anyio.current_effective_deadline() != -math.inf:
        return False
    cancelled = anyio.get_cancelled_exc_class()
    return any(isinstance(one, cancelled) for one in held(exc))


def exiting(exc: BaseException) -> BaseException | None:
    """The ``KeyboardInterrupt`` or ``SystemExit`` that ``exc`` is, or holds: a task the
    handler started raises it on the handler's thread too, and its task group hands it on
    inside a group (trio's always does)."""
    for one in held(exc):
        if isinstance(one, KeyboardInterrupt | SystemExit):
            return one
    return None
