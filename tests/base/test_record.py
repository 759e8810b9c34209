"""Genie's records keep the frozen dataclasses' behaviour they replaced (issue 19, import time).

Each record is compared with the frozen dataclass it was, rebuilt here from its own fields
(``dataclasses.make_dataclass``): the same repr, equality and hash for the same values, the
same refusal to change, and copies, pickles and ``replace`` that go through ``__init__``'s
checks as the dataclass's did.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import sys
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from genie import (
    AgentOptions,
    AuditRecord,
    AuditVerdict,
    BreakerPolicy,
    ConfigurationError,
    CorrelatorStatistics,
    DeadLetter,
    Decision,
    Event,
    GatherResult,
    Limits,
    MailboxStatistics,
    Message,
    Missing,
    PolicyStatistics,
    RetryPolicy,
    Runtime,
    ShutdownReport,
)
from genie._base.record import Record
from genie._runtime.transport import Delivery

from ..conftest import Echo, Ping

CORRELATOR_FIELDS = (
    "correlations_active",
    "gathers_pending",
    "gathers_complete",
    "gathers_partial",
    "gathers_timed_out",
    "late_replies",
)
MAILBOX_COUNTS = (
    "depth",
    "capacity",
    "max_concurrency",
    "active",
    "waiting_publishers",
    "high_water",
    "overdrafts",
    "handled",
    "failed",
)
# The fields in their order (the statistics endpoint's JSON keeps it).
MAILBOX = ("agent_id", *MAILBOX_COUNTS, "circuit")
MESSAGE = Message(type="ping", sender="a", recipient="b", payload=Ping(n=1))
AT = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)

# Each record with two different sets of values for its fields.
SAMPLES: list[tuple[type[Record], dict[str, Any], dict[str, Any]]] = [
    (Decision, {"allowed": True}, {"allowed": False, "policy": "rbac", "reason": "no"}),
    (Limits, {}, {"max_hops": 3, "correlation_tokens": 10, "correlation_cost": 0.5}),
    (RetryPolicy, {}, {"attempts": 3, "retry_on": (ValueError,)}),
    (BreakerPolicy, {}, {"failure_threshold": 2, "reset_after": 1.5}),
    (AgentOptions, {}, {"mailbox_size": 8, "breaker": None, "overflow": "shed"}),
    (
        PolicyStatistics,
        {"policies": (), "allowed": 0, "denied": {}},
        {"policies": ("rbac",), "allowed": 2, "denied": {"rbac": 1}},
    ),
    (
        AuditRecord,
        {"at": AT, "actor": "rbac", "action": "denied", "target": "b", "details": {}},
        {"at": AT, "actor": "pii", "action": "denied", "target": "c", "details": {"k": "v"}},
    ),
    (AuditVerdict, {"ok": True, "rows": 3}, {"ok": False, "rows": 2, "line": 2, "recovered": (1,)}),
    (
        DeadLetter,
        {
            "message": MESSAGE,
            "agent_id": "b",
            "kind": "failed",
            "reason": "boom",
            "error_type": "ValueError",
            "attempts": 1,
            "at": AT,
        },
        {
            "message": MESSAGE,
            "agent_id": None,
            "kind": "unrouted",
            "reason": "nobody",
            "error_type": None,
            "attempts": 0,
            "at": AT,
        },
    ),
    (
        Event,
        {"kind": "published", "at": 1.0, "correlation_id": "c"},
        {"kind": "denied", "at": 2.0, "correlation_id": "c", "policy": "rbac", "reason": "no"},
    ),
    (
        ShutdownReport,
        {"drained": True, "cancelled_running": 0, "discarded_queued": 0, "by_agent": {}},
        {
            "drained": False,
            "cancelled_running": 1,
            "discarded_queued": 2,
            "by_agent": {"b": 3},
            "cancelled_timers": 1,
        },
    ),
    (Delivery, {"message": MESSAGE, "recipient": "b"}, {"message": MESSAGE, "recipient": "c"}),
    (
        Missing,
        {"key": "b", "kind": "failed", "reason": "boom"},
        {"key": "c", "kind": "denied", "reason": "no", "policy": "rbac", "message_id": "m"},
    ),
    (
        GatherResult,
        {"correlation_id": "c", "status": "complete", "replies": (MESSAGE,), "missing": ()},
        {
            "correlation_id": "c",
            "status": "partial",
            "replies": (),
            "missing": (Missing("b", "shed", "full"),),
        },
    ),
    (
        CorrelatorStatistics,
        dict.fromkeys(CORRELATOR_FIELDS, 0),
        dict.fromkeys(CORRELATOR_FIELDS, 1),
    ),
    (
        MailboxStatistics,
        dict.fromkeys(MAILBOX_COUNTS, 0) | {"agent_id": "b", "circuit": "closed"},
        dict.fromkeys(MAILBOX_COUNTS, 2) | {"agent_id": "b", "circuit": "open"},
    ),
]
IDS = [cls.__name__ for cls, _, _ in SAMPLES]


def as_dataclass(cls: type[Record]) -> Any:
    """The frozen dataclass ``cls`` was: its fields, in order, with the same defaults."""
    import inspect

    params = inspect.signature(cls).parameters.values()
    fields = [
        (p.name, Any)
        if p.default is inspect.Parameter.empty
        else (p.name, Any, dataclasses.field(default=p.default))
        for p in params
    ]
    ref = dataclasses.make_dataclass(cls.__name__, fields, frozen=True)
    ref.__qualname__ = cls.__qualname__
    return ref


@pytest.mark.parametrize(("cls", "one", "other"), SAMPLES, ids=IDS)
def test_a_record_shows_compares_and_hashes_as_its_dataclass(
    cls: type[Record], one: dict[str, Any], other: dict[str, Any]
) -> None:
    ref = as_dataclass(cls)
    a, b, a2 = cls(**one), cls(**other), cls(**one)
    assert (repr(a), repr(b)) == (repr(ref(**one)), repr(ref(**other)))
    assert a == a2
    assert a is not a2
    assert (a != a2) is False
    assert a != b
    assert a != ref(**one)
    assert a.__eq__(object()) is NotImplemented
    if str(sys.modules[cls.__module__].__file__).endswith(".py"):  # mypyc's classes are final
        subclass = type(cls.__name__, (cls,), {"__slots__": ()})  # same name, fields, values
        assert a != subclass(**one)
    hashable = all(not isinstance(v, dict) for v in one.values())
    if hashable:
        assert hash(a) == hash(a2) == hash(ref(**one))
        assert len({a, a2}) == 1
    else:  # a dict field makes the dataclass unhashable too
        with pytest.raises(TypeError):
            hash(ref(**one))
        with pytest.raises(TypeError):
            hash(a)
    assert not dataclasses.is_dataclass(cls)  # built without code generation
    match a:
        case cls(first):  # positional patterns follow the fields, as on a dataclass
            assert first == getattr(a, cls.__match_args__[0])
        case _:
            pytest.fail("no match")


@pytest.mark.parametrize(("cls", "one", "other"), SAMPLES, ids=IDS)
def test_a_record_cannot_be_changed(
    cls: type[Record], one: dict[str, Any], other: dict[str, Any]
) -> None:
    a = cls(**one)
    name = cls.__match_args__[0]
    for change in (
        lambda: setattr(a, name, 1),
        lambda: delattr(a, name),
        lambda: setattr(a, "extra", 1),  # no __dict__ to hide it in either
        lambda: object.__getattribute__(a, "__dict__"),
    ):
        with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):
            change()
    assert cls(**one) == a


@pytest.mark.parametrize(("cls", "one", "other"), SAMPLES, ids=IDS)
def test_copies_and_pickles_are_whole(
    cls: type[Record], one: dict[str, Any], other: dict[str, Any]
) -> None:
    b = cls(**other)
    for back in (copy.copy(b), copy.deepcopy(b), pickle.loads(pickle.dumps(b))):
        assert back == b
        assert type(back) is cls


def test_replace_goes_through_the_checks_of_a_new_record() -> None:
    options = AgentOptions(mailbox_size=4, fallback="f")
    assert options.replace(max_concurrency=2) == AgentOptions(4, 2, fallback="f")
    assert options.replace() == options
    assert options.mailbox_size == 4
    with pytest.raises(ConfigurationError, match="mailbox_size"):
        options.replace(mailbox_size=0)
    with pytest.raises(TypeError, match="no field 'mailbox'"):
        options.replace(mailbox=3)
    with pytest.raises(ConfigurationError, match="correlation_cost"):
        Limits().replace(correlation_cost=float("inf"))


def test_an_unknown_field_is_named_with_the_closest_one() -> None:
    """As every other option of genie's names an unknown key (``did_you_mean``): a name
    close to a field's, or one genie uses elsewhere for it (a full mailbox is refused as
    "full (capacity 1)", a fault sets ``capacity:agent=1``), suggests the field."""
    with pytest.raises(
        TypeError, match=r"^AgentOptions has no field 'capacity' \(did you mean 'mailbox_size'\?\)$"
    ):
        AgentOptions(capacity=1)  # type: ignore[call-arg]
    with pytest.raises(
        TypeError, match=r"^AgentOptions has no field 'mailbox' \(did you mean 'mailbox_size'\?\)$"
    ):
        AgentOptions(mailbox=1)  # type: ignore[call-arg]
    with pytest.raises(
        TypeError,
        match=r"^AgentOptions has no field 'max_concurency' \(did you mean 'max_concurrency'\?\)$",
    ):
        AgentOptions().replace(max_concurency=2)
    with pytest.raises(TypeError, match=r"^RetryPolicy has no field 'zzz'$"):
        RetryPolicy(zzz=1)  # type: ignore[call-arg]


def test_default_options_are_equal_and_their_policies_frozen() -> None:
    # The dataclass made a new RetryPolicy and BreakerPolicy per options object; the record
    # shares one, which nothing can tell apart as they cannot change.
    a, b = AgentOptions(), AgentOptions()
    assert a == b
    assert a.retry == RetryPolicy()
    assert a.breaker == BreakerPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.retry.attempts = 5  # type: ignore[misc]  # frozen: refused
    assert AgentOptions(breaker=None).breaker is None


def test_the_statistics_endpoint_dict_is_what_dataclasses_asdict_gave() -> None:
    async def main() -> None:
        async with Runtime([Echo("echo")]) as rt:
            await rt.ask(rt.message(Ping(n=1), recipient="echo"))
            stats = rt.statistics()
        plain = stats.as_dict()
        assert plain["handled"] == stats.handled
        assert plain["delivered"] == stats.delivered
        assert plain["policies"] == {
            "policies": (),
            "allowed": stats.policies.allowed,
            "denied": {},
        }
        echo = stats.mailboxes["echo"]
        # In the dataclasses' field order, as `dataclasses.asdict` gave them.
        assert list(plain["mailboxes"]["echo"].items()) == [
            (name, getattr(echo, name)) for name in MAILBOX
        ]
        assert plain["mailboxes"]["echo"]["handled"] == 1
        assert list(plain["correlations"].items()) == [
            (name, getattr(stats.correlations, name)) for name in CORRELATOR_FIELDS
        ]
        assert json.loads(json.dumps(plain))["mailboxes"]["echo"]["agent_id"] == "echo"

    anyio.run(main)
