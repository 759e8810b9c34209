"""The message envelope: ``Message``, and ``caused_by``, which builds a message's reply.

``Message`` is a frozen slotted object, not a pydantic model: the runtime builds one or two
for every delivery and reads their fields many times on the way, and a pydantic model is
slower at both (docs/design/message.md has the measurements). A pydantic model of the same
fields, ``envelope_model()``, validates and serializes a message at the boundaries, so the
wire, JSONL and OpenAPI formats are pydantic's.
"""

from __future__ import annotations

import copy
import functools
import operator
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema

from .._errors import InvalidMessageError
from .freeze import FrozenDict
from .payload import Classification, MetaValue, Payload, Role, freeze_meta, invalid_message

__all__ = ["Message", "caused_by", "envelope_model"]


def _fresh_id() -> str:
    return uuid.uuid4().hex


def _utcnow() -> datetime:
    return datetime.now(UTC)


@functools.cache
def envelope_model() -> type[BaseModel]:
    """The envelope as a pydantic model, built when first asked for: only the boundaries need
    it, and ``import genie`` does not pay for building it (issue 19)."""
    from pydantic import SerializeAsAny

    class MessageModel(BaseModel):
        """The envelope's rules: what validates and serializes a ``Message`` at the boundaries
        (its constructor, ``model_validate``, ``model_dump``, the JSON schema)."""

        model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True, title="Message")

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
            if isinstance(data, Message):
                data = data._fields()
            if isinstance(data, Mapping):
                data = dict(data)
                payload = data.get("payload")
                if isinstance(payload, Payload) and "type" not in data:
                    data["type"] = payload.message_type
                meta = data.get("metadata")
                if isinstance(meta, Mapping):
                    data["metadata"] = {str(k): freeze_meta(v) for k, v in meta.items()}
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

    return MessageModel


# The envelope's fields, in order (a test holds them to the model's).
FIELDS = (
    "id",
    "type",
    "sender",
    "recipient",
    "correlation_id",
    "causation_id",
    "trace_id",
    "role",
    "classification",
    "hops",
    "created_at",
    "metadata",
    "payload",
)
# A message keeps ``created_at`` as it was stamped (the clock's float, from the runtime) in
# ``_created_at`` until it is first read; every other field under its own name.
_SLOTS = tuple("_created_at" if name == "created_at" else name for name in FIELDS)
_slot_values = operator.attrgetter(*_SLOTS)
_FIELD_INDEX = {name: i for i, name in enumerate(FIELDS)}
_fromtimestamp = datetime.fromtimestamp


def _frozen(name: str, value: object) -> ValidationError:
    return ValidationError.from_exception_data(
        "Message", [{"type": "frozen_instance", "loc": (name,), "input": value}]
    )


class Message:
    """An immutable envelope around one typed payload.

    ``correlation_id`` is the fan-in key (one per top-level request), ``causation_id`` the id of
    the message this one answers, ``hops`` how many handlers the request has passed through.

    Not a pydantic model: a slotted object whose fields cannot be assigned. Its boundary
    methods keep the names they had when it was one (``model_validate``, ``model_dump``,
    ``model_copy``, ...) and delegate to ``envelope_model()``, so a message validates, dumps
    and appears in JSON schemas exactly as that model; assigning a field raises pydantic's
    ``ValidationError`` (``frozen_instance``), the error the model raised. A message may be a
    field of a user's pydantic model. Messages the runtime builds from values it has already
    checked (``child``, ``top``) skip validation.
    """

    __slots__ = (*_SLOTS, "__weakref__")

    if TYPE_CHECKING:  # read-only to a type checker, as they are at run time

        @property
        def id(self) -> str: ...
        @property
        def type(self) -> str: ...
        @property
        def sender(self) -> str: ...
        @property
        def recipient(self) -> str | None: ...
        @property
        def correlation_id(self) -> str: ...
        @property
        def causation_id(self) -> str | None: ...
        @property
        def trace_id(self) -> str: ...
        @property
        def role(self) -> Role: ...
        @property
        def classification(self) -> Classification: ...
        @property
        def hops(self) -> int: ...
        @property
        def metadata(self) -> Mapping[str, MetaValue]: ...
        @property
        def payload(self) -> Payload: ...

        _created_at: datetime | float

    #: The envelope's field names, in order (what ``model_fields`` listed on the model).
    model_fields: ClassVar[tuple[str, ...]] = FIELDS

    def __init__(self, **data: Any) -> None:
        """Validate ``data`` (pydantic's ``ValidationError`` naming the bad field)."""
        values = envelope_model()(**data).__dict__
        _fill(self, *[values[name] for name in FIELDS])

    @property
    def created_at(self) -> datetime:
        at = self._created_at
        if type(at) is float:  # the clock's reading, converted once, when first read
            at = _fromtimestamp(at, UTC)
            _set_created_at(self, at)
        return at  # type: ignore[return-value]

    def _fields(self) -> dict[str, Any]:
        """Every field by name, ``created_at`` as a datetime."""
        self.created_at  # noqa: B018  # as a datetime
        return dict(zip(FIELDS, _slot_values(self), strict=True))

    # --- the boundaries, through the envelope model ------------------------------------------
    def model_dump(self, **options: Any) -> dict[str, Any]:
        """The fields as the envelope model dumps them (its options)."""
        return self._model().model_dump(**options)

    def model_dump_json(self, **options: Any) -> str:
        """The envelope as JSON, as the envelope model writes it (its options)."""
        return self._model().model_dump_json(**options)

    @property
    def model_fields_set(self) -> set[str]:
        """Every field: a message always holds all of them."""
        return set(FIELDS)

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Message:
        """A message from a mapping, validated (a message is returned as it is)."""
        if isinstance(obj, Message):
            return obj
        return cls._of(envelope_model().model_validate(obj, **options))

    @classmethod
    def model_validate_json(cls, data: str | bytes, **options: Any) -> Message:
        """A message from JSON text, validated."""
        return cls._of(envelope_model().model_validate_json(data, **options))

    @classmethod
    def model_json_schema(cls, **options: Any) -> dict[str, Any]:
        """The envelope's JSON schema (titled ``Message``)."""
        return envelope_model().model_json_schema(**options)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        """A message as a field of a user's pydantic model: validated and dumped by the
        envelope model, an instance kept as it is."""
        from_data = core_schema.no_info_after_validator_function(
            cls._of, handler.generate_schema(envelope_model())
        )
        return core_schema.json_or_python_schema(
            json_schema=from_data,
            python_schema=core_schema.no_info_wrap_validator_function(
                lambda value, validate: value if isinstance(value, cls) else validate(value),
                from_data,
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda msg, info: msg.model_dump(mode=info.mode), info_arg=True
            ),
        )

    def _model(self) -> BaseModel:
        return envelope_model().model_construct(**self._fields())

    @classmethod
    def _of(cls, model: BaseModel) -> Message:
        values = model.__dict__
        msg = _new(cls)
        _fill(msg, *[values[name] for name in FIELDS])
        return msg

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy, with ``update`` (field name -> value) applied unvalidated."""
        values: Sequence[Any] = _slot_values(self)
        if deep:
            values = copy.deepcopy(values)
        if update:
            values = list(values)
            for name, value in update.items():
                at = _FIELD_INDEX.get(name)
                if at is None:
                    raise ValueError(f"Message has no field {name!r}")
                values[at] = value
        msg = _new(type(self))
        _fill(msg, *values)
        return msg

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle and ``copy`` by value: the default would restore the slots through the
        # frozen ``__setattr__``.
        return _rebuilt, (type(self), _slot_values(self))

    # --- frozen, compared by value -----------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        raise _frozen(name, value)

    def __delattr__(self, name: str) -> None:
        raise _frozen(name, None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        if self is other:
            return True
        if type(self) is not type(other):
            return False
        self.created_at, other.created_at  # noqa: B018  # both as datetimes, then compare
        return _slot_values(self) == _slot_values(other)

    def __hash__(self) -> int:
        return hash(self.id)  # equal messages have equal ids

    def __repr__(self) -> str:
        values = self._fields()
        return f"{type(self).__name__}({', '.join(f'{n}={v!r}' for n, v in values.items())})"

    def __str__(self) -> str:
        return " ".join(f"{name}={value!r}" for name, value in self._fields().items())

    # --- building messages -------------------------------------------------------------------
    @classmethod
    def new(cls, payload: Payload, *, sender: str, **fields: Any) -> Message:
        """A top-level message, validated; fresh id, correlation and trace unless given."""
        try:
            return cls(payload=payload, sender=sender, **fields)
        except ValidationError as exc:
            raise invalid_message(payload.message_type or type(payload).__name__, exc) from exc

    @classmethod
    def top(
        cls,
        payload: Payload,
        id: str,
        sender: str,
        recipient: str | None,
        role: Role,
        created_at: datetime | float,
    ) -> Message:
        """A top-level message from typed values, as ``new`` would build it, unvalidated.
        ``created_at``: a datetime in UTC, or a POSIX timestamp.

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
        msg = _new(Message)
        _fill(
            msg, id, kind, sender, recipient, id, None, id, role, Classification.INTERNAL,
            0, created_at, {}, payload,
        )  # fmt: skip
        return msg

    def child(
        self,
        payload: Payload,
        *,
        sender: str,
        id: str,
        created_at: datetime | float,
        recipient: str | None = None,
        role: Role = Role.AGENT,
        classification: Classification | None = None,
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> Message:
        """A message caused by this one: correlation and trace inherited, hops + 1.
        ``created_at``: a datetime in UTC, or a POSIX timestamp (what the runtime passes).

        Every field comes from an already validated value, so construction skips validation
        (the hot path); the payload's own type is checked.
        """
        return caused_by(
            self, payload, sender, id, created_at, recipient, role, classification, metadata
        )


_new = object.__new__
# Each slot's own setter: a message is filled past its frozen ``__setattr__``, field by field.
(
    _set_id,
    _set_type,
    _set_sender,
    _set_recipient,
    _set_correlation_id,
    _set_causation_id,
    _set_trace_id,
    _set_role,
    _set_classification,
    _set_hops,
    _set_created_at,
    _set_metadata,
    _set_payload,
) = [vars(Message)[slot].__set__ for slot in _SLOTS]


def _fill(
    msg: Message,
    id: str,
    type: str,
    sender: str,
    recipient: str | None,
    correlation_id: str,
    causation_id: str | None,
    trace_id: str,
    role: Role,
    classification: Classification,
    hops: int,
    created_at: datetime | float,
    metadata: Mapping[str, MetaValue],
    payload: Payload,
) -> None:
    """Set every field of a new ``msg``, unvalidated."""
    _set_id(msg, id)
    _set_type(msg, type)
    _set_sender(msg, sender)
    _set_recipient(msg, recipient)
    _set_correlation_id(msg, correlation_id)
    _set_causation_id(msg, causation_id)
    _set_trace_id(msg, trace_id)
    _set_role(msg, role)
    _set_classification(msg, classification)
    _set_hops(msg, hops)
    _set_created_at(msg, created_at)
    _set_metadata(msg, metadata)
    _set_payload(msg, payload)


def _rebuilt(cls: type[Message], values: tuple[Any, ...]) -> Message:
    """Unpickles a message (``Message.__reduce__``)."""
    msg = _new(cls)
    _fill(msg, *values)
    return msg


# payload class -> its ``message_type``, for the Payload classes that set one. A reply's type is
# looked up here by its payload's class, because checking that it is a Payload and reading its
# type through pydantic's model class are slow next to a lookup. A class's type name is a
# ClassVar, fixed when it is registered, so it is read once per class; like
# ``CONTAINER_FIELDS``, the table is of classes, not of runtimes.
_KINDS: dict[type, str] = {}


def _kind(cls: type) -> str:
    """``cls.message_type`` if ``cls`` is a Payload that sets one (then remembered), else ``""``."""
    # ``Payload in __mro__``: what isinstance decides here, without pydantic's ABC check.
    kind: str = cls.message_type if Payload in cls.__mro__ else ""  # type: ignore[attr-defined]
    if kind:
        _KINDS[cls] = kind
    return kind


def caused_by(
    parent: Message,
    payload: Payload,
    sender: str,
    id: str,
    created_at: datetime | float,
    recipient: str | None,
    role: Role,
    classification: Classification | None,
    metadata: Mapping[str, MetaValue] | None,
) -> Message:
    """``parent.child(...)`` with every argument by position: a handler's contexts build each
    reply through it."""
    try:
        kind = _KINDS[type(payload)]
    except KeyError:  # the payload class's first reply
        kind = _kind(type(payload))
    if not kind:
        raise InvalidMessageError(
            type(payload).__name__, "payload", "must be a Payload subclass with message_type"
        )
    meta = parent.metadata
    if metadata or type(meta) is not FrozenDict:
        meta = dict(meta)
        if metadata:
            meta.update({str(k): freeze_meta(v) for k, v in metadata.items()})
    # else: the parent's metadata, frozen when it was routed, is shared (it cannot change)
    msg = _new(Message)
    _fill(
        msg,
        id,
        kind,
        sender,
        recipient,
        parent.correlation_id,
        parent.id,
        parent.trace_id,
        role,
        parent.classification if classification is None else classification,
        parent.hops + 1,
        created_at,
        meta,
        payload,
    )
    return msg
