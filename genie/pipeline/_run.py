"""A loaded pipeline: builds a runtime from the file, and runs one request through it."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import ValidationError

from .._agent.agent import Agent
from .._agent.catalogue import AgentSpec, import_object
from .._agent.memory import MemoryStore
from .._agent.tools import ToolServer
from .._base.clock import Clock
from .._base.files import FileRefusedError, decode_utf8, read_bounded
from .._base.nesting import json_depth_exceeds
from .._base.resilience import RetryPolicy
from .._base.strict_json import loads_strict
from .._base.yamlconf import ConfigFileError, parse_yaml
from .._errors import ConfigurationError, InvalidMessageError, WouldBlockError, described
from .._message.envelope import Message
from .._message.payload import Payload, invalid_message
from .._message.types import MessageTypes, too_deep
from .._runtime.audit import AuditSink
from .._runtime.correlator import GatherResult, Missing
from .._runtime.deadletter import DeadLetter
from .._runtime.losses import Cancelled, Lost
from .._runtime.options import AgentOptions
from .._runtime.policy import Limits, Policy
from .._runtime.runtime import Runtime
from .._runtime.statistics import RuntimeStatistics
from ._gather import Gathered, GatherNode, missing_parts
from ._graph import Graph
from ._schema import MAX_INPUT_BYTES, AgentDecl, PipelineFile
from ._tally import Denial, RunStatistics, RunTally, from_runtime, handled_elsewhere
from ._workflow import Workflow, WorkflowNode, WorkflowOutcome

if TYPE_CHECKING:
    from .._runtime.observe.metrics import Metrics
    from .._runtime.transport import Transport
    from ..llm._config import LLMConfig, LLMStacks
    from ..memory._backends import Backend
    from ..memory._embed import Embedder

__all__ = ["InputError", "Pipeline", "RunResult"]

RunStatus = Literal[
    "ok", "partial", "workflow_failed", "fallback", "denied", "failed", "timed_out", "no_output"
]


STDIN = "standard input"  # what --input - reads, in a refusal's words


class InputError(ConfigurationError):
    """The run's input cannot be read or does not fit the entry payload; ``line`` is the line
    of the input at fault, when known."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class RunResult:
    """How one request ended. ``status``: ``ok`` (the output arrived), ``partial`` (it
    arrived, built by a declared gather without some parts: ``missing`` names each, with why),
    ``workflow_failed`` (it arrived: a declared workflow's outcome that says it did not
    complete, its own ``status`` saying why: failed, rejected, timed_out, cancelled),
    ``fallback`` (a message to the caller that is not the output, e.g. a fallback notice or a
    reply of another type: ``missing`` names its sender and type),
    ``denied``, ``failed``, ``timed_out``, or ``no_output`` (everything finished without
    producing the output).

    ``stats`` counts this request only, as ``dead_letters`` and ``denials`` list it, when the
    result was made; ``runtime`` is the statistics of the whole runtime then (in a runtime
    that serves many requests, all of theirs)."""

    status: RunStatus
    correlation_id: str
    output: Message | None
    missing: tuple[Missing, ...]
    stats: RunStatistics
    runtime: RuntimeStatistics
    dead_letters: tuple[DeadLetter, ...] = field(default=())
    denials: tuple[Denial, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """The output arrived, and says the run succeeded (``ok`` or ``partial``)."""
        return self.status in ("ok", "partial")

    def as_json(self, tracebacks: bool = True) -> dict[str, Any]:
        """The ``genie run --json`` document (see docs/cli.md); without ``tracebacks``, the
        dead letters do not say where a handler raised (a served answer to a principal not
        allowed to see it)."""
        return {
            "status": self.status,
            "correlation_id": self.correlation_id,
            "output": None
            if self.output is None
            else {
                "type": self.output.type,
                "sender": self.output.sender,
                "payload": self.output.payload.model_dump(mode="json"),
            },
            "missing": [
                {
                    "key": m.key,
                    "kind": m.kind,
                    "reason": m.reason,
                    "policy": m.policy,
                    "agent": m.agent_id,
                }
                for m in self.missing
            ],
            "dead_letters": [
                {
                    "agent": d.agent_id,
                    "type": d.message.type,
                    "kind": d.kind,
                    "reason": d.reason,
                    **({"tracebacks": list(d.tracebacks)} if tracebacks else {}),
                }
                for d in self.dead_letters
            ],
            "denials": [
                {"type": d.type, "recipient": d.recipient, "policy": d.policy, "reason": d.reason}
                for d in self.denials
            ],
            "stats": self.stats.as_dict(),
        }


class Pipeline:
    """A validated pipeline file (see ``load_pipeline``). Each ``runtime()`` gets fresh agents,
    so runs never share state."""

    def __init__(
        self,
        path: Path,
        config: PipelineFile,
        specs: Mapping[str, AgentSpec],
        gathers: Mapping[str, type[Gathered]],
        policies: Sequence[Policy],
        retention_days: int | None,
        entry_model: type[Payload],
        graph: Graph,
        inputs: Callable[..., object] | None = None,
        llm: LLMConfig | None = None,
        workflows: Mapping[str, Workflow] | None = None,
    ) -> None:
        self.path = path
        # What fails every run without stopping it (a type no agent takes), as file:line:
        # key: reason; ``genie validate --strict`` refuses the file for them.
        self.warnings: tuple[str, ...] = ()
        # The entry's required fields its payload lacks and no declared input gives, each as
        # file:line: key: reason: a run without an input (or a served body) fails for them.
        self.unfilled: tuple[str, ...] = ()
        self.config = config
        self.specs = dict(specs)
        self.gathers = dict(gathers)
        self.policies = tuple(policies)
        self.retention_days = retention_days
        self.entry_model = entry_model
        self.graph = graph
        # simulation.inputs: called as inputs(rng, session, **params) -> the input text
        self.inputs = inputs
        self.llm = llm  # the checked llm: section, if the file has one
        self.workflows = dict(workflows or {})

    def llm_stacks(
        self, environ: Mapping[str, str] | None = None, *, metrics: Metrics | None = None
    ) -> LLMStacks | None:
        """The providers of the stacks this pipeline's agents name, built now from ``environ``
        (default: the process environment), so a missing key is a ``ConfigurationError``
        naming it before the run starts, not at the first call. A provider nothing uses needs
        no key (a memory's summariser counts as used). None when nothing calls a model. The
        caller closes them (``await stacks.aclose()``). With ``metrics`` (the runtime's), the
        stacks' calls, tokens, cost, caches and budgets are counted in its registry
        (``LLMMetrics``), so one scrape of the runtime shows them."""
        used = {name for decl in self.config.agents for name in _stacks_of(decl)}
        screen = self.config.governance and self.config.governance.classifier
        if screen:
            used.add(screen.stack)
        used |= {m.summariser for m in self.config.memory.values() if m.summariser}
        if self.llm is None or not used:
            return None
        from ..llm._config import build_stacks  # httpx: only for a pipeline that calls a model
        from ..llm._metrics import LLMMetrics

        stacks = {name: s for name, s in self.llm.stacks.items() if name in used}
        providers = {p for s in stacks.values() for p in s.providers}
        config = self.llm.model_copy(
            update={
                "stacks": stacks,
                "providers": {n: p for n, p in self.llm.providers.items() if n in providers},
            }
        )
        counted = None if metrics is None else LLMMetrics(metrics.registry)
        return build_stacks(config, environ, metrics=counted)

    @property
    def name(self) -> str:
        return self.config.name or self.path.stem

    def _options(self, decl: AgentDecl) -> AgentOptions:
        retry = RetryPolicy()
        if decl.retry is not None:
            retry = RetryPolicy(**decl.retry.model_dump())
        return AgentOptions(
            mailbox_size=decl.mailbox,
            max_concurrency=decl.concurrency,
            deadline=decl.deadline if decl.deadline is not None else self.config.limits.deadline,
            retry=retry,
            fallback=decl.fallback,
            overflow=decl.overflow,
            offload=decl.offload,
        )

    def runtime(
        self,
        *,
        audit: AuditSink | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
        policies: Sequence[Policy] = (),
        metrics: bool | Metrics = False,
        adapt: Callable[[Agent, AgentOptions], tuple[Agent, AgentOptions]] | None = None,
        llm: LLMStacks | None = None,
        transport: Transport | None = None,
        store: str | PathLike[str] | None = None,
        shared_memory: Backend | None = None,
        store_sync: float | Literal["always"] = 1.0,
    ) -> Runtime:
        """A runtime hosting fresh agents of this pipeline (plus ``policies`` after its own);
        ``metrics`` as for ``Runtime``. ``adapt`` may replace each agent (keeping its id) and its
        options before it is added (simulations inject faults this way). ``llm`` gives the
        agents their models (see ``llm_stacks``, whose stacks the caller closes); without it
        they are built here from the environment, and closed when the runtime stops. ``store``: a
        SQLite file that keeps the deliveries until they end, its writes brought to the disk
        as ``store_sync`` says (docs/durability.md), and naming this pipeline's file.
        ``shared_memory``: where the memories of ``backend: nats`` live (``NatsTransport.memory``,
        the bucket the processes of a scale-out share)."""
        built = None
        if llm is None:
            llm = built = self.llm_stacks()
        limits = self.config.limits
        prices = None
        if self.llm is not None:
            from ..llm._cost import PriceTable  # the file has an llm: section

            prices = PriceTable(prices=self.llm.prices)
        screen = self.config.governance and self.config.governance.classifier
        if screen and llm is not None:
            from ..policies._classifier import ClassifierPolicy, ModelClassifier

            classifier = ModelClassifier(llm[screen.stack], model=screen.model)
            policies = (
                *policies,
                ClassifierPolicy(
                    classifier,
                    applies_to=screen.applies_to,
                    fail=screen.fail,
                    budget=screen.budget,
                ),
            )
        # The agents first (their constructors, ``adapt``): one refused leaves the store, which
        # the runtime opens, untouched and free.
        made: list[tuple[Agent, list[str], AgentOptions]] = []
        for decl in self.config.agents:
            params = decl.params
            if decl.llm is not None:
                assert llm is not None  # an agent names a stack, so llm_stacks built it
                if isinstance(decl.llm, str):
                    params = {**params, "llm": llm[decl.llm]}
                else:  # a panel
                    params = {**params, "llm": [llm[name] for name in decl.llm]}
            agent: Agent = self.specs[decl.id].create(decl.id, params)
            if decl.risk is not None:
                agent.risk = decl.risk  # type: ignore[attr-defined]
            options = self._options(decl)
            if adapt is not None:
                agent, options = adapt(agent, options)
                if getattr(agent, "id", None) != decl.id:
                    # The file's routes, gathers and fallbacks name the declared id.
                    raise ConfigurationError(
                        f"adapt gave {agent!r} for agent {decl.id!r}: a replacement keeps the "
                        "id the pipeline routes to"
                    )
            made.append((agent, decl.subscribe, options))
        rt = Runtime(
            tools=self._tool_servers(),
            memory=self._memory_stores(llm, shared_memory),
            policies=(*self.policies, *policies),
            limits=Limits(
                max_hops=limits.max_hops,
                correlation_budget=limits.correlation_budget,
                correlation_tokens=limits.correlation_tokens,
                correlation_cost=limits.correlation_cost,
            ),
            clock=clock,
            audit=audit,
            seed=seed,
            retention=None if self.retention_days is None else timedelta(days=self.retention_days),
            metrics=metrics,
            prices=prices,
            transport=transport,
            store=store,
            store_sync=store_sync,
            store_pipeline=None if store is None else self.path,
        )
        if built is not None:
            rt.on_close(built.aclose)
        try:
            self._host(rt, made)
        except BaseException:
            rt._refused()  # never returned, so never closed: its store is given back
            raise
        return rt

    def _host(self, rt: Runtime, made: list[tuple[Agent, list[str], AgentOptions]]) -> None:
        """Adds the pipeline's agents, gathers, workflows and routes to ``rt``."""
        for agent, subscribe, options in made:
            rt.add(agent, subscribe=subscribe, options=options)
        for g in self.config.gathers:
            node = GatherNode(
                g.id,
                expect=g.expect.types or g.expect.senders,
                by="type" if g.expect.types else "sender",
                deadline=g.deadline,
                emit=self.gathers[g.id],
                to=g.emit.to,
                on_timeout=g.on_timeout,
                feeds=self.graph.feeds(g.id, by_sender=not g.expect.types),
                in_flight=rt.in_flight_of,
                ends=rt,
            )
            rt.add(node, subscribe=[Lost.message_type, Cancelled.message_type])
        for w in self.config.workflows:
            checked = self.workflows[w.id]
            flow = WorkflowNode(
                w.id,
                state=checked.state,
                steps=checked.steps,
                emit=checked.outcome,
                to=w.emit.to,
                deadline=w.deadline,
                clock=rt.clock,
                taken_before=rt.taken_before,
                watch_reply=rt.watch_reply,
                types=partial(_registered, rt.types),
                hosts=self.graph.nodes.__contains__,
                ends=rt,
            )
            rt.add(flow, subscribe=[Lost.message_type, Cancelled.message_type])
        for type_name, recipients in self.config.routes.items():
            for agent_id in recipients:
                rt.subscribe(agent_id, type_name)

    # --- input ---------------------------------------------------------------------------------
    def read_input(self, source: str | None = None, text: str | None = None) -> str | None:
        """The input text: ``text`` if given, else the file ``source`` (``-`` is stdin), else the
        entry's default file (relative to the pipeline). A file is read only if it is a regular
        file of at most ``entry.input.max_bytes``, in UTF-8 (a byte order mark is dropped), with
        no NUL character. Raises InputError naming the file (and the line, for its text)."""
        if text is not None:
            return text
        spec = self.config.entry.input
        limit = spec.max_bytes if spec is not None else MAX_INPUT_BYTES
        if source == "-":
            return self._read_stdin(limit)
        path = self.input_path(source)
        if path is None:
            return None
        try:
            raw = read_bounded(path, limit)
        except FileRefusedError as exc:
            if exc.size is not None:
                raise InputError(self._too_large(f"input {exc.path}", exc.problem, limit)) from None
            raise InputError(f"cannot read input {exc.path}: {exc.problem}") from None
        return _text(raw, os.fspath(path))

    def input_path(self, source: str | None = None) -> Path | None:
        """The file a run reads its input from: ``source``, else the entry's default (relative
        to the pipeline file), else None (no file: none given, or ``-``, standard input)."""
        if source == "-":
            return None
        if source is not None:
            return Path(source)
        spec = self.config.entry.input
        if spec is None or spec.default is None:
            return None
        return (self.path.parent / spec.default).resolve()

    def input_name(self, source: str | None = None) -> str:
        """How a refusal names the input ``read_input(source)`` reads: the file, ``standard
        input`` for ``-``, or the entry's default file."""
        if source == "-":
            return STDIN
        if source is None:
            spec = self.config.entry.input
            if spec is None or spec.default is None:
                return "the input"
            return os.fspath((self.path.parent / spec.default).resolve())
        return source

    def _read_stdin(self, limit: int) -> str:
        import sys

        if sys.stdin is None:  # Python's own, when the process was started without one (<&-)
            raise InputError(f"cannot read {STDIN} (--input -): it is closed")
        stream = getattr(sys.stdin, "buffer", None)  # a program may have given a text stream
        try:
            raw = (
                stream.read(limit + 1) if stream is not None else sys.stdin.read(limit + 1).encode()
            )
        except OSError as exc:  # a terminal gone, say
            raise InputError(f"cannot read {STDIN} (--input -): {exc.strerror or exc}") from None
        if len(raw) > limit:
            raise InputError(self._too_large(STDIN, f"is more than {limit:,} bytes", limit))
        return _text(raw, STDIN)

    def _too_large(self, what: str, problem: str, limit: int) -> str:
        return (
            f"{what} {problem}: the limit for an input of pipeline {self.name!r} is {limit:,} "
            f"bytes (entry.input.max_bytes in {os.fspath(self.path)})"
        )

    def entry_payload(self, text: str | None, where: str = "the input") -> Payload:
        """The entry payload: the file's ``payload`` plus the input mapped onto it."""
        entry = self.config.entry
        data = dict(entry.payload)
        spec = entry.input
        if text is not None:
            if spec is None:
                raise InputError(
                    f"pipeline {self.name!r} takes no input (its entry has no 'input')"
                )
            if spec.format == "text":
                assert spec.field is not None
                data[spec.field] = text
            elif json_depth_exceeds(text):  # YAML's flow style nests with brackets too
                problem = too_deep(entry.type)
                raise InputError(f"{where} does not fit the entry payload: {problem}")
            else:
                data.update(_parse_object(text, spec.format, where, spec.max_bytes))
        elif spec is not None and spec.format == "text":
            raise InputError(f"pipeline {self.name!r} needs an input (--input PATH or -)")
        if self.unfilled:  # nothing this run reads gives them
            raise InputError("\n".join(self.unfilled))
        try:
            return self.entry_model.model_validate(data)
        except ValidationError as exc:
            located = _located(exc, entry.type, where)
            if located is not None:
                raise located from exc
            problem = invalid_message(entry.type, exc, self.entry_model)
            raise InputError(f"{where} does not fit the entry payload: {problem}") from exc

    def request_payload(self, rt: Runtime, given: Mapping[str, Any]) -> Payload:
        """The entry payload a caller gives as a JSON object (a served request's body, an MCP
        tool call's arguments), over the entry's own values. The input's field holds the text
        ``--input`` gives ``genie run``, so a caller gives it as text: null there is refused
        naming the field, even where the payload type takes null for another shape (Go's bare
        question, its statement in the metadata), as the run would only fail for want of it.
        Raises ``InvalidMessageError``."""
        entry = self.config.entry
        data = {**entry.payload, **given}
        spec = entry.input
        field = spec.field if spec is not None and spec.format == "text" else None
        if field is not None and field in data and data[field] is None:
            problem = "must be the pipeline's input, as text, not null"
            raise InvalidMessageError(entry.type, field, problem)
        return rt.types.parse_payload(entry.type, data)

    def entry_message(
        self,
        rt: Runtime,
        payload: Payload,
        *,
        metadata: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
    ) -> Message:
        """The request message: the entry's metadata, then ``metadata`` over it (a server
        writes the caller's identity there); ``trace_id`` continues a caller's trace."""
        entry = self.config.entry
        ids = rt.message(payload, sender=entry.sender)
        fields: dict[str, Any] = {"trace_id": trace_id} if trace_id else {}
        # Go callers put trace_id in metadata and policies read it there; keep that contract.
        return rt.message(
            payload,
            sender=entry.sender,
            recipient=entry.to,
            id=ids.id,
            correlation_id=ids.correlation_id,
            metadata={"trace_id": trace_id or ids.trace_id, **entry.metadata, **(metadata or {})},
            **fields,
        )

    def _memory_stores(
        self, llm: LLMStacks | None, shared: Backend | None
    ) -> dict[str, MemoryStore]:
        """The file's ``memory:``, as stores (``genie.memory``, loaded only for them)."""
        if not self.config.memory:
            return {}
        from ..memory import HashingEmbedder, Store

        stores: dict[str, MemoryStore] = {}
        for name, decl in self.config.memory.items():
            embedder: Embedder = HashingEmbedder(decl.dimensions)
            if decl.embedder != "hashing":
                embedder = self._embedder(name, decl.embedder)
            summariser = None
            if decl.summariser is not None and llm is not None:
                summariser = llm[decl.summariser]
            backend: Literal["memory", "sqlite"] | Backend
            if decl.backend != "nats":
                backend = decl.backend
            elif shared is not None:
                backend = shared
            else:
                raise ConfigurationError(
                    f"{self.path}: memory.{name}.backend: nats is the memory the processes "
                    "of a scale-out share: run the pipeline with genie run --nats URL and "
                    "genie worker --nats URL"
                )
            stores[name] = Store(
                backend,
                path=None if decl.path is None else self.path.parent / decl.path,
                threshold=decl.threshold,
                embedder=embedder,
                summariser=summariser,
            )
        return stores

    def _embedder(self, memory: str, use: str) -> Embedder:
        """The embedder ``use`` (``module:callable``, checked when the file was loaded) makes
        for the memory ``memory``: what it raises, or makes that is no embedder, is named by
        the file and key, not found at the first semantic call."""
        where = f"{self.path}: memory.{memory}.embedder: {use}"
        try:
            made = import_object(use, self.path.parent)()
        except Exception as exc:
            raise ConfigurationError(f"{where} raised {described(exc)}") from exc
        if not isinstance(getattr(made, "name", None), str) or not callable(
            getattr(made, "embed", None)
        ):
            raise ConfigurationError(
                f"{where} made a {type(made).__name__}, not an embedder (one with a name and "
                "an async embed(texts), genie.memory.Embedder)"
            )
        return cast("Embedder", made)

    def _tool_servers(self) -> dict[str, ToolServer]:
        """The file's ``tools:``, as MCP servers (the ``mcp`` extra, loaded only for them)."""
        if not self.config.tools:
            return {}
        try:
            from ..mcp import McpServer
        except ImportError:
            raise ConfigurationError(
                f"{self.path}: 'tools' needs the 'mcp' extra: pip install 'genie-bus[mcp]'"
            ) from None
        folder = self.path.parent
        servers: dict[str, ToolServer] = {}
        for name, decl in self.config.tools.items():
            command = tuple(decl.command or ())
            if decl.module is not None:  # this Python: its packages, whatever the PATH
                command = (sys.executable, "-m", decl.module, *decl.args)
            servers[name] = McpServer(
                url=decl.url,
                headers=decl.headers,
                command=command,
                env=decl.env,
                cwd=str(folder / (decl.cwd or ".")) if command else None,
                timeout=decl.timeout,
                max_answer=decl.max_answer,
            )
        return servers

    # --- one request ---------------------------------------------------------------------------
    async def run(
        self,
        input: str | None = None,
        *,
        input_path: str | None = None,
        timeout: float | None = None,
        audit: AuditSink | None = None,
        metrics: Metrics | None = None,
    ) -> RunResult:
        """Run one request: ``input`` text (or the file ``input_path``, or the entry's default)
        becomes the entry payload; the result holds the output message or why there is none.
        ``metrics`` (a ``genie.Metrics``) is filled in by the run."""
        text = self.read_input(input_path, input)
        where = "the input" if input is not None else self.input_name(input_path)
        payload = self.entry_payload(text, where)
        async with self.runtime(audit=audit, metrics=metrics or False) as rt:
            msg = self.entry_message(rt, payload)
            counting = RunTally(msg.correlation_id)
            result = await self.ask(rt, msg, timeout=timeout, counting=counting)
        return settled(result, rt, counting)

    async def ask(
        self,
        rt: Runtime,
        payload: Payload | Message,
        *,
        timeout: float | None = None,
        wait: bool = True,
        counting: RunTally | None = None,
    ) -> RunResult:
        """Send one entry ``payload`` through a running runtime of this pipeline (or a request
        message built by ``entry_message``, to know its ids before it is sent). With
        ``wait=False`` an entry mailbox that is full raises ``WouldBlockError`` at once, and
        nothing was sent (``Runtime.ask``). The result is what the run did by the time its
        output came; with ``counting`` (a ``RunTally`` of the request), the tally goes on
        counting after it, for ``settled`` once the runtime has closed."""
        msg = payload if isinstance(payload, Message) else self.entry_message(rt, payload)
        return await self._result(rt, msg, timeout, partial(rt.ask, wait=wait), counting)

    def busy(self, rt: Runtime, full: WouldBlockError) -> str:
        """What a caller refused by ``ask(wait=False)`` is told: which entry agent had no
        room, its capacity, and to come back (nothing of the request was sent)."""
        agent = full.agent_id or "?"
        box = rt.statistics().mailboxes.get(agent)
        capacity = f" (capacity {box.capacity})" if box is not None else ""
        return (
            f"pipeline {self.name!r} is busy: the mailbox of its agent {agent!r} is full"
            f"{capacity}; retry later"
        )

    async def resume(
        self,
        rt: Runtime,
        request: Message,
        *,
        timeout: float | None = None,
        counting: RunTally | None = None,
    ) -> RunResult:
        """The result of ``request``, one of ``rt.unfinished()``: a request a process started
        on the runtime's store and did not finish, resumed by this runtime (docs/durability.md).
        Call it before the first checkpoint after the runtime started. Its counts are those of
        the part run here."""
        return await self._result(rt, request, timeout, rt.resume, counting)

    async def _result(
        self,
        rt: Runtime,
        msg: Message,
        timeout: float | None,
        ask: Callable[..., Awaitable[GatherResult]],
        counting: RunTally | None,
    ) -> RunResult:
        tally = RunTally(msg.correlation_id) if counting is None else counting
        rt.add_observer(tally)
        try:
            result = await ask(
                msg,
                until=self.ends(msg),
                timeout=timeout if timeout is not None else self.config.timeout,
            )
        finally:
            if counting is None:
                rt.remove_observer(tally)
        reply = result.replies[0] if result.replies else None
        output = self.config.output
        # Ended by a message to the caller that is not the output: named, as no line else
        # says what came instead.
        instead = (
            ()
            if reply is None or reply.type == output
            else (
                Missing(
                    output,
                    "no_reply",
                    f"agent {reply.sender!r} replied {reply.type!r} where the output "
                    f"{output!r} was expected",
                    agent_id=reply.sender,
                ),
            )
        )
        # Said by the output itself (not by what this process saw): it holds after a resume
        # and where the gather ran in another process.
        lacks = missing_parts(reply) if reply is not None else {}
        return RunResult(
            status=run_status(reply, result, output, partial=bool(lacks)),
            correlation_id=msg.correlation_id,
            output=reply,
            missing=(
                *result.missing,
                *(Missing(k, m.kind, m.reason, m.policy, m.agent) for k, m in lacks.items()),
                *instead,
            ),
            **_counts(rt, tally, len(result.replies)),
        )

    def ends(self, request: Message) -> Callable[[Message], bool]:
        """What ends a request: the output, or any message addressed back to its sender."""
        output, caller = self.config.output, request.sender
        return lambda m: m.type == output or m.recipient == caller


def settled(result: RunResult, rt: Runtime, counting: RunTally) -> RunResult:
    """``result`` (made when its output came) with what its run did until ``rt`` closed,
    ``counting`` having counted it since (``Pipeline.ask``): a side branch slower than the
    output that then failed is a dead letter of the run, and nothing is left in flight."""
    rt.remove_observer(counting)
    return replace(result, **_counts(rt, counting, result.stats.collected))


def _counts(rt: Runtime, tally: RunTally, collected: int) -> dict[str, Any]:
    """A result's counts, dead letters and denials: ``tally``'s, the caller having taken
    ``collected`` messages."""
    runtime = rt.statistics()
    # Agents in other processes report outcomes as records, which no observer is told of.
    elsewhere = handled_elsewhere(runtime) > 0
    return {
        "stats": from_runtime(runtime) if elsewhere else tally.statistics(collected),
        "runtime": runtime,
        "dead_letters": tuple(tally.dead_letters),
        "denials": tuple(tally.denials),
    }


def _registered(types: MessageTypes, name: str) -> type[Payload] | None:
    """The payload type registered under ``name``, or None."""
    return types.get(name) if name in types else None


def _stacks_of(decl: AgentDecl) -> list[str]:
    if decl.llm is None:
        return []
    return [decl.llm] if isinstance(decl.llm, str) else decl.llm


def run_status(
    reply: Message | None, result: GatherResult, output: str, *, partial: bool = False
) -> RunStatus:
    """How a request ended, from what ended it (``reply``) and its gather's result;
    ``partial``: a declared gather of the request bundled without some parts."""
    if reply is not None:
        if reply.type != output:
            return "fallback"
        outcome = reply.payload
        if isinstance(outcome, WorkflowOutcome) and outcome.status != "completed":
            return "workflow_failed"  # the saga's outcome arrived, and says it failed
        return "partial" if partial else "ok"
    if result.status == "timed_out":
        return "timed_out"
    kinds = {m.kind for m in result.missing}
    if "denied" in kinds:
        return "denied"
    if kinds & {"failed", "shed", "cancelled", "no_route"}:
        return "failed"
    return "no_output"


def _located(exc: ValidationError, type_name: str, where: str) -> InputError | None:
    """A validator that raised a ValueError with an int ``line`` (the line of the input, 1 for
    the first) is reported at that line: ``bad.csv, line 4: <its problem> (type.field)``."""
    error = exc.errors(include_url=False)[0]
    cause = error.get("ctx", {}).get("error")
    line = getattr(cause, "line", None)
    if not isinstance(line, int):
        return None
    problem = getattr(cause, "problem", str(cause))
    field = ".".join(str(p) for p in error["loc"])
    return InputError(f"{where}, line {line}: {problem} ({type_name}.{field})", line=line)


def _text(raw: bytes, name: str) -> str:
    """An input file's bytes as text; refused, naming the line, when they are not UTF-8 text."""
    try:
        text = decode_utf8(raw, name)
    except FileRefusedError as exc:
        raise InputError(f"{name}, line {exc.line}: {exc.problem}", line=exc.line) from None
    nul = text.find("\0")
    if nul >= 0:  # no text format holds one: a binary file, or UTF-16 without its mark
        line = text.count("\n", 0, nul) + 1
        column = nul - (text.rfind("\n", 0, nul) + 1) + 1
        raise InputError(
            f"{name}, line {line}: a NUL character (column {column}): not a text file", line=line
        )
    return text


def _parse_object(text: str, fmt: str, where: str, max_bytes: int) -> dict[str, Any]:
    if fmt == "json":
        try:
            data = loads_strict(text)  # as `genie serve` reads a request's body
        except ValueError as exc:
            raise InputError(f"{where} is not valid JSON: {exc}") from exc
    else:
        # The configuration files' bounded loader: an input is no more trusted than they are
        # (aliases, depth, duplicate keys), within the input's own size limit.
        try:
            document = parse_yaml(text, where, max_bytes)
        except ConfigFileError as exc:
            raise InputError(str(exc)) from None
        if document.problems:
            raise InputError("\n".join(document.problems))
        data = document.data
    if not isinstance(data, dict):
        raise InputError(f"{where} must hold a {fmt.upper()} object of payload fields")
    return data
