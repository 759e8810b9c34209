"""The message envelope, typed payloads and the registry that maps type names to payload models."""

from __future__ import annotations

import enum
import functools
import itertools
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, model_validator

from ._errors import ConfigurationError, InvalidMessageError, UnknownMessageTypeError
from ._freeze import FrozenDict
from ._nesting import MAX_DEPTH, json_depth_exceeds, top_level_type, value_depth_exceeds

__all__ = [
    "Classification",
    "IdSource",
    "Message",
    "MessageTypes",
    "MetaValue",
    "Payload",
    "Role",
]

# Metadata values are immutable so that a shallow copy per message is a real copy: a message can
# never see a change made through another message's metadata (the Go bus shared one map).
MetaValue = str | int | float | bool | None | tuple[str, ...]


class Role(enum.StrEnum):
    USER = "user"
    SYSTEM = "system"
    AGENT = "agent"
    TOOL = "tool"
    OBSERVER = "observer"
    EVALUATOR = "evaluator"


class Classification(enum.StrEnum):
    """Data classification, ordered: public < internal < pii < secret."""

    PUBLIC = "public"
    INTERNAL = "internal"
    PII = "pii"
    SECRET = "secret"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {c: i for i, c in enumerate(Classification)}


class Payload(BaseModel):
    """Base of every message payload: a frozen model registered under one message type name.

    Subclasses set ``message_type``; the name and the model then map one to one::

        class ForecastResult(Payload):
            message_type = "forecast_result"
            monthly_net_cents: int
    """

    # Schemas are built on first use: a catalogue of 57 agents imports ~100 models and would
    # otherwise pay for all of them at start-up.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    message_type: ClassVar[str] = ""


def _fresh_id() -> str:
    return uuid.uuid4().hex


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class Message(BaseModel):
    """An immutable envelope around one typed payload.

    ``correlation_id`` is the fan-in key (one per top-level request), ``causation_id`` the id of
    the message this one answers, ``hops`` how many handlers the request has passed through.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    id: str = Field(default_factory=_fresh_id, min_length=1)
    type: str = Field(min_length=1)
    sender: str = Field(min_length=1)
    recipient: str | None = None
    correlation_id: str = Field(default_factory=_fresh_id, min_length=1)
    causation_id: str | None = None
    trace_id: str = Field(default_factory=_fresh_id, min_length=1)
    role: Role = Role.AGENT
    classification: Classification = Classification.INTERNAL
    hops: int = Field(default=0, ge=0)
    created_at: datetime = Field(default_factory=_utcnow)
    metadata: Mapping[str, MetaValue] = Field(default_factory=dict)
    payload: SerializeAsAny[Payload]

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            payload = data.get("payload")
            if isinstance(payload, Payload) and "type" not in data:
                data["type"] = payload.message_type
            meta = data.get("metadata")
            if isinstance(meta, Mapping):
                data["metadata"] = {str(k): _freeze(v) for k, v in meta.items()}
        return data

    @model_validator(mode="after")
    def _payload_matches_type(self) -> Self:
        if type(self.payload) is Payload:
            raise ValueError(f"message {self.type!r} needs a typed payload, not a bare Payload")
        if self.payload.message_type != self.type:
            raise ValueError(
                f"payload {type(self.payload).__name__} is registered as "
                f"{self.payload.message_type!r}, not {self.type!r}"
            )
        return self

    @classmethod
    def new(cls, payload: Payload, *, sender: str, **fields: Any) -> Message:
        """A top-level message, validated; fresh id, correlation and trace unless given."""
        try:
            return cls(payload=payload, sender=sender, **fields)
        except ValidationError as exc:
            raise _translate(payload.message_type or type(payload).__name__, exc) from exc

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        # Messages built by _construct share one frozenset of field names (no set allocated
        # per message); pydantic's copy adds the updated names to it, so give it its own.
        fields_set: object = self.__pydantic_fields_set__
        if isinstance(fields_set, frozenset):
            _set(self, "__pydantic_fields_set__", set(fields_set))
        return super().model_copy(update=update, deep=deep)

    @classmethod
    def top(
        cls,
        payload: Payload,
        id: str,
        sender: str,
        recipient: str | None,
        role: Role,
        created_at: datetime,
    ) -> Message:
        """A top-level message from typed values, as ``new`` would build it, unvalidated.

        Falls back to ``new`` (and its error naming the field) for anything it does not check.
        """
        kind = getattr(payload, "message_type", "")
        if (
            not isinstance(payload, Payload)
            or not kind
            or type(sender) is not str
            or not sender
            or (recipient is not None and type(recipient) is not str)
        ):
            return cls.new(payload, sender=sender, recipient=recipient, role=role, id=id)
        return _construct(
            id=id,
            type=kind,
            sender=sender,
            recipient=recipient,
            correlation_id=id,
            causation_id=None,
            trace_id=id,
            role=role,
            classification=Classification.INTERNAL,
            hops=0,
            created_at=created_at,
            metadata={},
            payload=payload,
        )

    def child(
        self,
        payload: Payload,
        *,
        sender: str,
        id: str,
        created_at: datetime,
        recipient: str | None = None,
        role: Role = Role.AGENT,
        classification: Classification | None = None,
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> Message:
        """A message caused by this one: correlation and trace inherited, hops + 1.

        Every field comes from an already validated value, so construction skips validation
        (the hot path); the payload's own type is checked.
        """
        # ``Payload in __mro__``: what isinstance decides here, without pydantic's ABC check
        if Payload not in type(payload).__mro__ or not payload.message_type:
            raise InvalidMessageError(
                type(payload).__name__, "payload", "must be a Payload subclass with message_type"
            )
        # The parent's fields read from its ``__dict__``: pydantic defines ``__getattr__``, so
        # every attribute read on a model goes through a slower hook than a dict lookup.
        parent = self.__dict__
        meta = parent["metadata"]
        if metadata or type(meta) is not FrozenDict:
            meta = dict(meta)
            if metadata:
                meta.update({str(k): _freeze(v) for k, v in metadata.items()})
        # else: the parent's metadata, frozen when it was routed, is shared (it cannot change)
        # ``_construct``, inlined: a handler's every output is built here.
        msg: Message = _new(Message)
        _set(
            msg,
            "__dict__",
            {
                "id": id,
                "type": payload.message_type,
                "sender": sender,
                "recipient": recipient,
                "correlation_id": parent["correlation_id"],
                "causation_id": parent["id"],
                "trace_id": parent["trace_id"],
                "role": role,
                "classification": (
                    parent["classification"] if classification is None else classification
                ),
                "hops": parent["hops"] + 1,
                "created_at": created_at,
                "metadata": meta,
                "payload": payload,
            },
        )
        _set(msg, "__pydantic_fields_set__", _ALL_FIELDS)
        _set(msg, "__pydantic_extra__", None)
        _set(msg, "__pydantic_private__", None)
        return msg


_new = object.__new__
_set = object.__setattr__


def _construct(**fields: Any) -> Message:
    # What Message.model_construct does, minus its per-field default handling (~3x slower):
    # every field is given and already valid. Pydantic reads exactly these four attributes.
    msg: Message = _new(Message)
    _set(msg, "__dict__", fields)
    _set(msg, "__pydantic_fields_set__", _ALL_FIELDS)  # shared; model_copy below copes
    _set(msg, "__pydantic_extra__", None)
    _set(msg, "__pydantic_private__", None)
    return msg


_ALL_FIELDS = frozenset(Message.model_fields)


def _translate(type_name: str, exc: ValidationError) -> InvalidMessageError:
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in err["loc"]) or "<root>"
    return InvalidMessageError(type_name, field, err["msg"])


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class IdSource:
    """Message ids for one runtime: a random prefix and a counter.

    Cheaper than a UUID per message, unique across runtimes in a process (the prefix), and
    reproducible when seeded (simulations). The prefix is letters only: an id travels in
    metadata (``trace_id``) that the policies scan, and a hex prefix that happened to be all
    digits (1 in 280) read as a 12-digit identity number and denied the request.
    """

    def __init__(self, seed: int | None = None) -> None:
        bits = random.Random(seed).getrandbits(48) if seed is not None else uuid.uuid4().int
        bits &= 2**48 - 1
        letters = []
        for _ in range(11):  # 26**11 > 2**48
            bits, digit = divmod(bits, 26)
            letters.append(_LETTERS[digit])
        self._prefix = "".join(letters) + "-"
        # ``prefix + format(n, "x")`` for n = 1, 2, ... built by C callables only: calling it
        # runs no Python frame (an id is taken for every message).
        ids = map(self._prefix.__add__, map("{:x}".format, itertools.count(1)))
        self.next: Callable[[], str] = functools.partial(next, ids)

    def __call__(self) -> str:
        return self.next()


class MessageTypes:
    """A registry of payload models by message type name, owned by one runtime.

    Boundaries (YAML, CLI, wire) parse through it, so an unknown type or a bad field fails
    there with an error that names both.
    """

    def __init__(self, models: Iterable[type[Payload]] = ()) -> None:
        self._models: dict[str, type[Payload]] = {}
        self.register(*models)

    def register(self, *models: type[Payload]) -> None:
        """Register payload models; a second model under a taken name is a ConfigurationError."""
        for model in models:
            name = getattr(model, "message_type", "")
            if not (isinstance(model, type) and issubclass(model, Payload)) or not name:
                raise ConfigurationError(
                    f"cannot register {model!r}: a payload model is a Payload subclass "
                    "that sets message_type"
                )
            taken = self._models.get(name)
            if taken is not None and taken is not model:
                raise ConfigurationError(
                    f"message type {name!r} is already registered to "
                    f"{taken.__module__}.{taken.__qualname__}; one type name maps to one model"
                )
            self._models[name] = model

    def get(self, name: str) -> type[Payload]:
        try:
            return self._models[name]
        except KeyError:
            raise UnknownMessageTypeError(name, sorted(self._models)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def names(self) -> list[str]:
        return sorted(self._models)

    def is_registered(self, payload: Payload) -> bool:
        return self._models.get(payload.message_type) is type(payload)

    def parse_payload(self, name: str, data: Mapping[str, Any] | str | bytes) -> Payload:
        """Validate ``data`` (a mapping or JSON text) as the payload of message type ``name``.

        Data nested deeper than ``MAX_DEPTH`` (64) levels is refused as invalid."""
        model = self.get(name)
        _check_depth(name, data)
        try:
            if isinstance(data, str | bytes):
                return model.model_validate_json(data)
            return model.model_validate(data)
        except ValidationError as exc:
            raise _translate(name, exc) from exc

    def parse_message(self, data: Mapping[str, Any] | str | bytes) -> Message:
        """Validate a whole envelope (as produced by ``Message.model_dump(mode="json")``).

        An envelope nested deeper than ``MAX_DEPTH`` (64) levels is refused as invalid."""
        if isinstance(data, str | bytes):
            import json

            try:
                text = data.decode() if isinstance(data, bytes) else data
                if json_depth_exceeds(text):
                    raise _too_deep(top_level_type(text) or "<unknown>")
                data = json.loads(text)
            except ValueError as exc:
                raise InvalidMessageError("<unknown>", "<root>", f"not JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise InvalidMessageError("<unknown>", "<root>", "a message is a JSON object")
        type_name = data.get("type")
        if not isinstance(type_name, str):
            raise InvalidMessageError("<unknown>", "type", "a message needs a string 'type'")
        _check_depth(type_name, data)
        payload = self.parse_payload(type_name, data.get("payload", {}))
        try:
            return Message.model_validate({**data, "payload": payload})
        except ValidationError as exc:
            raise _translate(type_name, exc) from exc


def _too_deep(type_name: str) -> InvalidMessageError:
    return InvalidMessageError(
        type_name, "<root>", f"nested deeper than {MAX_DEPTH} levels of arrays and objects"
    )


def _check_depth(type_name: str, data: Mapping[str, Any] | str | bytes) -> None:
    if isinstance(data, bytes):
        data = data.decode(errors="replace")  # brackets are ASCII: replacement changes none
    if json_depth_exceeds(data) if isinstance(data, str) else value_depth_exceeds(data):
        raise _too_deep(type_name)
