"""The agent catalogue: agent classes registered under a name that pipelines ``use:``.

Catalogues are found through the ``genie.catalogue`` entry point group: each entry point names
a ``register(catalogue)`` function. Genie's own catalogue (``genie_agents``) is one of them, so
the library never imports it and a user's package can add agents the same way. A catalogue may
add an agent by reference (``"package.module:Class"``): its module is imported when the agent
is first asked for, so a pipeline imports the agents it uses and no others.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from .._base.imports import import_module
from .._errors import ConfigurationError, did_you_mean
from .._message.payload import Payload
from .agent import Agent, Risk, declared_payloads

__all__ = ["AgentSpec", "Catalogue", "import_object"]

ENTRY_POINT_GROUP = "genie.catalogue"


@dataclass(frozen=True)
class AgentSpec:
    """What the catalogue knows of one agent class without creating it."""

    name: str
    factory: Callable[..., Agent]
    domain: str
    summary: str
    capabilities: tuple[str, ...]
    risk: Risk
    consumes: tuple[type[Payload], ...]
    produces: tuple[type[Payload], ...]
    consumes_any: bool
    passes_through: bool
    params: type[BaseModel]

    @property
    def source(self) -> str:
        return f"{self.factory.__module__}:{self.factory.__qualname__}"

    def create(self, id: str, params: Mapping[str, Any] | None = None) -> Agent:
        """Validate ``params`` against the constructor's keyword arguments, then build the agent.

        Raises ``pydantic.ValidationError`` for bad parameters and ``ConfigurationError`` when
        the constructor refuses them.
        """
        values = self.params.model_validate(dict(params or {}))
        try:
            agent = self.factory(id, **dict(values))
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"agent {self.name!r}: {exc}") from exc
        return agent

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (for ``genie agents --json``)."""
        return {
            "name": self.name,
            "domain": self.domain,
            "summary": self.summary,
            "capabilities": list(self.capabilities),
            "risk": str(self.risk),
            "consumes": ["*"]
            if self.consumes_any
            else sorted(p.message_type for p in self.consumes),
            "produces": ["*"]
            if self.passes_through
            else sorted(p.message_type for p in self.produces),
            "params": {
                name: {
                    "type": _type_name(field.annotation),
                    "required": field.is_required(),
                    "default": None if field.is_required() else field.get_default(),
                }
                for name, field in self.params.model_fields.items()
            },
            "source": self.source,
            # Each consumed and produced payload's JSON schema, by message type, so a caller
            # needs no source code to build a message the agent accepts.
            "schemas": {
                p.message_type: p.model_json_schema()
                for p in sorted({*self.consumes, *self.produces}, key=lambda p: p.message_type)
            },
        }


def _type_name(annotation: object) -> str:
    if typing.get_origin(annotation) is None:  # a plain class: its name (str, int, ...)
        name = getattr(annotation, "__name__", None)
        if name:
            return str(name)
    return str(annotation).replace("typing.", "")  # Literal['text', 'go'], int | None, ...


def spec_for(
    factory: Callable[..., Agent], *, name: str | None = None, domain: str = ""
) -> AgentSpec:
    """Describe an agent class: its consumes/produces, risk and constructor parameters."""
    if not isinstance(factory, type) or not inspect.iscoroutinefunction(
        getattr(factory, "handle", None)
    ):
        # By the name it was given (a pipeline's use:) when there is one: the repr of a class
        # beside a pipeline names the package made for its folder, which no file says.
        shown = repr(name) if name else repr(factory)
        if inspect.isfunction(factory):  # a first small agent is often written as one
            raise ConfigurationError(
                f"{shown} is a function, not an agent class: write a class of "
                "genie.BaseAgent whose @handler methods take the payload and ctx "
                "(docs/writing-agents.md)"
            )
        raise ConfigurationError(
            f"{shown} is not an agent class: an agent class has an async handle(msg, ctx)"
        )
    consumes, produces = declared_payloads(factory)
    doc = inspect.getdoc(factory) or ""
    return AgentSpec(
        name=name or factory.__name__,
        factory=factory,
        domain=domain,
        summary=doc.split("\n\n")[0].replace("\n", " "),
        capabilities=tuple(getattr(factory, "capabilities", ())),
        risk=Risk(getattr(factory, "risk", Risk.LOW)),
        consumes=consumes,
        produces=produces,
        consumes_any=bool(getattr(factory, "consumes_any", False)),
        passes_through=bool(getattr(factory, "passes_through", False)),
        params=_params_model(factory),
    )


def _params_model(factory: type) -> type[BaseModel]:
    """A model of the constructor's parameters after the agent's ``id`` (each given by name),
    so YAML ``params`` are checked with the same types the class declares."""
    init = factory.__init__  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(init)
    except NameError as exc:
        raise ConfigurationError(
            f"{factory.__qualname__}: cannot resolve annotations ({exc})"
        ) from exc
    fields: dict[str, Any] = {}
    # After ``self`` and the ``id`` the agent is built with (``create``): the rest by name.
    for param in list(inspect.signature(init).parameters.values())[2:]:
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            if param.default is inspect.Parameter.empty:
                raise ConfigurationError(
                    f"{factory.__qualname__}: parameter {param.name!r} is positional-only, so "
                    "params cannot set it: "
                    f"declare it after a '*' (def __init__(self, id, *, {param.name}))"
                )
            continue
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if param.name == "name":
            continue  # display only
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    model: type[BaseModel] = create_model(
        f"{factory.__name__}Params",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )
    return model


def import_object(reference: str, folder: Path | None = None) -> Any:
    """Import ``module:attribute``, the module from ``folder`` first when given (see
    ``genie._base.imports``); raises ConfigurationError saying what failed."""
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"{reference!r} is not of the form module:Class")
    module = import_module(module_name, folder)
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def named_like_a_class(name: str) -> bool:
    """Whether ``name`` reads as a class's Python path (``prices.Quoter``) or a class's name
    (``Quoter``) rather than a catalogue name, which is lower case with underscores."""
    parts = name.split(".")
    return all(p.isidentifier() for p in parts) and (len(parts) > 1 or name[:1].isupper())


class Catalogue:
    """Agent classes by catalogue name."""

    def __init__(self) -> None:
        self._specs: dict[str, AgentSpec] = {}
        self._references: dict[str, tuple[str, str]] = {}  # name -> (module:Class, domain)

    @classmethod
    def installed(cls) -> Catalogue:
        """A catalogue of every installed ``genie.catalogue`` entry point."""
        catalogue = cls()
        from importlib.metadata import entry_points  # ~20 ms to import: only when discovering

        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            register = ep.load()
            register(catalogue)
        return catalogue

    def add(
        self, factory: Callable[..., Agent] | str, *, name: str | None = None, domain: str = ""
    ) -> None:
        """Add an agent class, or a ``"module:Class"`` reference to one (then ``name`` is
        required), imported and checked when the agent is first asked for."""
        if isinstance(factory, str):
            if not name:
                raise ConfigurationError(f"catalogue reference {factory!r} needs a name")
            self._check_free(name, factory)
            self._references[name] = (factory, domain)
            return
        spec = spec_for(factory, name=name, domain=domain)
        taken = self._specs.get(spec.name)
        if taken is not None and taken.factory is not factory:
            raise ConfigurationError(
                f"catalogue name {spec.name!r} is taken by {taken.source}; cannot add {spec.source}"
            )
        self._check_free(spec.name, spec.source)
        self._specs[spec.name] = spec

    def _check_free(self, name: str, source: str) -> None:
        taken = self._references[name][0] if name in self._references else None
        if name in self._specs:
            taken = self._specs[name].source
        if taken is not None and taken != source:
            raise ConfigurationError(
                f"catalogue name {name!r} is taken by {taken}; cannot add {source}"
            )

    def get(self, name: str) -> AgentSpec:
        """The spec of ``name``; raises ConfigurationError with a close name if there is one."""
        spec = self._specs.get(name)
        if spec is None:
            if name not in self._references:
                raise ConfigurationError(
                    f"agent {name!r} is not in the catalogue{self.suggest(name)}"
                )
            reference, domain = self._references[name]
            spec = spec_for(import_object(reference), name=name, domain=domain)
            self._specs[name] = spec
            del self._references[name]
        return spec

    def suggest(self, name: str) -> str:
        """The closest name of the catalogue as a hint; for a name with none that reads as a
        class of the user's own, the ``module:Class`` form that names one."""
        close = did_you_mean(name, [*self._specs, *self._references])
        if close or not named_like_a_class(name):
            return close
        module, dot, cls = name.rpartition(".")
        if dot:
            return f" (a class of your own is named module:Class: did you mean '{module}:{cls}'?)"
        return (
            f" (a class of your own is named with its module, 'module:{name}': a .py file beside "
            "the pipeline file or an importable module)"
        )

    def __contains__(self, name: object) -> bool:
        return name in self._specs or name in self._references

    def __iter__(self) -> Iterator[AgentSpec]:
        for name in list(self._references):
            self.get(name)
        return iter(sorted(self._specs.values(), key=lambda s: (s.domain, s.name)))

    def __len__(self) -> int:
        return len(self._specs) + len(self._references)
