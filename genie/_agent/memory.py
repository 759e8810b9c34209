"""What a handler remembers, reached through ``ctx.memory(name)`` (``genie.memory`` has the
stores): a key-value store, episodic memory per session, semantic memory over embeddings and
long-term facts with supersession.

A ``MemoryStore`` keeps the entries and knows nothing of policies; ``Memory`` is what a
handler holds: the store's four areas, each write handed to a ``Gate`` first (the runtime's
judges it as a ``memory_write`` message and audits it; a unit test's lets everything
through) and each read shown to it after.

What a call is given is checked here, before the gate and the store see it: an argument of
another type than the call takes (a key of 5, a meta that is a list), text that UTF-8 cannot
encode (a lone surrogate), and a value JSON would not read back as given (a key that is not
text, a set, NaN), are refused with a ``MemoryArgumentError`` naming the argument, on every
backend alike, rather than failing deep in one of them (SQLite, the NATS bucket's
names, an embedding provider's request) or making a policy fail closed.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from .._base.clock import spelt
from .._base.json_form import unfit_for_json
from .._base.nesting import MAX_DEPTH
from .._base.record import Record
from .._base.surrogates import lone_surrogate
from .._errors import ConfigurationError, MemoryArgumentError, shown
from .._message.payload import Classification

if TYPE_CHECKING:
    from ..llm._provider import Provider

__all__ = [
    "Episode",
    "Fact",
    "Gate",
    "Hit",
    "Memory",
    "MemoryStore",
    "Snapshot",
    "Summarising",
    "checked",
    "memory_of",
    "named_stores",
]


class Episode(Record):
    """One turn of a session: who spoke (``user``, ``assistant``, an agent's id) and what,
    and the classification it was written with."""

    role: str
    text: str
    classification: str = "internal"


class Snapshot(Record):
    """A session as a model should be shown it: the summary of its older turns, then the
    recent ones as they were. ``classification`` is the summary's: the highest of the turns
    it summarises."""

    summary: str
    recent: tuple[Episode, ...]
    classification: str = "internal"


class Hit(Record):
    """A semantic search's match: the entry, its cosine similarity to the query and the
    classification it was written with."""

    key: str
    text: str
    meta: Mapping[str, Any]
    score: float
    classification: str = "internal"


class Fact(Record):
    """A long-term fact about a user. Recording a fact for the same key supersedes the
    earlier one (kept in the history); ``recorded_at`` is the runtime clock's time."""

    user: str
    key: str
    value: str
    confidence: float
    source: str
    recorded_at: datetime
    classification: str = "internal"


class MemoryStore(Protocol):
    """Where one memory's entries live, ungoverned (``genie.memory.Store``).

    ``classification`` is what the written entry is classified as (the request's,
    judged with it), kept with the entry and given back with it by every read (``kv_get``:
    the value and its classification, None when there is none), so that a read is judged on
    what was kept. ``summarising`` is the handler's memory a session's older turns are
    summarised through, governed (``Summarising``)."""

    @property
    def summariser(self) -> Provider | None: ...

    def bind(self, name: str, durable_path: str | None) -> None:
        """The store is the runtime's memory ``name``; ``durable_path`` is the runtime's
        durable store file (``Runtime(store=...)``), which a persistent store without a path
        of its own keeps its tables in. A store is one memory: ``Store`` refuses a second
        name (``ConfigurationError``)."""
        ...

    async def aclose(self) -> None: ...

    async def kv_get(self, namespace: str, key: str) -> tuple[Any, str] | None: ...

    async def kv_set(self, namespace: str, key: str, value: Any, classification: str) -> None: ...

    async def kv_delete(self, namespace: str, key: str) -> bool: ...

    async def append(
        self,
        session: str,
        episode: Episode,
        classification: str,
        summarising: Summarising | None,
    ) -> bool:
        """True when the older half was summarised (None for ``summarising``: called outside
        a handler, ungoverned)."""
        ...

    async def snapshot(self, session: str) -> Snapshot: ...

    async def add(
        self, user: str, key: str, text: str, meta: Mapping[str, Any], classification: str
    ) -> None: ...

    async def search(self, user: str, query: str, k: int) -> list[Hit]: ...

    async def record(self, fact: Fact) -> None: ...

    async def current(self, user: str, key: str) -> Fact | None: ...

    async def current_all(self, user: str) -> list[Fact]: ...

    async def history(self, user: str, key: str) -> list[Fact]: ...


class Summarising(Protocol):
    """How a store summarises a session's older turns for the handler whose append passed
    the threshold: sending them to a model is a read of them by the agent, and keeping the
    summary a write, each judged and audited like any other (``MemoryDeniedError`` when a
    policy refuses: the store then leaves the turns as they are)."""

    def model(self, model: Provider, turns: Sequence[Episode]) -> Provider:
        """``model`` as the handler's ``ctx.llm``, its calls classified as the highest of
        ``turns`` (what they are sent), once reading them for it was judged."""
        ...

    def keep(self, summary: str, turns: Sequence[Episode]) -> None:
        """Judges keeping ``summary`` of ``turns``, classified as the highest of them."""
        ...


class Gate(Protocol):
    """What a handler's memory asks before a write and after a read (the runtime judges
    each as a message and audits it). ``write`` returns the classification the entry is
    stored with: ``classification`` when given (a summary: the turns'), else the request's;
    ``read`` is given the highest classification of the entries read (None when it found
    nothing: it is the request's). Either raises ``MemoryDeniedError`` when a policy refuses.
    ``llm`` is the handler's model for a call sending data of ``classification``."""

    def write(self, kind: str, key: str, text: str, classification: str | None = None) -> str: ...

    def read(self, kind: str, key: str, text: str, classification: str | None) -> None: ...

    def now(self) -> datetime: ...

    def llm(self, provider: Provider, classification: str) -> Provider: ...


def highest(classifications: Iterable[str]) -> str | None:
    """The highest of ``classifications`` (``secret`` above ``pii`` above ``internal`` above
    ``public``): what data read together is classified as; None for none."""
    return max(classifications, key=lambda c: Classification(c).rank, default=None)


def transcript(turns: Iterable[Episode]) -> str:
    """What a model or a policy reads of turns: one line each, who spoke and what."""
    return "\n".join(f"{t.role}: {t.text}" for t in turns)


def _text(value: Any) -> str:
    """What a policy reads of a value: the text itself, or its JSON (``json`` is loaded by the
    first handler that remembers, not by ``import genie``)."""
    import json

    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _entry_text(text: str, meta: Mapping[str, Any]) -> str:
    """What a policy reads of a semantic entry, written or read: its text, then its meta."""
    return f"{text}\n{_text(dict(meta))}"


def _fact_text(key: str, value: str, source: str) -> str:
    """What a policy reads of a fact, recorded or read: its key, value and source."""
    return f"{key}: {value} ({source})"


def _facts_text(facts: list[Fact]) -> str:
    """What a policy reads of the facts a read gives the agent."""
    return "\n".join(_fact_text(f.key, f.value, f.source) for f in facts)


def _refused(
    memory: str | None, call: str, argument: str, text: str, at: int, where: str = ""
) -> MemoryArgumentError:
    """The error for ``text`` (``where`` in the argument's value, if not the argument itself)
    holding a lone surrogate at ``at``."""
    what = f"{where}, {shown(text)}," if where else shown(text)
    return MemoryArgumentError(
        memory,
        call,
        argument,
        f"is not valid UTF-8 text: {what} holds a lone surrogate "
        f"(U+{ord(text[at]):04X} at index {at})",
    )


def _check_texts(memory: str | None, call: str, **texts: str) -> tuple[str, ...]:
    """The text arguments ``texts`` as plain ``str``, in order; refuses one that is no text, or
    that UTF-8 cannot encode, naming it.

    A subclass of ``str`` (an enum's member) is text, and is kept as the text it holds, so that
    every backend gives back a ``str`` and the gate judges the key the store keeps (``class
    Kind(str, Enum)`` formats as ``Kind.NOTES``, and holds ``notes``)."""
    plain = []
    for argument, text in texts.items():
        if not isinstance(text, str):  # a key of 5 would be stored as another kind of key
            raise MemoryArgumentError(
                memory, call, argument, f"is not text (a str): got {type(text).__name__}"
            )
        if (at := lone_surrogate(text)) is not None:
            raise _refused(memory, call, argument, text, at)
        plain.append(str.__str__(text))  # the text itself, whatever the subclass's __str__
    return tuple(plain)


def _check_value(memory: str, call: str, argument: str, value: object) -> None:
    """Refuses, with a ``MemoryArgumentError`` naming where (``value['notes'][2]``), a value
    JSON would not read back as it was given or a reader could not read: a key that is not
    text (``{1: "a"}`` came back as ``{"1": "a"}``), a type JSON has no form for (a ``set``,
    an object), NaN or infinity (no JSON has them: a store's reader would refuse the file, a
    bucket's value), an integer longer than Python writes as text, a value holding itself,
    lists and mappings nested deeper than ``MAX_DEPTH`` (a reader, a policy, a store recurses
    into each level), or a string or key that UTF-8 cannot encode. A tuple is kept, as JSON
    writes it, as a list."""
    found = unfit_for_json(value, MAX_DEPTH)
    if found is None:
        return
    item, where = found.item, _where(argument, found.path)
    if isinstance(item, str) and (at := lone_surrogate(item)) is not None:
        # Quoted as a text argument is, with where it is when it is not the argument itself.
        what = f"a key of {where}" if found.kind == "key" else where if found.path else ""
        raise _refused(memory, call, argument, item, at, what)
    kind = type(item).__name__
    if found.kind == "key":
        problem = (
            f"has a key that is not text (a str) in {where}: got {kind}, which JSON keeps as "
            "text (another key)"
        )
    elif found.kind == "number":
        problem = f"has no JSON form: it holds NaN or infinity ({item!r} at {where})"
    elif found.kind == "integer":
        problem = (
            f"holds an integer of more than {sys.get_int_max_str_digits()} digits (at {where}), "
            "which Python does not write as text (sys.get_int_max_str_digits())"
        )
    elif found.kind == "itself":
        problem = f"has no JSON form: it holds itself (at {where})"
    elif found.kind == "deep":
        problem = f"is nested deeper than {MAX_DEPTH} levels of lists and mappings (at {where})"
    else:
        problem = (
            f"has no JSON form: it holds a value of type {kind} (at {where}); JSON holds "
            "mappings with text keys, lists, text, finite numbers, booleans and None"
        )
    raise MemoryArgumentError(memory, call, argument, problem)


def _where(argument: str, path: tuple[object, ...]) -> str:
    """Where an item is in an argument's value (``value['notes'][2]``): a path of more than
    eight steps (only nesting too deep has one, as a rule) cut to its first six."""
    steps = path if len(path) <= 8 else path[:6]
    spelt = "".join(f"[{shown(step) if isinstance(step, str) else repr(step)}]" for step in steps)
    return argument + spelt + ("..." if len(steps) < len(path) else "")


class KeyValues:
    """Values by namespace and key; a value is anything JSON can hold."""

    __slots__ = ("_gate", "_name", "_store")

    def __init__(self, name: str, store: MemoryStore, gate: Gate) -> None:
        self._name, self._store, self._gate = name, store, gate

    async def get(self, namespace: str, key: str) -> Any:
        namespace, key = _check_texts(self._name, "kv.get", namespace=namespace, key=key)
        found = await self._store.kv_get(namespace, key)
        if found is None:
            self._gate.read("kv", f"{namespace}/{key}", "", None)
            return None
        value, level = found
        self._gate.read("kv", f"{namespace}/{key}", _text(value), level)
        return value

    async def set(self, namespace: str, key: str, value: Any) -> None:
        namespace, key = _check_texts(self._name, "kv.set", namespace=namespace, key=key)
        # A value JSON cannot hold is refused before it is judged.
        _check_value(self._name, "kv.set", "value", value)
        text = _text(value)
        level = self._gate.write("kv", f"{namespace}/{key}", text)
        await self._store.kv_set(namespace, key, value, level)

    async def delete(self, namespace: str, key: str) -> bool:
        namespace, key = _check_texts(self._name, "kv.delete", namespace=namespace, key=key)
        self._gate.write("kv_delete", f"{namespace}/{key}", "")
        return await self._store.kv_delete(namespace, key)


class Episodes:
    """A session's turns; past the store's threshold the older half is summarised through
    the handler's model (``ctx.llm``, so the summary counts against the request's budget)."""

    __slots__ = ("_gate", "_name", "_store")

    def __init__(self, name: str, store: MemoryStore, gate: Gate) -> None:
        self._name, self._store, self._gate = name, store, gate

    async def append(self, session: str, text: str, role: str = "user") -> bool:
        """Keep one turn; True when this append summarised the older half."""
        session, text, role = _check_texts(
            self._name, "episodes.append", session=session, text=text, role=role
        )
        level = self._gate.write("episode", session, text)
        summarising = _Summarising(self._gate, session)
        return await self._store.append(session, Episode(role, text, level), level, summarising)

    async def snapshot(self, session: str) -> Snapshot:
        (session,) = _check_texts(self._name, "episodes.snapshot", session=session)
        snap = await self._store.snapshot(session)
        shown = [snap.summary, *(f"{e.role}: {e.text}" for e in snap.recent)]
        levels = [snap.classification] if snap.summary else []
        level = highest([*levels, *(e.classification for e in snap.recent)])
        self._gate.read("episode", session, "\n".join(shown), level)
        return snap


class _Summarising:
    """A session's summary as a handler's memory governs it (``Summarising``): the turns
    read out to the model as a ``summary`` read of the session, the summary kept as a
    ``summary`` write."""

    __slots__ = ("_gate", "_session")

    def __init__(self, gate: Gate, session: str) -> None:
        self._gate, self._session = gate, session

    def model(self, model: Provider, turns: Sequence[Episode]) -> Provider:
        # What the model is sent is the turns as they were written, whatever the request
        # whose append passed the threshold: a residency rule must see that classification.
        level = highest(t.classification for t in turns) or "internal"
        self._gate.read("summary", self._session, transcript(turns), level)
        return self._gate.llm(model, level)

    def keep(self, summary: str, turns: Sequence[Episode]) -> None:
        # The summary holds what the turns held: judged as their classification, as the
        # backend keeps it (the highest of them and the summary before).
        level = highest(t.classification for t in turns) or "internal"
        self._gate.write("summary", self._session, summary, level)


class Semantic:
    """Texts per user, found again by meaning: the store's embedder turns each into a
    vector, and ``search`` ranks them by cosine similarity to the query's."""

    __slots__ = ("_gate", "_name", "_store")

    def __init__(self, name: str, store: MemoryStore, gate: Gate) -> None:
        self._name, self._store, self._gate = name, store, gate

    async def add(
        self, user: str, key: str, text: str, meta: Mapping[str, Any] | None = None
    ) -> None:
        user, key, text = _check_texts(self._name, "semantic.add", user=user, key=key, text=text)
        # Any mapping, kept as the dict it holds; None is none. Nothing else is taken for a
        # mapping: not a list of pairs (dict() would make one), not 0 or "" (falsy, not none).
        if meta is not None and not isinstance(meta, Mapping):
            raise MemoryArgumentError(
                self._name,
                "semantic.add",
                "meta",
                "is not a mapping (a dict, or another collections.abc.Mapping): got "
                f"{type(meta).__name__}",
            )
        given = {} if meta is None else dict(meta)
        _check_value(self._name, "semantic.add", "meta", given)
        shown_entry = _entry_text(text, given)
        level = self._gate.write("semantic", f"{user}#{key}", shown_entry)
        await self._store.add(user, key, text, given, level)

    async def search(self, user: str, query: str, k: int = 5) -> list[Hit]:
        user, query = _check_texts(self._name, "semantic.search", user=user, query=query)
        # A count of hits: True is an int to Python (it found one hit), and 2.5 or "3" raised
        # a bare TypeError, here or in the store.
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise MemoryArgumentError(
                self._name,
                "semantic.search",
                "k",
                f"must be a whole number of at least 1, not {spelt(k)}",
            )
        hits = await self._store.search(user, query, k)
        # The meta too: the agent is given all of each hit.
        shown = "\n".join(_entry_text(h.text, h.meta) for h in hits)
        self._gate.read("semantic", user, shown, highest(h.classification for h in hits))
        return hits


class Facts:
    """Long-term facts per user: ``record`` supersedes the key's earlier fact, which stays
    in its ``history``."""

    __slots__ = ("_gate", "_name", "_store")

    def __init__(self, name: str, store: MemoryStore, gate: Gate) -> None:
        self._name, self._store, self._gate = name, store, gate

    async def record(
        self, user: str, key: str, value: str, *, confidence: float = 1.0, source: str = ""
    ) -> Fact:
        user, key, value, source = _check_texts(
            self._name, "facts.record", user=user, key=key, value=value, source=source
        )
        # A number from 0 to 1: not "0.5", and not True (an int to Python, but no confidence);
        # NaN fails the range. An int is kept as the float it is, as a SQLite row reads it back.
        if (
            isinstance(confidence, bool)
            or not isinstance(confidence, int | float)
            or not 0.0 <= confidence <= 1.0
        ):
            raise MemoryArgumentError(
                self._name,
                "facts.record",
                "confidence",
                f"must be a number between 0 and 1, not {spelt(confidence)}",
            )
        level = self._gate.write("fact", f"{user}/{key}", _fact_text(key, value, source))
        fact = Fact(user, key, value, float(confidence), source, self._gate.now(), level)
        await self._store.record(fact)
        return fact

    async def current(self, user: str, key: str) -> Fact | None:
        user, key = _check_texts(self._name, "facts.current", user=user, key=key)
        fact = await self._store.current(user, key)
        self._gate_facts(f"{user}/{key}", [] if fact is None else [fact])
        return fact

    async def current_all(self, user: str) -> list[Fact]:
        (user,) = _check_texts(self._name, "facts.current_all", user=user)
        facts = await self._store.current_all(user)
        self._gate_facts(user, facts)
        return facts

    async def history(self, user: str, key: str) -> list[Fact]:
        user, key = _check_texts(self._name, "facts.history", user=user, key=key)
        facts = await self._store.history(user, key)
        self._gate_facts(f"{user}/{key}", facts)
        return facts

    def _gate_facts(self, key: str, facts: list[Fact]) -> None:
        """Show the gate the facts a read gives the agent."""
        self._gate.read("fact", key, _facts_text(facts), highest(f.classification for f in facts))


class Memory:
    """One memory as a handler uses it (``ctx.memory(name)``): ``kv``, ``episodes``,
    ``semantic``, ``facts``. Every write passes the gate before it is stored."""

    __slots__ = ("episodes", "facts", "kv", "name", "semantic")

    def __init__(self, name: str, store: MemoryStore, gate: Gate) -> None:
        self.name = name
        self.kv = KeyValues(name, store, gate)
        self.episodes = Episodes(name, store, gate)
        self.semantic = Semantic(name, store, gate)
        self.facts = Facts(name, store, gate)


def checked(
    memory: Memory,
    check: Callable[[], None],
    guard: Callable[[], AbstractAsyncContextManager[None]],
) -> Memory:
    """``memory`` whose every read and write first calls ``check``, which raises once the
    handler may no longer reach the runtime (a thread its delivery gave up): a memory taken in
    time is refused late all the same. Every call of its store runs in ``guard``, which ends
    it, refused, when the handler's thread is given up meanwhile."""
    store = cast("MemoryStore", _Guarded(memory.kv._store, guard))
    return Memory(memory.name, store, _Checked(memory.kv._gate, check))


class _Guarded:
    """A store whose every call awaited runs in ``guard`` (``checked``); the rest is the
    store's own."""

    __slots__ = ("_guard", "_store")

    def __init__(
        self, store: MemoryStore, guard: Callable[[], AbstractAsyncContextManager[None]]
    ) -> None:
        self._store, self._guard = store, guard

    def __getattr__(self, name: str) -> object:
        call = getattr(self._store, name)
        if not inspect.iscoroutinefunction(call):
            return call

        @functools.wraps(call)
        async def guarded(*args: object, **kwargs: object) -> object:
            async with self._guard():
                return await call(*args, **kwargs)

        return guarded


class _Checked:
    """A gate that asks ``check`` before it judges a read or a write."""

    __slots__ = ("_check", "_gate")

    def __init__(self, gate: Gate, check: Callable[[], None]) -> None:
        self._gate, self._check = gate, check

    def write(self, kind: str, key: str, text: str, classification: str | None = None) -> str:
        self._check()
        return self._gate.write(kind, key, text, classification)

    def read(self, kind: str, key: str, text: str, classification: str | None) -> None:
        self._check()
        self._gate.read(kind, key, text, classification)

    def now(self) -> datetime:
        return self._gate.now()

    def llm(self, provider: Provider, classification: str) -> Provider:
        return self._gate.llm(provider, classification)


# What a store answers to: ``MemoryStore``'s calls, read off the protocol so the check keeps
# up with it.
_STORE_CALLS = tuple(call for call in vars(MemoryStore) if not call.startswith("_"))


def _not_a_store(store: object) -> str | None:
    """What is wrong with ``store`` as a memory store, or None: a ``genie.memory.Store``, or
    another object with every ``MemoryStore`` call (a program's own store), is one."""
    if isinstance(store, type):  # the class has the calls, but keeps nothing
        return f"the class {store.__qualname__} itself (make one: {store.__qualname__}(...))"
    missing = [call for call in _STORE_CALLS if not hasattr(store, call)]
    if not missing:
        return None
    spelt = repr(store)
    given = f"{type(store).__name__} ({spelt if len(spelt) <= 40 else spelt[:37] + '...'})"
    if len(missing) < len(_STORE_CALLS):  # meant as a store, but not all of one
        given += f": it has no {', '.join(missing)}"
    return given


def named_stores(
    memory: MemoryStore | Mapping[str, MemoryStore] | None, where: str
) -> dict[str, MemoryStore]:
    """``memory`` by name (one store alone is ``"default"``), each checked where it is given
    (``where``: ``Runtime(memory=...)``), so a mistake is a ``ConfigurationError`` here, not a
    failure at the first call that reaches it. A name is kept in every row of a SQLite file and
    every key of a NATS bucket, and names the recipient its writes are judged for
    (``memory:NAME``): it must be text, not empty, that UTF-8 can encode. A store must be a
    ``genie.memory.Store`` or another object with ``MemoryStore``'s calls (a string such as
    ``"sqlite"`` or a path failed at the first call with an ``AttributeError``)."""
    alone = not isinstance(memory, Mapping)
    stores: Mapping[str, MemoryStore]
    if isinstance(memory, Mapping):
        stores = memory
    else:
        stores = {} if memory is None else {"default": memory}
    for name, store in stores.items():
        if not isinstance(name, str):
            raise ConfigurationError(
                f"{where}: a memory name must be text, not {type(name).__name__} ({name!r})"
            )
        if not name:
            raise ConfigurationError(
                f"{where}: a memory name must not be empty (ctx.memory(name) names the store; "
                "one store given alone is 'default')"
            )
        if (at := lone_surrogate(name)) is not None:
            raise ConfigurationError(
                f"{where}: memory name {shown(name)} is not valid UTF-8 text: it holds a lone "
                f"surrogate (U+{ord(name[at]):04X} at index {at})"
            )
        if (given := _not_a_store(store)) is not None:
            what = "the memory store" if alone else f"memory {shown(name)}"
            raise ConfigurationError(
                f"{where}: {what} must be a genie.memory.Store (or another object with every "
                f"genie.memory.MemoryStore call), not {given}"
            )
    return dict(stores)


def memory_of(stores: Mapping[str, MemoryStore], name: str, where: str) -> tuple[str, MemoryStore]:
    """The memory ``name`` (``ctx.memory(name)``) as plain text, and its store; a name that is
    no text is a ``MemoryArgumentError`` (a list, 5), one the runtime has not a
    ``ConfigurationError`` naming the ones it has."""
    (name,) = _check_texts(None, "ctx.memory", name=name)
    store = stores.get(name)
    if store is None:
        known = ", ".join(sorted(stores)) or "none"
        raise ConfigurationError(f"no memory {shown(name)} in {where} (declared: {known})")
    return name, store
