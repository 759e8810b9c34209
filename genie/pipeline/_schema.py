"""The pipeline file's schema. Every model forbids unknown keys, so a typo is an error that
names its line rather than a setting silently ignored; ``validate_file`` reports every mistake
of a file, not only the first ones."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    model_validator,
)

from .._agent.agent import Risk
from .._agent.tools import MAX_TOOL_ANSWER
from .._base.clock import duration
from .._base.yamlconf import Loc, WholeNumber, is_under, problems

__all__ = [
    "AgentDecl",
    "Entry",
    "GatherDecl",
    "Governance",
    "Inputs",
    "MemoryDecl",
    "PipelineFile",
    "Simulation",
    "StepDecl",
    "WorkflowDecl",
    "validate_file",
]


def _seconds(value: Any) -> Any:
    """``5``, ``2.5``, ``"200ms"``, ``"5s"``, ``"2m"``, ``"1h"``, ``"2d"`` -> seconds."""
    # pydantic's lax mode reads true as one second, and .inf (or more digits than a float
    # holds) would wait for ever: refused as genie run --timeout refuses them.
    if isinstance(value, bool):
        raise ValueError(f"a number of seconds, not {str(value).lower()}")  # noqa: TRY004 - pydantic reads ValueError
    if isinstance(value, str):
        text = value
        value = duration(text)
        if value is None:
            raise ValueError(f"{text!r} is not a duration (use seconds, or 200ms, 5s, 2m, 1h, 2d)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"a number of seconds, not {value}")
    return value


Seconds = Annotated[PositiveFloat, BeforeValidator(_seconds)]
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _name(value: str) -> str:
    """An agent's id, a type's or a pipeline's name: a file name and a URL segment as it is."""
    if _NAME.fullmatch(value) is None:
        if not value:
            raise ValueError("a name cannot be empty (letters, digits, _ . and -)")
        raise ValueError(f"{value!r} is not a name: letters, digits, _ . and - only")
    if not value.strip("."):  # a path's . or ..: no URL reaches it, as clients resolve them
        raise ValueError(f"{value!r} is not a name: dots alone name a folder in a path")
    return value


def _name_or_none(value: str) -> str:
    return value and _name(value)


Name = Annotated[str, AfterValidator(_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retry(_Model):
    attempts: WholeNumber = Field(default=1, ge=1)
    backoff: Annotated[float, BeforeValidator(_seconds), Field(ge=0)] = 0.05
    multiplier: float = Field(default=2.0, ge=1)
    max_backoff: Annotated[float, BeforeValidator(_seconds), Field(ge=0)] = 5.0


class AgentDecl(_Model):
    """One agent: ``use`` is a catalogue name or ``module:Class``."""

    id: Name
    use: str = Field(min_length=1)
    params: dict[str, Any] = {}
    subscribe: list[str] = []
    mailbox: WholeNumber = Field(default=1024, ge=1)
    concurrency: WholeNumber = Field(default=1, ge=1)
    deadline: Seconds | None = None
    retry: Retry | None = None
    fallback: str | None = None
    risk: Risk | None = None
    overflow: Literal["overdraft", "shed"] = "overdraft"
    offload: Literal["thread", "process"] = "thread"  # where plain def handlers run
    # The stack of the file's ``llm:`` section the agent calls; a list for a panel of them.
    llm: Name | list[Name] | None = None


class Expect(_Model):
    types: list[str] = []
    senders: list[str] = []

    @model_validator(mode="after")
    def _one_kind(self) -> Expect:
        if bool(self.types) == bool(self.senders):
            raise ValueError("give either types or senders (one list, not both)")
        return self


class Emit(_Model):
    type: Name
    to: Name


class GatherDecl(_Model):
    """A declared fan-in: collect ``expect`` for one correlation, then ``emit`` the bundle."""

    id: Name
    expect: Expect
    deadline: Seconds
    emit: Emit
    on_timeout: Literal["emit", "fail"] = "emit"


class ApprovalDecl(_Model):
    """An approval step: who may answer (a role, a principal; neither: anyone), what they
    are asked (``{field}`` of the state filled in), and the role it is offered to once its
    deadline passes unanswered."""

    subject: str = Field(min_length=1)
    role: str | None = None
    principal: str | None = None
    details: str = ""
    escalate_to: str | None = None


class StepDecl(_Model):
    """A workflow step: the ``agent`` that runs it (default: the agent with the step's id),
    or an ``approval``; the steps it comes ``after``; its deadline (an agent's reply, default
    60s; an approval's answer, default none); the message type that undoes it."""

    id: Name
    agent: Name | None = None
    approval: ApprovalDecl | None = None
    after: list[Name] = []
    deadline: Seconds | None = None
    compensate: Name | None = None

    @model_validator(mode="after")
    def _agent_or_approval(self) -> StepDecl:
        if self.approval is not None and self.agent is not None:
            raise ValueError("a step is run by an agent or is an approval, not both")
        if self.approval is not None and self.compensate is not None:
            raise ValueError("an approval step has nothing to compensate")
        if self.approval is not None and self.approval.escalate_to and self.deadline is None:
            raise ValueError(
                "escalate_to offers the approval to its role once the step's deadline passes: "
                "give the step a deadline"
            )
        return self


class WorkflowEmit(_Model):
    type: Name
    to: Name | None = None


class WorkflowDecl(_Model):
    """A declared workflow (saga): steps over one ``state`` payload, compensated in reverse
    on failure, timeout or cancellation; ``emit`` the outcome."""

    id: Name
    state: Name
    steps: list[StepDecl] = Field(min_length=1)
    deadline: Seconds | None = None
    emit: WorkflowEmit


class ClassifierDecl(_Model):
    """The classifier hook (docs/governance.md): a model of the file's ``llm`` stacks judges
    each message from outside before it is admitted."""

    stack: str = Field(min_length=1)
    model: str | None = None
    fail: Literal["open", "closed"] = "closed"
    budget: Seconds = 0.5
    applies_to: list[str] = []


class Governance(_Model):
    """A board policy file, or the same document inline, plus extra DSL rules and a
    classifier."""

    file: str | None = None
    board: dict[str, Any] | None = None
    rules: list[dict[str, Any]] = []
    classifier: ClassifierDecl | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Governance:
        if self.file is not None and self.board is not None:
            raise ValueError("give a policy file or an inline board, not both")
        return self


class Limits(_Model):
    max_hops: WholeNumber = Field(default=32, ge=1)
    correlation_budget: WholeNumber = Field(default=10_000, ge=1)
    deadline: Seconds | None = None  # the default handler deadline for every agent
    # The kill switch of model calls: tokens and cost (in llm.prices' unit) per correlation.
    correlation_tokens: WholeNumber | None = Field(default=None, ge=0)
    correlation_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)


# The largest input file a run reads, unless the pipeline says otherwise: the request size
# `genie serve` takes by default (--max-body), so a file is bounded as a request is. The shipped
# inputs are under 2 KB; the shipped board policy stops content past 256 KiB anyway.
MAX_INPUT_BYTES = 1 << 20


class Input(_Model):
    """How the run's input file becomes the entry payload: its text into ``field``, or (with
    ``format: json`` / ``yaml``) an object whose keys are payload fields. A file larger than
    ``max_bytes`` is refused before it is read."""

    field: str | None = None
    format: Literal["text", "json", "yaml"] = "text"
    default: str | None = None  # a path, relative to the pipeline file
    # The reader asks for one byte past the limit (a file that grows while read), and no read
    # takes more than ``sys.maxsize``: a larger limit was an OverflowError at the run's start.
    max_bytes: WholeNumber = Field(default=MAX_INPUT_BYTES, ge=1, le=sys.maxsize - 1)

    @model_validator(mode="after")
    def _field_for_text(self) -> Input:
        if self.format == "text" and not self.field:
            raise ValueError("a text input needs the payload field it fills ('field')")
        return self


class Entry(_Model):
    type: Name
    to: Name
    sender: Name = "user"
    payload: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    input: Input | None = None


class Inputs(_Model):
    """A session input generator for ``genie simulate``: ``use`` is ``module:function``,
    called as ``function(rng, session, **params)`` and returning the input text."""

    use: str = Field(min_length=1)
    params: dict[str, Any] = {}


class ToolServerDecl(_Model):
    """An MCP server whose tools the agents call (``ctx.tool(NAME)``): ``url`` (streamable
    HTTP, sent ``headers``, answering at most ``max_answer`` bytes), ``command`` (stdio: run
    in ``cwd``, by default the pipeline file's folder, with ``env`` added) or ``module``
    (stdio: ``python -m MODULE ARGS...`` with the Python that runs genie, so a server
    installed beside it is found whatever the PATH)."""

    url: str | None = Field(default=None, pattern=r"^https?://")
    headers: dict[str, str] = {}
    command: list[str] | None = Field(default=None, min_length=1)
    module: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*$")
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = None
    timeout: Seconds = 30.0
    max_answer: WholeNumber = Field(default=MAX_TOOL_ANSWER, ge=1)

    @model_validator(mode="after")
    def _url_or_command(self) -> ToolServerDecl:
        given = [self.url, self.command, self.module]
        if sum(g is not None for g in given) != 1:
            raise ValueError("give either url or command (or module): exactly one")
        if self.args and self.module is None:
            raise ValueError("args are for a module (a command lists its own)")
        if self.url is not None and (self.env or self.cwd):
            raise ValueError("env and cwd are for a command or module (a server on stdio)")
        if self.url is None and self.headers:
            raise ValueError("headers are for a url (a server over HTTP)")
        if self.url is None and "max_answer" in self.model_fields_set:
            raise ValueError("max_answer is for a url (a server over HTTP)")
        return self


class MemoryDecl(_Model):
    """A memory the agents use (``ctx.memory(NAME)``): ``backend`` ``memory`` (this process),
    ``sqlite`` (``path``, relative to the pipeline file; without one, the durable store's
    file of ``genie run --store``) or ``nats`` (the namespace's KV bucket, shared by the
    processes of ``genie run --nats`` and ``genie worker``); ``threshold`` turns a session
    keeps before the older half is summarised, through the llm stack ``summariser`` (offline
    without one); ``embedder``
    ``hashing`` (offline, ``dimensions`` long) or ``module:callable`` making an Embedder."""

    backend: Literal["memory", "sqlite", "nats"] = "memory"
    path: str | None = Field(default=None, min_length=1)
    threshold: WholeNumber = Field(default=20, ge=2)
    summariser: Name | None = None
    embedder: str = Field(default="hashing", pattern=r"^(hashing|[\w.]+:[\w.]+)$")
    dimensions: WholeNumber = Field(default=256, ge=8, le=65536)

    @model_validator(mode="after")
    def _path_for_sqlite(self) -> MemoryDecl:
        if self.path is not None and self.backend != "sqlite":
            raise ValueError("a path is for the sqlite backend (backend: sqlite)")
        if self.embedder != "hashing" and "dimensions" in self.model_fields_set:
            raise ValueError("dimensions are for the hashing embedder")
        return self


class Simulation(_Model):
    inputs: Inputs | None = None


class PipelineFile(_Model):
    # A file name (genie serve --store DIR keeps DIR/NAME.db) and a URL segment; empty: the
    # file's own name.
    name: Annotated[str, AfterValidator(_name_or_none)] = ""
    description: str = ""
    agents: list[AgentDecl] = Field(min_length=1)
    routes: dict[str, list[str]] = {}
    gathers: list[GatherDecl] = []
    workflows: list[WorkflowDecl] = []
    governance: Governance | None = None
    limits: Limits = Limits()
    entry: Entry
    output: Name
    timeout: Seconds = 30.0
    simulation: Simulation = Simulation()
    tools: dict[Name, ToolServerDecl] = {}
    memory: dict[Name, MemoryDecl] = {}
    # Checked by genie.llm's own model, imported only when a file has this section.
    llm: dict[str, Any] | None = None


def validate_file(
    data: dict[str, Any], path: Path, lines: dict[Loc, int], found: list[str], quiet: list[Loc]
) -> tuple[PipelineFile | None, list[Loc]]:
    """Validate the file's schema, adding each problem to ``found``. So that one mistake does
    not hide the ones after it, a wrong or unknown mapping key is dropped, a missing ``entry``
    or ``output`` stood in for, and the rest validated again, for the caller to cross-check.
    Returns None when what is left cannot be (another required key missing, a wrong list item);
    also returns the keys set aside, whose problems are already reported."""
    set_aside: list[Loc] = []
    for _ in range(_PASSES):
        try:
            return PipelineFile.model_validate(data), set_aside
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            for problem, err in zip(
                problems(exc, path, lines, model=PipelineFile), errors, strict=True
            ):
                if not is_under(tuple(err["loc"]), [*quiet, *set_aside]):
                    found.append(problem)
            drop, fill = [], []
            for err in errors:
                loc = tuple(err["loc"])
                if err["type"] == "missing" and loc in _STAND_INS:
                    fill.append(loc)
                elif err["type"] != "missing" and isinstance(loc[-1], str):
                    drop.append(loc)
                else:
                    return None, set_aside
            data = _without(data, drop)
            for loc in fill:
                data = _with(data, loc, _STAND_INS[loc])
            set_aside += drop + fill
    return None, set_aside


# What the cross-checks see for a missing entry or output. Every check of these keys is quiet
# (their problem is reported), and the flow is checked only in a file without problems.
_STAND_INS: dict[Loc, Any] = {
    ("output",): "_",
    ("entry",): {},
    ("entry", "type"): "_",
    ("entry", "to"): "_",
}
# Each pass can reveal a deeper mistake (a stood-in entry lacks its type; a dropped key lets
# the check of the model holding it run): enough passes for the deepest of these.
_PASSES = 5


def _with(data: dict[Any, Any], loc: Loc, value: Any) -> dict[Any, Any]:
    """A copy of ``data`` with ``value`` at ``loc`` (a path of mapping keys)."""
    head, *rest = loc
    if not rest:
        return {**data, head: value}
    inner = data.get(head)
    return {**data, head: _with(inner if isinstance(inner, dict) else {}, tuple(rest), value)}


def _without(data: Any, locs: list[Loc]) -> Any:
    """A copy of ``data`` without the mapping keys at ``locs``."""
    if not isinstance(data, dict | list):
        return data
    here = {loc[0] for loc in locs if len(loc) == 1}
    items = data.items() if isinstance(data, dict) else enumerate(data)
    kept = {
        k: _without(v, [loc[1:] for loc in locs if len(loc) > 1 and loc[0] == k])
        for k, v in items
        if k not in here
    }
    return kept if isinstance(data, dict) else list(kept.values())
