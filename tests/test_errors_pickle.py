"""Every error genie raises crosses a process boundary as what it is.

A ``def`` handler in a process (``offload="process"``) sends back what it raised pickled: an
error that does not unpickle reaches the runtime as a plain ``AgentError``, and the retry
policy no longer knows it for a mistake a retry cannot fix. ``pickle`` rebuilds an exception
by calling its class with ``args``, which breaks every error whose ``__init__`` takes its
parts rather than its text (``MemoryArgumentError(memory, call, argument, problem)``) or
keyword arguments (``DeniedError(message, policy=..., reason=...)``).
"""

from __future__ import annotations

import copy
import importlib
import pickle
import pkgutil
from collections.abc import Callable
from typing import Any

import pytest

import genie
from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    GenieError,
    Payload,
    RetryPolicy,
    Runtime,
    handler,
)
from genie._errors import MemoryArgumentError
from genie._runtime.correlator import Missing
from genie.llm import LLMError


def _every_error() -> list[type[GenieError]]:
    for found in pkgutil.walk_packages(genie.__path__, "genie."):
        if not found.name.endswith("__main__"):
            importlib.import_module(found.name)
    classes: list[type[GenieError]] = []
    pending = [GenieError]
    while pending:
        cls = pending.pop()
        if cls in classes:  # reached again through a second base
            continue
        classes.append(cls)
        pending.extend(cls.__subclasses__())
    return classes


# The arguments of each error whose ``__init__`` is not ``(message, **ids)``.
_ARGUMENTS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "FileRefusedError": (("cfg.yaml", "is not a file"), {"line": 3}),
    "ConfigFileError": ((["cfg.yaml:3: key 'x': unknown"],), {}),
    "SchemaError": ((("fields", "amount"), "is not a number"), {}),
    "InputError": (("bad input",), {"line": 2}),
    "_CannotWrite": (("cannot write", "the disk is full"), {}),
    "UnknownMessageTypeError": (("demo.pingg", ["demo.ping"]), {}),
    "InvalidMessageError": (("demo.ping", "n", "not an integer"), {}),
    "ToolArgumentsError": (("files", "read", "path", "is required"), {}),
    "MemoryArgumentError": (("notes", "kv.set", "value", "is a set"), {}),
    "PublishRefusedError": (("genie.in.a", "maximum messages exceeded (error 10077)"), {}),
    "MessageTooLargeError": (("genie.in.a", 2_000_000, 1_048_576), {}),
    "DeniedError": (("denied",), {"policy": "pii", "reason": "an IBAN", "message_id": "m1"}),
    "ToolDeniedError": (("tools", "not allowed", "call"), {"agent_id": "a"}),
    "MemoryDeniedError": (("notes", "pii", "an IBAN", "write"), {"correlation_id": "c"}),
    "ResidencyDeniedError": (("not in the EU",), {"provider": "us", "reason": "us-east"}),
    "StoreError": (("full",), {"path": "/tmp/x.db", "kept": False}),
    "BudgetExceededError": (
        (),
        {"limit": "tokens", "key": "c1", "requested": 10.0, "remaining": 2.5, "provider": "p"},
    ),
    "NoReplyError": (("c1", (Missing("a", "failed", "boom", None, "a", "m1"),)), {}),
    "LLMError": (("down",), {"provider": "p", "correlation_id": "c"}),
    "ProviderError": (
        (),
        {"provider": "p", "status": 503, "request_id": "r", "excerpt": "busy", "retry_after": 1.5},
    ),
    "AllProvidersFailedError": ((), {}),  # filled below: it takes the errors it gathers
}


def _built(cls: type[GenieError]) -> GenieError:
    # A subclass takes the arguments of the nearest class that says what its own are.
    name = next((c.__name__ for c in cls.__mro__ if c.__name__ in _ARGUMENTS), "")
    args, kwargs = _ARGUMENTS.get(name, (("what went wrong",), {}))
    if name == "AllProvidersFailedError":
        args = ([LLMError("down", provider="a")],)
    try:
        return cls(*args, **kwargs)
    except TypeError as exc:  # a new error with arguments of its own: list them above
        raise AssertionError(f"give {cls.__name__}'s arguments in _ARGUMENTS: {exc}") from exc


def _parts(value: object) -> object:
    """``value`` with each exception in it as its type, arguments and attributes (exceptions
    compare by identity)."""
    if isinstance(value, BaseException):
        return type(value), value.args, _parts(vars(value))
    if isinstance(value, dict):
        return {key: _parts(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_parts(item) for item in value]
    return value


@pytest.mark.parametrize("cls", _every_error(), ids=lambda cls: cls.__name__)
def test_every_error_pickles_as_itself(cls: type[GenieError]) -> None:
    error = _built(cls)
    error.add_note("raised in a handler's process")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is cls
    assert (str(again), again.args) == (str(error), error.args)
    assert _parts(again) == _parts(error)


class Work(Payload):
    message_type = "errors.work"
    n: int


class Recalls(BaseAgent):
    """Raises in its process what a handler's memory call raises for a value it cannot keep."""

    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        raise MemoryArgumentError("notes", "kv.set", "value", "is a set, which JSON cannot hold")


async def test_a_process_handlers_genie_error_reaches_the_runtime_as_itself() -> None:
    """It reached the runtime as an ``AgentError`` saying it could not cross back, and was
    retried as any failure."""
    options = AgentOptions(offload="process", retry=RetryPolicy(attempts=3, backoff=0))
    async with Runtime(processes=1) as rt:
        rt.add(Recalls("recalls"), options=options)
        result = await rt.ask(rt.message(Work(n=1), recipient="recalls"), timeout=30)
        assert result.replies == ()
    [letter] = rt.dead_letters
    assert (letter.error_type, letter.attempts) == ("MemoryArgumentError", 1)
    assert letter.reason == (
        "MemoryArgumentError: memory 'notes': kv.set: argument 'value' is a set, which JSON "
        "cannot hold"
    )


_Again = Callable[[GenieError], Any]


def _round_trip(error: GenieError) -> Any:
    return pickle.loads(pickle.dumps(error))


def _named(again: _Again) -> str:
    return getattr(again, "__name__", "pickle").strip("_")


class Coded(GenieError):
    """A user's error keeping a part in a slot of its own."""

    __slots__ = ("code",)
    attempts: list[dict[str, object]]  # set on it, in its __dict__

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


@pytest.mark.parametrize("again", [copy.copy, copy.deepcopy, _round_trip], ids=_named)
def test_an_error_keeps_its_slots_and_what_refers_back_to_it(again: _Again) -> None:
    """A part that refers back to its error (an attempt's record that names the error) was
    rebuilt before the error was, for pickle and deepcopy: pickle failed to load it, deepcopy
    made two errors of one. A user's error lost the value in its ``__slots__``."""
    error = Coded("declined", code=402)
    error.attempts = [{"error": error, "at": 1}]
    copied = again(error)
    assert type(copied) is Coded
    assert (copied.args, copied.code) == (("declined",), 402)
    [attempt] = copied.attempts
    if again is copy.copy:  # shallow: the part itself, as for any exception
        assert attempt["error"] is error
    else:
        assert attempt["error"] is copied
