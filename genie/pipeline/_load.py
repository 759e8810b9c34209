"""Loading a pipeline file: ``${VAR}`` interpolation, the schema, then every cross-reference
(agents, types, routes, fallbacks, reachability) checked before anything runs. All problems
are collected and reported together, each as ``file:line: key: reason``."""

from __future__ import annotations

import fnmatch
import graphlib
import inspect
import os
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .._agent.agent import Agent, BaseAgent, process_offload_problem
from .._agent.catalogue import (
    AgentSpec,
    Catalogue,
    import_object,
    named_like_a_class,
    spec_for,
)
from .._base.clock import spelt
from .._base.files import file_problem
from .._base.shipped import located, shipped, shipped_pipelines
from .._base.surrogates import lone_surrogate
from .._base.yamlconf import (
    MAX_CHARS,
    ConfigFileError,
    Loc,
    is_under,
    key_of,
    line_of,
    problems,
    read_yaml,
    sorted_problems,
    validate,
)
from .._errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidMessageError,
    described,
    did_you_mean,
    shown,
)
from .._message.envelope import RUNTIME_METADATA
from .._message.freeze import frozen_metadata
from .._message.payload import Payload
from .._runtime.approvals import not_a_name
from .._runtime.policy import Policy
from .._runtime.transport import RESERVED_IDS
from ..policies._board import (
    BoardPolicy,
    board_problems,
    build_policies,
    inline_board,
    load_policy_file,
    rule_id_problems,
)
from ..policies._dsl import Rule
from ._gather import GatherDeadline, Gathered, gathered_model
from ._graph import Edge, Graph, Node
from ._run import Pipeline
from ._schema import AgentDecl, ApprovalDecl, PipelineFile, WorkflowDecl, _Model, validate_file
from ._signatures import handler_problems, returns_messages
from ._workflow import (
    STEP_DEADLINE,
    ApprovalStep,
    Step,
    StepDeadline,
    Workflow,
    WorkflowDeadline,
    WorkflowOutcome,
    outcome_model,
    template_problems,
)

if TYPE_CHECKING:
    from ..llm._config import LLMConfig

__all__ = ["interpolate", "load_pipeline"]

# ``$$``, a variable, or (no group) a ``${`` that starts none: an unclosed or misnamed one.
_WHERE = re.compile(r"^(.*?:\d+: )")  # a problem's file and line
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


class _RuleDecl(_Model):
    id: str
    when: str
    decision: str = "deny"
    reason: str = ""


def interpolate(
    data: Any,
    variables: Mapping[str, str],
    errors: list[tuple[Loc, str]],
    at: Loc = (),
    used: set[str] | None = None,
) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string (``$$`` is a literal ``$``);
    the names the file refers to are added to ``used``. A ``${`` that is not a variable is an
    error, as is more than ``MAX_CHARS`` characters in all the strings once replaced (each alias
    counted as written out): nothing is substituted then, so no memory is spent on it."""
    too_long = _past_limit(data, _Sizer(variables, used), MAX_CHARS)
    if too_long is not None:
        errors.append(
            (
                too_long,
                f"the strings come to more than {MAX_CHARS:,} characters once each ${{VAR}} is "
                "replaced (an alias counts each time it is used); a configuration this large "
                "is a mistake",
            )
        )
        return None
    return _substituted(data, variables, errors, at, used)


def _substituted(
    data: Any,
    variables: Mapping[str, str],
    errors: list[tuple[Loc, str]],
    at: Loc,
    used: set[str] | None,
) -> Any:
    if isinstance(data, dict):
        errors.extend(
            ((*at, key), _KEY_NOT_SUBSTITUTED)
            for key in data
            if isinstance(key, str) and "${" in key
        )
        return {k: _substituted(v, variables, errors, (*at, k), used) for k, v in data.items()}
    if isinstance(data, list):
        return [_substituted(v, variables, errors, (*at, i), used) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name is None:
            errors.append((at, _NOT_A_VARIABLE))
            return match.group(0)
        if used is not None:
            used.add(name)
        value = variables.get(name)
        if value is None:
            if default is not None:
                return default
            errors.append((at, f"variable ${{{name}}} is not set (export it, or --set {name}=...)"))
            return ""
        if (bad := lone_surrogate(value)) is not None:
            # Bytes of the command line or the environment that are not UTF-8 reach Python as
            # lone surrogates: the message made of them failed every policy reading it as JSON.
            errors.append((at, _not_text(name, value, bad)))
            return ""
        return value

    return _VAR.sub(substitute, data)


def _not_text(name: str, value: str, at: int) -> str:
    return (
        f"variable ${{{name}}} is not UTF-8 text: {shown(value)} holds a lone surrogate "
        f"(U+{ord(value[at]):04X} at index {at}), which --set or the environment makes of bytes "
        "that are not UTF-8"
    )


# A key names the file's structure (a route's message type, an agent's option): it is never
# substituted, and one left as written would be taken as a name nobody meant.
_KEY_NOT_SUBSTITUTED = (
    "a key is never substituted: ${VAR} works in values only (write the key as it is)"
)
_NOT_A_VARIABLE = (
    "'${' starts no variable: write ${NAME} or ${NAME:-default} (a name of letters, digits and "
    "'_', closed by '}'), or $$ for a literal $"
)


class _Sizer:
    """The length of a value's strings once substituted, each shared (aliased) value measured
    once: a file's aliases repeat the very same objects."""

    def __init__(self, variables: Mapping[str, str], used: set[str] | None) -> None:
        self.variables = variables
        self.used = used if used is not None else set()  # the names the strings refer to
        self.sizes: dict[int, int] = {}  # by id: every object lives in the data being measured

    def size(self, data: Any) -> int:
        known = self.sizes.get(id(data))
        if known is not None:
            return known
        if isinstance(data, dict):
            n = sum(self.size(v) for v in data.values())
        elif isinstance(data, list):
            n = sum(self.size(v) for v in data)
        elif isinstance(data, str):
            n = len(data)
            if "$" in data:
                for match in _VAR.finditer(data):
                    n += self.replaced(match) - len(match.group(0))
        else:
            n = 0
        self.sizes[id(data)] = n
        return n

    def replaced(self, match: re.Match[str]) -> int:
        if match.group(0) == "$$":
            return 1
        name, default = match.group(1), match.group(2)
        if name is None:
            return len(match.group(0))
        self.used.add(name)
        value = self.variables.get(name)
        return len(value if value is not None else default or "")


def _past_limit(data: Any, sizer: _Sizer, limit: int) -> Loc | None:
    """Where, in file order, the substituted strings of ``data`` first pass ``limit``
    characters; None when they do not."""
    total = 0

    def walk(value: Any, loc: Loc) -> Loc | None:
        nonlocal total
        n = sizer.size(value)
        if total + n <= limit:
            total += n
            return None
        items: Iterable[tuple[str | int, Any]] = ()
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        for key, item in items:
            found = walk(item, (*loc, key))
            if found is not None:
                return found
        return loc  # the string that passes the limit

    return walk(data, ())


def load_pipeline(
    path: str | os.PathLike[str],
    *,
    variables: Mapping[str, str] | None = None,
    catalogue: Catalogue | None = None,
) -> Pipeline:
    """Load and check a pipeline file. ``variables`` override the environment for ``${VAR}``;
    each must be one the file uses.

    ``use: module:Class`` (and ``simulation.inputs.use``) import a module beside the file before
    an installed one; loading a pipeline runs that code, so a pipeline file is code.

    Raises ``ConfigFileError`` listing every problem found.
    """
    if not isinstance(path, str | os.PathLike):  # else a bare TypeError from os.fspath
        raise InvalidArgumentError(
            "load_pipeline: give a pipeline file's path or a shipped pipeline's name, not "
            f"{type(path).__name__} ({spelt(path)})"
        )
    if not os.fspath(path):  # Path("") is the current folder
        names = ", ".join(shipped_pipelines()) or "none installed"
        raise ConfigFileError(
            [
                f"'': an empty path names no pipeline file; give one, or the name of a shipped "
                f"pipeline (genie run NAME): {names}"
            ]
        )
    path = located(path, "pipelines", "pipelines, by name (genie run NAME)")
    doc = read_yaml(path)
    env = {**os.environ, **(variables or {})}
    unset: list[tuple[Loc, str]] = []
    used: set[str] = set()
    data = interpolate(doc.data, env, unset, used=used)
    found = [*doc.problems, *_unused(path, variables or {}, used)]
    found += [f"{path}:{line_of(doc.lines, loc)}: {_key(loc)}: {why}" for loc, why in unset]
    if data is None and doc.data is not None:  # too long to substitute: nothing to check
        raise ConfigFileError(sorted_problems(found))
    if not isinstance(data, dict):
        found.append(
            f"{path}:1: <top>: a pipeline file is a mapping (agents, routes, entry, output...)"
        )
        raise ConfigFileError(sorted_problems(found))
    # A value made empty by an unset variable is not reported again as a wrong value.
    quiet = [loc for loc, _ in unset]
    config, pruned = validate_file(data, path, doc.lines, found, quiet)
    if config is None:
        raise ConfigFileError(sorted_problems(found))
    catalogue = catalogue or Catalogue.installed()
    return _Checker(path, config, doc.lines, catalogue, found, [*quiet, *pruned]).pipeline()


def takes_panel(annotation: Any) -> bool:
    """Whether an agent's ``llm`` parameter is a panel of models (a tuple or list of them)."""
    return typing.get_origin(annotation) in (tuple, list) or any(
        typing.get_origin(a) in (tuple, list) for a in typing.get_args(annotation)
    )


def _unused(path: Path, variables: Mapping[str, str], used: set[str]) -> list[str]:
    """A problem for each of ``variables`` the file never uses: the closest name it does use,
    or, when none is close, every name it uses."""
    out = []
    for name in variables:
        if name not in used:
            hint = did_you_mean(name, used) or (
                f"; it uses {', '.join(sorted(used))}" if used else "; it uses no variables"
            )
            out.append(f"{path}: variable {name} is set but the file never uses ${{{name}}}{hint}")
    return out


def _qualified(model: type) -> str:
    return f"{model.__module__}.{model.__qualname__}"


def _key(loc: Loc) -> str:
    return key_of(loc)


class _Checker:
    """Resolves a parsed file against the catalogue; collects every problem with its line."""

    def __init__(
        self,
        path: Path,
        config: PipelineFile,
        lines: dict[Loc, int],
        catalogue: Catalogue,
        problems: list[str],
        quiet: list[Loc],
    ) -> None:
        self.path = path
        self.config = config
        self.lines = lines
        self.catalogue = catalogue
        self.problems = problems  # the file's problems so far; the checks add theirs
        self.quiet = quiet  # keys already reported (unset, dropped): not reported again
        self.specs: dict[str, AgentSpec] = {}
        self.types: dict[str, type[Payload]] = {}
        self.gathers: dict[str, type[Gathered]] = {}
        self.workflows: dict[str, Workflow] = {}
        self.instances: dict[str, Agent] = {}
        self.warnings: list[str] = []  # what fails every run without stopping it
        self.unfilled: list[str] = []  # entry fields only an input or a caller gives
        self.headings = 0  # lines of ``problems`` that only say where the next ones come from
        self.llm: LLMConfig | None = None
        # Types an agent that failed to load might bring: any type of the catalogue when it was
        # a catalogue name, any type at all (None) when it was a module:Class (or read as one).
        self.maybe_types: set[str] | None = set()

    def unresolvable(self, use: str) -> None:
        """The class ``use`` names could not be found."""
        if self.maybe_types is None:
            return
        if ":" in use or named_like_a_class(use):  # one of the user's own, written wrong
            self.maybe_types = None
        else:
            self.maybe_types |= {
                p.message_type for spec in self.catalogue for p in (*spec.consumes, *spec.produces)
            }

    def fail(self, loc: Loc, reason: str) -> None:
        if is_under(loc, self.quiet):
            return
        self.problems.append(f"{self.path}:{line_of(self.lines, loc)}: {_key(loc)}: {reason}")

    def warn(self, loc: Loc, reason: str) -> None:
        self.warnings.append(f"{self.path}:{line_of(self.lines, loc)}: {_key(loc)}: {reason}")

    def pipeline(self) -> Pipeline:
        self.check_llm()
        self.check_model_limits()
        self.check_memory()
        self.check_agents()
        self.check_gathers()
        ids = self.ids()
        self.check_workflows(ids)
        self.check_fallbacks(ids)
        self.check_routes(ids)
        self.check_subscriptions()
        entry_model = self.check_entry(ids)
        policies, retention = self.governance()
        graph = self.graph()
        self.check_flow(graph)
        inputs = self.check_inputs()
        if self.problems:
            found = sorted_problems(self.problems)
            raise ConfigFileError(found, len(found) - self.headings)
        assert entry_model is not None
        pipeline = Pipeline(
            self.path,
            self.config,
            self.specs,
            self.gathers,
            policies,
            retention,
            entry_model,
            graph,
            inputs,
            self.llm,
            self.workflows,
        )
        pipeline.unfilled = tuple(self.unfilled)
        unfilled = [f"{p}: genie run without an input fails for it" for p in self.unfilled]
        pipeline.warnings = tuple(sorted_problems([*self.warnings, *unfilled]))
        return pipeline

    # --- the llm: section ----------------------------------------------------------------------
    def check_llm(self) -> None:
        if self.config.llm is None:
            return
        # httpx and the adapters are imported only for a file that calls a model.
        from ..llm._config import LLMConfig

        try:
            self.llm = validate(LLMConfig, self.config.llm, self.path, self.lines, ("llm",))
        except ConfigFileError as exc:
            self.problems += exc.problems

    def check_model_limits(self) -> None:
        if self.config.limits.correlation_cost is not None and (
            self.config.llm is None or not self.config.llm.get("prices")
        ):
            self.fail(
                ("limits", "correlation_cost"),
                "a cost budget needs the prices of the models: declare them in llm.prices",
            )

    def check_memory(self) -> None:
        """Each memory's summariser is a stack of the file; a ``module:callable`` embedder
        can be found."""
        for name, decl in self.config.memory.items():
            if decl.summariser is not None:
                self.known_stack(decl.summariser, ("memory", name, "summariser"))
            if decl.path is not None:
                # SQLite makes the file, not its folder: a file in none failed the first
                # memory call of a handler, long after the load.
                file = self.path.parent / decl.path
                if file.is_dir():
                    self.fail(
                        ("memory", name, "path"), f"{file} is a folder, not the memory's file"
                    )
                elif not file.parent.is_dir():
                    self.fail(("memory", name, "path"), f"the folder {file.parent} does not exist")
            if decl.embedder != "hashing":
                at: Loc = ("memory", name, "embedder")
                try:
                    maker = import_object(decl.embedder, self.path.parent)
                except ConfigurationError as exc:
                    self.fail(at, str(exc))
                    continue
                # The runtime makes the embedder by calling this with nothing: a maker that
                # cannot be called so failed with a bare TypeError when the runtime was made.
                if not callable(maker):
                    what = f"{decl.embedder!r} is not callable (an embedder is made by calling it)"
                    self.fail(at, what)
                    continue
                try:
                    inspect.signature(maker).bind()
                except TypeError as exc:
                    what = f"{decl.embedder} is called with no arguments to make the embedder"
                    self.fail(at, f"{what}: {exc}")
                except ValueError:
                    pass  # a builtin without a signature: calling it will tell

    def llm_params(self, decl: AgentDecl, spec: AgentSpec, at: Loc) -> dict[str, Any] | None:
        """``decl.params`` for a throwaway instance, with stand-ins for the models the agent
        calls; None (the problem reported) when its ``llm`` does not fit its class."""
        params = dict(decl.params)
        field = spec.params.model_fields.get("llm")
        if field is not None and "llm" in params:
            self.fail(
                (*at, "params", "llm"),
                "an agent's model is named by its own 'llm:' key (a stack of the file's "
                "llm: section), not by a parameter",
            )
            return None
        if decl.llm is None:
            if field is not None and field.is_required():
                self.fail(
                    (*at, "use"),
                    f"{spec.name} calls a model: give the agent an 'llm:' key naming a stack "
                    "of the file's llm: section",
                )
                return None
            return params
        if field is None:
            self.fail((*at, "llm"), f"{spec.name} calls no model (it takes no llm)")
            return None
        panel = takes_panel(field.annotation)
        if isinstance(decl.llm, list) and not panel:
            self.fail((*at, "llm"), f"{spec.name} calls one model: name one stack, not a list")
            return None
        names = [decl.llm] if isinstance(decl.llm, str) else decl.llm
        known = [
            self.known_stack(name, (*at, "llm", j) if isinstance(decl.llm, list) else (*at, "llm"))
            for j, name in enumerate(names)
        ]
        if not all(known):
            return None
        from ..llm._providers.scripted import ScriptedProvider  # the file has an llm: section

        stand_ins = [ScriptedProvider(name=name) for name in names]
        params["llm"] = stand_ins if panel else stand_ins[0]
        return params

    def known_stack(self, name: str, at: Loc) -> bool:
        if self.config.llm is None:
            self.fail(at, f"llm stack {name!r}: the file has no llm: section to declare it")
            return False
        if self.llm is None:
            return False  # the section is wrong: reported there
        if name in self.llm.stacks:
            return True
        hint = did_you_mean(name, self.llm.stacks)
        if not hint:
            declared = ", ".join(sorted(self.llm.stacks)) or "none"
            hint = f" (declared stacks: {declared})"
        self.fail(at, f"no llm stack named {name!r}{hint}")
        return False

    # --- agents and gathers --------------------------------------------------------------------
    def ids(self) -> dict[str, Loc]:
        seen: dict[str, Loc] = {}
        declared = [("agents", i, a.id) for i, a in enumerate(self.config.agents)]
        declared += [("gathers", i, g.id) for i, g in enumerate(self.config.gathers)]
        declared += [("workflows", i, w.id) for i, w in enumerate(self.config.workflows)]
        for kind, i, item_id in declared:
            reserved = RESERVED_IDS.get(item_id)
            if reserved is not None:
                self.fail(
                    (kind, i, "id"),
                    f"{item_id!r} is the runtime's own ({reserved}): give this one another id",
                )
            if item_id in seen:
                first = line_of(self.lines, (*seen[item_id], "id"))
                self.fail((kind, i, "id"), f"duplicate id {item_id!r} (first on line {first})")
            else:
                seen[item_id] = (kind, i)
        return seen

    def check_agents(self) -> None:
        for i, decl in enumerate(self.config.agents):
            at: Loc = ("agents", i)
            try:
                spec = self.resolve(decl.use)
            except ConfigurationError as exc:
                self.fail((*at, "use"), str(exc))
                self.unresolvable(decl.use)
                continue
            # The class is known, so its types are, even if its parameters are wrong.
            for model in (*spec.consumes, *spec.produces):
                self.add_type(model, (*at, "use"))
            for problem in handler_problems(spec.factory):  # fails every delivery it handles
                self.fail((*at, "use"), problem)
            params = self.llm_params(decl, spec, at)
            if params is None:
                continue
            try:
                # A throwaway instance: constructor errors surface now, and the graph reads
                # where pass-through agents forward.
                self.instances[decl.id] = spec.create(decl.id, params)
            except ValidationError as exc:
                where = (*at, "params")
                self.problems += problems(exc, self.path, self.lines, where, spec.params)
                continue
            except ConfigurationError as exc:
                key = exc.argument
                self.fail((*at, "params", *([key] if key in decl.params else [])), str(exc))
                continue
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # the class's own constructor failed (sys.exit too)
                self.fail((*at, "params"), f"{spec.name}(...) raised {described(exc)}")
                continue
            if decl.offload == "process":  # refused by every run's runtime otherwise
                refused = process_offload_problem(self.instances[decl.id])
                if refused is not None:
                    self.fail((*at, "offload"), refused)
            self.specs[decl.id] = spec

    def resolve(self, use: str) -> AgentSpec:
        if ":" in use:
            return spec_for(import_object(use, self.path.parent), name=use)
        return self.catalogue.get(use)

    def add_type(self, model: type[Payload], at: Loc) -> None:
        taken = self.types.setdefault(model.message_type, model)
        if taken is not model:
            self.fail(
                at,
                f"message type {model.message_type!r} has two models: "
                f"{_qualified(taken)} and {_qualified(model)}",
            )

    def check_gathers(self) -> None:
        for i, g in enumerate(self.config.gathers):
            at: Loc = ("gathers", i, "emit", "type")
            if self.genies_own(g.emit.type, at, "the runtime registers"):
                continue
            model = self.types.get(g.emit.type)
            if model is None:
                model = gathered_model(g.emit.type)
            elif not issubclass(model, Gathered):
                self.fail(
                    at,
                    f"{g.emit.type!r} is {model.__qualname__}, not a Gathered bundle; "
                    "a gather emits a new type, or one whose model subclasses "
                    "genie.pipeline.Gathered",
                )
                continue
            self.gathers[g.id] = model
            self.add_type(model, at)
            self.add_type(GatherDeadline, ("gathers", i))

    def check_workflows(self, ids: Mapping[str, Loc]) -> None:
        for i, w in enumerate(self.config.workflows):
            at: Loc = ("workflows", i)
            if self.genies_own(w.emit.type, (*at, "emit", "type"), "the runtime registers"):
                continue
            model = self.types.get(w.emit.type)
            if model is None:
                model = outcome_model(w.emit.type)
            elif not issubclass(model, WorkflowOutcome):
                self.fail(
                    (*at, "emit", "type"),
                    f"{w.emit.type!r} is {model.__qualname__}, not a workflow outcome; a "
                    "workflow emits a new type, or one whose model subclasses "
                    "genie.pipeline.WorkflowOutcome",
                )
                continue
            self.add_type(model, (*at, "emit", "type"))
            for tick in (StepDeadline, WorkflowDeadline):
                self.add_type(tick, at)
            to = w.emit.to
            if to is not None and self.known_id(to, ids, (*at, "emit", "to"), "workflow target"):
                kind = self.node_kind(to)
                if kind == "workflow":
                    self.fail((*at, "emit", "to"), f"workflow target {to!r} is a workflow")
                elif to in self.specs and not self.handles(to, w.emit.type):
                    self.fail((*at, "emit", "to"), self.not_handled(to, w.emit.type))
            if not self.known_type(w.state, (*at, "state")):
                continue
            if self.genies_own(w.state, (*at, "state"), "a workflow takes only from the runtime"):
                continue
            state = self.types[w.state]
            steps = [self.check_step(w, i, j, state, ids) for j in range(len(w.steps))]
            known = [s for s in steps if s is not None]
            if len(known) == len(steps) and self.check_order(w, i):
                self.workflows[w.id] = flow = Workflow(state, tuple(known), model)
                needed = flow.hops()
                if needed > self.config.limits.max_hops:
                    self.fail(
                        (*at, "id"),
                        f"workflow {w.id!r} may need {needed} hops (2 for each step of its "
                        "longest chain, 4 for an approval, 2 for each compensation, 2 for its "
                        f"failure and outcome), more than limits.max_hops "
                        f"{self.config.limits.max_hops}: raise it",
                    )

    def answerable(self, approval: ApprovalDecl, at: Loc) -> bool:
        """Whether someone could answer ``approval``: a blank role (or escalation) is held by
        nobody, and a principal the desk refuses as a name (blank, spaced, its own word such
        as ``deadline``) is nobody either. Left as written, the approval could only be decided
        by its deadline, and would be listed as anyone's (``role any``) meanwhile."""
        ok = True
        for key in ("role", "escalate_to"):
            role = getattr(approval, key)
            if role is not None and not role.strip():
                why = "leave it out: anyone may answer" if key == "role" else "name a role"
                self.fail((*at, key), f"{role!r} is no role: nobody holds it ({why})")
                ok = False
        refusal = None if approval.principal is None else not_a_name(approval.principal)
        if refusal is not None:
            self.fail((*at, "principal"), f"{refusal}: nobody could answer the approval")
            ok = False
        return ok

    def genies_own(self, name: str, at: Loc, why: str) -> bool:
        """Whether ``name`` is in genie's own namespace of message types (refused, ``why``):
        a workflow takes those (a decision, a loss notice) only from the runtime, so a state
        of one sent as its request, or as a step's reply, is ignored as an agent's forgery and
        the run never starts; a workflow's outcome or a gather's bundle of one is refused
        when the runtime registers its own model under the name, after validate said OK; and
        a gather takes its own deadline and the runtime's notices as such, never as a part."""
        if not name.startswith("genie."):
            return False
        self.fail(
            at,
            f"{name!r} is in genie's own namespace of message types, which {why}: name a type "
            "of the pipeline's",
        )
        return True

    def check_step(
        self, w: WorkflowDecl, i: int, j: int, state: type[Payload], ids: Mapping[str, Loc]
    ) -> Step | None:
        decl = w.steps[j]
        at: Loc = ("workflows", i, "steps", j)
        fields = state.model_fields
        if decl.approval is not None:
            for text in (decl.approval.subject, decl.approval.details):
                try:
                    unfillable = template_problems(text, state)
                except ValueError as exc:
                    self.fail((*at, "approval"), f"{text!r} is not a template: {exc}")
                    return None
                for problem in unfillable:
                    self.fail((*at, "approval"), problem)
                if unfillable:
                    return None
            a = decl.approval
            if not self.answerable(a, (*at, "approval")):
                return None
            approval = ApprovalStep(a.subject, a.role, a.principal, a.details, a.escalate_to)
            return Step(decl.id, tuple(decl.after), approval=approval, deadline=decl.deadline)
        agent = decl.agent or decl.id
        where = (*at, "agent") if decl.agent else (*at, "id")
        if not self.known_id(agent, ids, where, "step agent"):
            return None
        kind = self.node_kind(agent)
        if kind is not None:
            self.fail(where, f"step agent {agent!r} is a {kind}, not an agent")
            return None
        if agent in self.specs and not self.handles(agent, w.state):
            self.fail(where, self.not_handled(agent, w.state))
            return None
        undo = None
        if decl.compensate is not None:
            if not self.known_type(decl.compensate, (*at, "compensate")):
                return None
            undo = self.types[decl.compensate]
            if agent in self.specs and not self.handles(agent, decl.compensate):
                self.fail((*at, "compensate"), self.not_handled(agent, decl.compensate))
                return None
            lacking = [
                name
                for name, f in undo.model_fields.items()
                if f.is_required() and name not in fields
            ]
            if lacking:
                self.fail(
                    (*at, "compensate"),
                    f"{decl.compensate!r} is built from the state {w.state!r}, which has no "
                    f"field {', '.join(map(repr, lacking))}",
                )
                return None
        deadline = decl.deadline if decl.deadline is not None else STEP_DEADLINE
        return Step(decl.id, tuple(decl.after), agent, deadline=deadline, compensate=undo)

    def check_order(self, w: WorkflowDecl, i: int) -> bool:
        """Each step's ``after`` names steps of the workflow, and they form no cycle."""
        steps: dict[str, int] = {}
        for j, step in enumerate(w.steps):
            if step.id in steps:
                first = line_of(self.lines, ("workflows", i, "steps", steps[step.id], "id"))
                self.fail(
                    ("workflows", i, "steps", j, "id"),
                    f"duplicate step {step.id!r} (first on line {first})",
                )
                return False
            steps[step.id] = j
        ok = True
        for j, step in enumerate(w.steps):
            for k, name in enumerate(step.after):
                if name not in steps:
                    self.fail(
                        ("workflows", i, "steps", j, "after", k),
                        f"no step {name!r} in workflow {w.id!r}{did_you_mean(name, steps)}",
                    )
                    ok = False
        if not ok:
            return False
        try:
            graphlib.TopologicalSorter({s.id: s.after for s in w.steps}).prepare()
        except graphlib.CycleError as exc:
            cycle = list(reversed(exc.args[1]))  # each waits for the next
            self.fail(
                ("workflows", i, "steps", steps[cycle[0]], "after"),
                f"the steps wait for each other: {' -> '.join(cycle)}",
            )
            return False
        return True

    # --- references ----------------------------------------------------------------------------
    def known_type(self, name: str, at: Loc) -> bool:
        if name in self.types:
            return True
        if self.maybe_types is None or name in self.maybe_types:
            return False  # a type of the agent that failed to load, perhaps: not a mistake
        known = {*self.types, *(self.maybe_types or ())}
        self.fail(
            at, f"unknown message type {name!r}{did_you_mean(name, known)}{self.undeclared()}"
        )
        return False

    def undeclared(self) -> str:
        """Why a type may be unknown: the protocol agents (not ``BaseAgent``s, whose handlers
        say what they take) that declare no message types at all."""
        silent = [
            f"{agent_id!r} ({spec.name})"
            for agent_id, spec in self.specs.items()
            if not issubclass(typing.cast(type, spec.factory), BaseAgent)
            and not (spec.consumes or spec.produces or spec.consumes_any or spec.passes_through)
        ]
        if not silent:
            return ""
        agents = (
            f"agent {silent[0]} is not a BaseAgent and declares"
            if len(silent) == 1
            else f"agents {', '.join(silent)} are not BaseAgents and declare"
        )
        return (
            f" ({agents} no message types: a protocol agent lists its payload models in "
            "consumes and produces)"
        )

    def known_id(self, agent_id: str, ids: Mapping[str, Loc], at: Loc, what: str) -> bool:
        if agent_id in ids:
            return True
        self.fail(at, f"{what} {agent_id!r} is not declared{did_you_mean(agent_id, ids)}")
        return False

    def handles(self, agent_id: str, type_name: str) -> bool:
        spec = self.specs.get(agent_id)
        workflow = next((w for w in self.config.workflows if w.id == agent_id), None)
        if workflow is not None:
            return type_name == workflow.state
        if spec is None:
            gather = next((g for g in self.config.gathers if g.id == agent_id), None)
            return gather is None or not gather.expect.types or type_name in gather.expect.types
        return spec.consumes_any or any(p.message_type == type_name for p in spec.consumes)

    def node_kind(self, node_id: str) -> str | None:
        """``gather`` or ``workflow`` when ``node_id`` is one (None: an agent)."""
        if node_id in {g.id for g in self.config.gathers}:
            return "gather"
        if node_id in {w.id for w in self.config.workflows}:
            return "workflow"
        return None

    def check_fallbacks(self, ids: Mapping[str, Loc]) -> None:
        for i, decl in enumerate(self.config.agents):
            if decl.fallback is None:
                continue
            at: Loc = ("agents", i, "fallback")
            if decl.fallback == decl.id:
                self.fail(at, f"agent {decl.id!r} cannot be its own fallback")
            elif self.known_id(decl.fallback, ids, at, "fallback agent"):
                kind = self.node_kind(decl.fallback)
                if kind is not None:
                    self.fail(at, f"fallback {decl.fallback!r} is a {kind}, not an agent")

    def check_routes(self, ids: Mapping[str, Loc]) -> None:
        for type_name, recipients in self.config.routes.items():
            at: Loc = ("routes", type_name)
            known = self.known_type(type_name, at)
            if not recipients:
                self.fail(at, f"route {type_name!r} has no recipients")
            for j, agent_id in enumerate(recipients):
                declared = self.known_id(agent_id, ids, (*at, j), "route recipient")
                if declared and known and not self.handles(agent_id, type_name):
                    self.fail((*at, j), self.not_handled(agent_id, type_name))
        for i, g in enumerate(self.config.gathers):
            self.known_id(g.emit.to, ids, ("gathers", i, "emit", "to"), "gather target")
            for j, t in enumerate(g.expect.types):
                part: Loc = ("gathers", i, "expect", "types", j)
                if not self.genies_own(t, part, "a gather takes as the runtime's, never as a part"):
                    self.known_type(t, part)
            for j, s in enumerate(g.expect.senders):
                self.known_id(s, ids, ("gathers", i, "expect", "senders", j), "expected sender")
            self.listed_once(g.expect.types, ("gathers", i, "expect", "types"))
            self.listed_once(g.expect.senders, ("gathers", i, "expect", "senders"))
            if g.emit.to in self.specs and not self.handles(g.emit.to, g.emit.type):
                self.fail(("gathers", i, "emit", "to"), self.not_handled(g.emit.to, g.emit.type))

    def listed_once(self, items: Sequence[str], at: Loc) -> None:
        """Each of ``items`` once: a gather counts its parts by the list, and collects one of
        each, so a part listed twice could never complete the bundle before the deadline."""
        first: dict[str, int] = {}
        for j, item in enumerate(items):
            if item in first:
                line = line_of(self.lines, (*at, first[item]))
                self.fail((*at, j), f"{item!r} is listed twice (first on line {line})")
            else:
                first[item] = j

    def not_handled(self, agent_id: str, type_name: str) -> str:
        spec = self.specs.get(agent_id)
        workflow = next((w for w in self.config.workflows if w.id == agent_id), None)
        if workflow is not None:
            return f"workflow {agent_id!r} takes its state {workflow.state!r}, not {type_name!r}"
        if spec is None:  # a gather that expects other types
            gather = next(g for g in self.config.gathers if g.id == agent_id)
            return (
                f"gather {agent_id!r} does not expect {type_name!r} "
                f"(it expects {gather.expect.types})"
            )
        handled = sorted(p.message_type for p in spec.consumes)
        if not issubclass(typing.cast(type, spec.factory), BaseAgent):
            # A protocol agent takes what its ``consumes`` lists, not what its handle reads.
            return (
                f"agent {agent_id!r} ({spec.name}) does not declare {type_name!r} in its "
                f"consumes (it declares {handled})"
            )
        return (
            f"agent {agent_id!r} ({spec.name}) does not handle {type_name!r} (it handles {handled})"
        )

    def check_subscriptions(self) -> None:
        for i, decl in enumerate(self.config.agents):
            for j, pattern in enumerate(decl.subscribe):
                at: Loc = ("agents", i, "subscribe", j)
                if any(c in pattern for c in "*?["):
                    if not fnmatch.filter(self.types, pattern):
                        self.fail(
                            at, f"pattern {pattern!r} matches no message type of this pipeline"
                        )
                elif (
                    self.known_type(pattern, at)
                    and decl.id in self.specs
                    and not self.handles(decl.id, pattern)
                ):
                    self.fail(at, self.not_handled(decl.id, pattern))

    def check_entry(self, ids: Mapping[str, Loc]) -> type[Payload] | None:
        entry = self.config.entry
        self.known_id(entry.to, ids, ("entry", "to"), "entry recipient")
        for key, value in entry.metadata.items():
            if key.startswith(RUNTIME_METADATA):
                self.fail(
                    ("entry", "metadata", key),
                    f"keys starting with {RUNTIME_METADATA!r} are the runtime's own: "
                    "name it otherwise",
                )
                continue
            # Each value as the message will hold it (a YAML date or mapping is no metadata
            # value): genie run would refuse it naming no line.
            try:
                frozen_metadata(entry.type, {key: value})
            except InvalidMessageError as exc:
                self.fail(("entry", "metadata", key), exc.problem)
        if entry.sender in ids:
            # As genie serve refuses a principal named like an agent.
            given = "sender" in entry.model_fields_set
            self.fail(
                ("entry", "sender") if given else (*ids[entry.sender], "id"),
                f"{entry.sender!r} is the entry's sender (entry.sender"
                f"{'' if given else ', user by default'}) and also an id in this pipeline: the "
                "policies could not tell the caller from the agent, and what is sent to the "
                "caller would reach the agent; rename one",
            )
        if not self.known_type(entry.type, ("entry", "type")):
            return None
        model = self.types[entry.type]
        takes = entry.to in self.specs or entry.to in {w.id for w in self.config.workflows}
        if takes and not self.handles(entry.to, entry.type):
            self.fail(("entry", "to"), self.not_handled(entry.to, entry.type))
        fields = model.model_fields
        self.check_entry_payload(model)
        if (
            entry.input is not None
            and entry.input.field is not None
            and entry.input.field not in fields
        ):
            self.fail(
                ("entry", "input", "field"),
                f"{entry.type!r} has no field {entry.input.field!r}"
                f"{did_you_mean(entry.input.field, fields)}",
            )
        if entry.input is not None and entry.input.default is not None:
            default = self.path.parent / entry.input.default
            problem = file_problem(default, entry.input.max_bytes, "entry.input.max_bytes")
            if problem is not None:
                self.fail(
                    ("entry", "input", "default"), f"input file {os.fspath(default)} {problem}"
                )
        return model

    def check_entry_payload(self, model: type[Payload]) -> None:
        """Each value the entry's ``payload`` gives fits its field: a wrong one is an error. A
        required field it lacks may come from the run's input (a text input's ``field``, any
        field of a JSON or YAML object) or from the body of a genie serve request; one that no
        declared input gives is ``unfilled``: a warning, and ``genie run`` without an input is
        refused naming it."""
        entry = self.config.entry
        try:
            model.model_validate(entry.payload)
        except ValidationError as exc:
            self.entry_payload_problems(model, exc)

    def entry_payload_problems(self, model: type[Payload], exc: ValidationError) -> None:
        entry = self.config.entry
        at: Loc = ("entry", "payload")
        given = entry.input
        wrong = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            if err["type"] == "extra_forbidden" and len(loc) == 1:
                key = str(loc[0])
                self.fail(
                    (*at, key),
                    f"{entry.type!r} has no field {key!r}{did_you_mean(key, model.model_fields)}",
                )
            elif len(loc) <= 1 and (err["type"] == "missing" or not loc):
                # What the input (or a served request's body) may give, or make whole: a
                # check of the whole payload may hold once a text input's field is in it.
                text_lacks = given is not None and given.format == "text" and bool(loc)
                if given is None or (text_lacks and loc != (given.field,)):
                    self.unfilled += problems(exc, self.path, self.lines, at, model, [err])
            elif not is_under((*at, *loc), self.quiet):
                wrong.append(err)
        self.problems += problems(exc, self.path, self.lines, at, model, wrong)

    # --- governance ----------------------------------------------------------------------------
    def governance(self) -> tuple[list[Policy], int | None]:
        gov = self.config.governance
        if gov is None:
            return [], None
        policies: list[Policy] = []
        retention = None
        if gov.file is not None:
            policy_path = self.path.parent / gov.file
            named = Path(gov.file)
            problem = file_problem(policy_path)
            if problem == "does not exist" and len(named.parts) == 1 and not named.suffix:
                # A shipped policy file by name (``ai-policy``), as load_policy_file takes it.
                policy_path = shipped("policies").get(gov.file, policy_path)
                problem = file_problem(policy_path)
            if problem is not None:
                self.fail(("governance", "file"), f"policy file {os.fspath(policy_path)} {problem}")
            else:
                try:
                    found = load_policy_file(policy_path)
                except ConfigFileError as exc:
                    self.policy_file_problems(policy_path, exc.problems)
                else:
                    policies, retention = found.policies, found.retention_days
        elif gov.board is not None:
            try:
                board = validate(
                    BoardPolicy,
                    inline_board(gov.board),
                    self.path,
                    self.lines,
                    ("governance", "board"),
                )
                problems = board_problems(board)
                for where, problem in problems:
                    self.fail(("governance", "board", *where), problem)
                if not problems:
                    found = build_policies(board)
                    policies, retention = found.policies, found.retention_days
            except ConfigFileError as exc:
                self.problems += exc.problems
            except ConfigurationError as exc:
                self.fail(("governance", "board"), str(exc))
        board_names = {policy.name for policy in policies}
        declared: list[tuple[int, str]] = []  # each rule's index and id, once it is read
        for i, raw in enumerate(gov.rules):
            at: Loc = ("governance", "rules", i)
            try:
                rule = validate(_RuleDecl, raw, self.path, self.lines, at)
                declared.append((i, rule.id))
                policies.append(Rule(rule.id, rule.when, rule.decision, rule.reason))
            except ConfigFileError as exc:
                self.problems += exc.problems
            except ConfigurationError as exc:
                self.fail((*at, "when"), str(exc))
        for n, problem in rule_id_problems((rule_id for _, rule_id in declared), board_names):
            self.fail(("governance", "rules", declared[n][0], "id"), problem)
        if gov.classifier is not None:
            self.known_stack(gov.classifier.stack, ("governance", "classifier", "stack"))
        return policies, retention

    def policy_file_problems(self, policy_path: Path, found: list[str]) -> None:
        """The problems of the policy file ``governance.file`` names, said to be the policy
        file's: each names its own file and line, and the pipeline's key says how many."""
        if policy_path.resolve() == self.path.resolve():
            self.fail(
                ("governance", "file"),
                "names this pipeline file; it names a board policy file (version, governance, "
                "risk, data... as config/policies/ai-policy.yaml), or write the rules here "
                "under governance.board",
            )
            return
        n = len(found)
        self.fail(
            ("governance", "file"),
            f"policy file {os.fspath(policy_path)} has {n} problem{'s' if n > 1 else ''}, "
            "each named with the policy file's line",
        )
        self.headings += 1
        self.problems += [_WHERE.sub(r"\1policy file: ", p, count=1) for p in found]

    def check_inputs(self) -> Callable[..., object] | None:
        decl = self.config.simulation.inputs
        if decl is None:
            return None
        at: Loc = ("simulation", "inputs", "use")
        try:
            generator = import_object(decl.use, self.path.parent)
        except ConfigurationError as exc:
            self.fail(at, str(exc).replace("module:Class", "module:function"))
            return None
        if not callable(generator):
            self.fail(at, f"{decl.use!r} is not a function (an input generator is called)")
            return None
        if inspect.iscoroutinefunction(generator):
            # Its call is a coroutine, refused as no text only once the run began, and left
            # never awaited (Python's RuntimeWarning after the error).
            what = "an input generator is a plain def returning the input text"
            self.fail(at, f"{decl.use} is async def: {what}")
            return None
        try:
            inspect.signature(generator).bind(None, 0, **decl.params)
        except TypeError as exc:
            self.fail(
                ("simulation", "inputs", "params"),
                f"{decl.use} is called as (rng, session, **params): {exc}",
            )
            return None
        except ValueError:
            pass  # a builtin without a signature: calling it will tell
        return generator  # type: ignore[no-any-return]

    # --- the flow ------------------------------------------------------------------------------
    def graph(self) -> Graph:
        nodes = {}
        for decl in self.config.agents:
            spec = self.specs.get(decl.id)
            if spec is None:
                continue
            agent = self.instances[decl.id]
            nodes[decl.id] = Node(
                decl.id,
                "agent",
                None if spec.consumes_any else frozenset(p.message_type for p in spec.consumes),
                frozenset(p.message_type for p in spec.produces),
                passes_through=bool(getattr(agent, "passes_through", False)),
                forwards_to=tuple(getattr(agent, "forwards_to", ())),
            )
        for g in self.config.gathers:
            nodes[g.id] = Node(
                g.id,
                "gather",
                frozenset(g.expect.types) or None,
                frozenset({g.emit.type}),
                ((g.emit.type, g.emit.to),),
            )
        for w in self.config.workflows:
            checked = self.workflows.get(w.id)
            if checked is None:
                continue
            sends = [(w.state, s.agent) for s in checked.steps if s.agent is not None]
            sends += [
                (s.compensate.message_type, s.agent)
                for s in checked.steps
                if s.compensate is not None and s.agent is not None
            ]
            if w.emit.to is not None:
                sends.append((w.emit.type, w.emit.to))
            asks = {"genie.approval_request"} if any(s.approval for s in checked.steps) else set()
            nodes[w.id] = Node(
                w.id,
                "workflow",
                frozenset({w.state}),
                frozenset({w.emit.type, *(t for t, _ in sends), *asks}),
                tuple(sends),
            )
        entry = self.config.entry
        return Graph(
            nodes,
            self.config.routes,
            {d.id: d.subscribe for d in self.config.agents if d.subscribe},
            {d.id: d.fallback for d in self.config.agents if d.fallback},
            Edge(entry.sender, entry.type, entry.to),
            self.config.output,
        )

    def check_flow(self, graph: Graph) -> None:
        if self.problems:
            # Reachability over a broken graph would only repeat the errors above; a misspelt
            # output is a mistake of its own, said with them.
            self.known_type(self.config.output, ("output",))
            return
        producers = {t for n in graph.nodes.values() for t in n.produces} | {self.config.entry.type}
        for type_name in self.config.routes:
            if type_name not in producers:
                self.fail(("routes", type_name), f"nothing in this pipeline produces {type_name!r}")
        for i, decl in enumerate(self.config.agents):
            for j, pattern in enumerate(decl.subscribe):
                if not fnmatch.filter(producers, pattern):
                    self.fail(
                        ("agents", i, "subscribe", j),
                        f"nothing in this pipeline produces {pattern!r}",
                    )
        output = self.config.output
        reached, _ = graph.reachable()
        path = graph.output_path()
        # An agent whose handlers return messages but that declares none it produces: what
        # it sends cannot be routed (nor its types known), and that is why the output is
        # never reached. Named at the agent, where the fix is.
        silent = [
            (i, decl)
            for i, decl in enumerate(self.config.agents)
            if decl.id in reached
            and decl.id in self.specs
            and not self.specs[decl.id].produces
            and returns_messages(self.specs[decl.id].factory)
        ]
        if silent and path is None:
            for i, decl in silent:
                self.fail(
                    ("agents", i, "use"),
                    f"agent {decl.id!r} returns messages but its class "
                    f"{self.specs[decl.id].factory.__name__} declares no produces, so output "
                    f"{output!r} is never reached: list the payload types it returns "
                    "(produces = (...,))",
                )
            return
        if not self.known_type(output, ("output",)):
            return
        self.check_unrouted(graph, reached)
        self.check_gather_parts(graph)
        if path is not None:
            self.check_hops(*path)
            return
        loop = graph.cycle(reached)
        why = f"; the flow loops ({' -> '.join(loop)}) and never produces it" if loop else ""
        if not why and output == self.config.entry.type:
            why = "; the entry's own message is not the output, and no agent on its way makes one"
        self.fail(("output",), f"output {output!r} cannot be reached from the entry{why}")

    def check_gather_parts(self, graph: Graph) -> None:
        """Warn of each part a gather expects that nothing routes to it: every bundle would
        wait the whole deadline and leave partial. A warning, as a handler may still address
        the gather by name, which the graph cannot see."""
        for i, g in enumerate(self.config.gathers):
            kind = "types" if g.expect.types else "senders"
            edges = [e for e in graph.edges() if e.target == g.id]
            come = {e.type for e in edges} if g.expect.types else {e.source for e in edges}
            for j, part in enumerate(getattr(g.expect, kind)):
                if part not in come:
                    what = "type" if g.expect.types else "sender"
                    self.warn(
                        ("gathers", i, "expect", kind, j),
                        f"no route brings expected {what} {part!r} to gather {g.id!r}: every "
                        "bundle waits the deadline and leaves without it (route it to the "
                        "gather)",
                    )

    def check_hops(self, hops: int, path: list[str]) -> None:
        """The output must reach the caller within ``limits.max_hops``: each handler's message
        is one hop more than the one it handled, and one past the limit is denied."""
        limit = self.config.limits.max_hops
        if hops <= limit:
            return
        shown = path if len(path) <= 8 else [*path[:4], "...", *path[-3:]]
        self.fail(
            ("output",),
            f"output {self.config.output!r} is {hops} hops from the entry on its shortest way "
            f"({' -> '.join(shown)}), more than limits.max_hops {limit}: every run would be "
            "denied at the hop limit; raise limits.max_hops or shorten the way",
        )

    def check_unrouted(self, graph: Graph, reached: set[str]) -> None:
        """Warn of each type a reached agent produces that no agent takes and that is not the
        output: each one is dead-lettered, unrouted, unless a ``ctx.request`` awaits it."""
        takers = {
            t for spec in self.specs.values() for t in (p.message_type for p in spec.consumes)
        }
        takers.add("genie.approval_request")  # the runtime's approval desk takes these
        takers |= {w.state for w in self.config.workflows}  # a step's reply
        any_taker = any(spec.consumes_any for spec in self.specs.values())
        for i, decl in enumerate(self.config.agents):
            spec = self.specs.get(decl.id)
            if spec is None or decl.id not in reached or spec.passes_through:
                continue
            node = graph.nodes[decl.id]
            for type_name in sorted(node.produces):
                if type_name == self.config.output or type_name in takers or any_taker:
                    continue
                if graph.recipients(type_name) or dict(node.sends_to).get(type_name):
                    continue
                # The entry's agent replies to the caller, and a run ends on any message to
                # the caller: without its output, status fallback.
                replied = (
                    "a reply of it to the caller ends the run without the output (status "
                    "fallback); emitted, "
                    if decl.id == self.config.entry.to
                    else ""
                )
                self.warn(
                    ("agents", i, "use"),
                    f"agent {decl.id!r} produces {type_name!r}, which no agent takes and which "
                    f"is not the output: {replied}each one is dead-lettered (unrouted), unless "
                    "a ctx.request awaits it",
                )
