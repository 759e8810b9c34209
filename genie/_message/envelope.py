"""The message envelope: ``Message``, and ``caused_by``, which builds a message's reply."""

from __future__ import annotations

import copy
import enum
import functools
import operator
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema, core_schema

from .._base.surrogates import lone_surrogate_in
from .._errors import InvalidMessageError
from .freeze import freeze_message, freeze_payload, frozen_metadata, needs_freezing
from .frozen import NO_METADATA, FrozenDict
from .payload import Classification, MetaValue, Payload, Role, invalid_message

__all__ = ["RUNTIME_METADATA", "Message", "caused_by"]


def _fresh_id() -> str:
    return uuid.uuid4().hex


def _utcnow() -> datetime:
    return datetime.now(UTC)


@functools.cache
def _envelope() -> type[BaseModel]:
    """The envelope as a pydantic model, built when first asked for: only the boundaries
    (input files, the wire, the CLI, a user's constructor call) validate with it, so a program
    that only routes messages never builds it (docs/design/imports-and-gc.md)."""
    from pydantic import SerializeAsAny

    class _Envelope(BaseModel):
        """The envelope as a pydantic model: what validates and serializes a ``Message`` at the
        boundaries (its constructor, ``model_validate``, ``model_dump``, the JSON schema). The
        runtime's own hot path never builds one (see ``Message``)."""

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
                    data["metadata"] = {str(k): v for k, v in meta.items()}
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

    return _Envelope


# The envelope model's fields, in order (a test holds them to the model's).
# Metadata keys starting with this are the runtime's own (a partial bundle's missing parts):
# written by genie and inherited by what descends from the message, never taken from a caller.
RUNTIME_METADATA = "genie."

_FIELD_NAMES = (
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
# A message's storage: a slot per field, in the envelope's order; ``created_at`` is a property
# over the slot ``_created_at`` (the clock's float until read).
_SLOTS = tuple("_created_at" if name == "created_at" else name for name in _FIELD_NAMES)
_slot_values = operator.attrgetter(*_SLOTS)  # every slot, as a tuple: copies and pickles
_FIELD_INDEX = {name: i for i, name in enumerate(_FIELD_NAMES)}
_new = object.__new__
_set = object.__setattr__
_fromtimestamp = datetime.fromtimestamp


class _EnvelopeFields:
    """``Message.model_fields``: the envelope model's, read from it when asked for."""

    def __get__(self, obj: object, owner: type | None = None) -> dict[str, FieldInfo]:
        return _envelope().model_fields


class _Fields:
    """A message's slots, writable. ``Message`` refuses every assignment, so that no handler
    can change a message another recipient also holds; the runtime, which builds each message
    once from values it has already checked, fills one of these and then makes it a
    ``Message`` by assigning its class (the two have the same layout). This is the one place a
    message is written; docs/design/message.md says why it is not a pydantic model."""

    __slots__ = (*_SLOTS, "__weakref__")


_set_created_at = _Fields._created_at.__set__  # type: ignore[attr-defined]


def _filled(cls: type[Message], values: Sequence[Any]) -> Message:
    """A ``cls`` whose slots hold ``values`` (in ``_SLOTS`` order), unvalidated: the
    boundaries' path (validated models, copies, pickles)."""
    if cls is Message:
        fields: Any = _Fields()  # made a Message below (see ``_Fields``)
        (
            fields.id,
            fields.type,
            fields.sender,
            fields.recipient,
            fields.correlation_id,
            fields.causation_id,
            fields.trace_id,
            fields.role,
            fields.classification,
            fields.hops,
            fields._created_at,
            fields.metadata,
            fields.payload,
        ) = values
        fields.__class__ = Message
        msg: Message = fields
    else:
        # A user's subclass may not have ``_Fields``' layout (a ``__dict__`` of its own), so
        # its class cannot be assigned: its slots are set one by one.
        msg = _new(cls)
        for slot, value in zip(_SLOTS, values, strict=True):
            _set(msg, slot, value)
    freeze_message(msg)  # new values (a copy's update, a validated model's): frozen
    return msg


def _rebuilt(cls: type[Message], values: tuple[Any, ...]) -> Message:
    """Unpickles a message (``Message.__reduce__``)."""
    return _filled(cls, values)


class Message(_Fields):
    """An immutable envelope around one typed payload.

    ``correlation_id`` is the fan-in key (one per top-level request), ``causation_id`` the id of
    the message this one answers, ``hops`` how many handlers the request has passed through.

    A slotted class, not a pydantic model (``isinstance(msg, BaseModel)`` is false; see
    docs/design/message.md). It is validated at every boundary (the constructor, ``new``,
    ``model_validate``, a runtime's ``parse``) by a pydantic model of the same fields, and
    serialized by it (``model_dump``, ``model_dump_json``), so the wire and JSONL formats are
    pydantic's; the ``model_*`` methods are Message's own, named as pydantic names them. A
    message the runtime builds from values it has already checked (``child``, ``top``) is not
    validated again: its fields are slots and ``created_at`` is kept as the clock's float until
    read.
    """

    __slots__ = ()

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

    model_fields: ClassVar[_EnvelopeFields] = _EnvelopeFields()

    def __init__(self, **data: Any) -> None:
        """Validate ``data`` (pydantic's ``ValidationError`` on a bad field, as before); a
        text field holding a lone surrogate, or a value metadata cannot hold, is an
        ``InvalidMessageError`` naming it."""
        payload = data.get("payload")
        if isinstance(payload, Payload):  # else pydantic refuses it
            type_name = payload.message_type or type(payload).__name__
            refused = _lone_surrogate(type_name, data)
            if refused is not None:
                raise refused
            metadata = data.get("metadata")
            if isinstance(metadata, Mapping) and type(metadata) is not FrozenDict:
                # Checked as a handler's is, so that the same mistake reads the same words
                # at every door (pydantic would name the first type of the union it tried).
                data["metadata"] = frozen_metadata(type_name, metadata)
        values = _envelope()(**data).__dict__
        for name, slot in zip(_FIELD_NAMES, _SLOTS, strict=True):
            _set(self, slot, values[name])
        freeze_message(self)

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
        return dict(zip(_FIELD_NAMES, _slot_values(self), strict=True))

    # --- the pydantic model's API, through the boundary model ------------------------------
    def _model(self) -> BaseModel:
        return _envelope().model_construct(**self._fields())

    def model_dump(self, **options: Any) -> dict[str, Any]:
        return self._model().model_dump(**options)

    def model_dump_json(self, **options: Any) -> str:
        return self._model().model_dump_json(**options)

    @property
    def model_fields_set(self) -> set[str]:
        return set(_FIELD_NAMES)

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Message:
        if isinstance(obj, Message):
            return obj  # pydantic's default: an instance is not validated again
        return cls._of(_envelope().model_validate(obj, **options))

    @classmethod
    def model_validate_json(cls, data: str | bytes, **options: Any) -> Message:
        return cls._of(_envelope().model_validate_json(data, **options))

    @classmethod
    def model_json_schema(cls, **options: Any) -> dict[str, Any]:
        return _envelope().model_json_schema(**options)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        """A Message as a field of a user's pydantic model: validated and dumped as before."""
        from_data = core_schema.no_info_after_validator_function(
            cls._of, handler.generate_schema(_envelope())
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

    @classmethod
    def _of(cls, model: BaseModel) -> Message:
        values = model.__dict__
        return _filled(cls, [values[name] for name in _FIELD_NAMES])

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy, with ``update`` applied unvalidated (as pydantic's ``model_copy``), but for
        its text: one holding a lone surrogate is an ``InvalidMessageError`` naming the field;
        and for its type, which is its payload's as in every message: a new payload brings its
        own type, and a type its payload is not registered as is refused, naming the field
        (routed and judged by the type, it would reach, past the policies, the handler of the
        payload it carries)."""
        values: Sequence[Any] = _slot_values(self)
        if deep:
            values = copy.deepcopy(values)
        if update:
            refused = _lone_surrogate(self.type, update)
            if refused is not None:
                raise refused
            values = list(values)
            for name, value in update.items():
                at = _FIELD_INDEX.get(name)
                if at is None:
                    raise ValueError(f"Message has no field {name!r}")
                values[at] = value
            if "payload" in update or "type" in update:
                _typed_by_payload(values, "type" in update)
            for name, kind in (("role", Role), ("classification", Classification)):
                if name in update:
                    at = _FIELD_INDEX[name]
                    values[at] = _member(self.type, name, kind, values[at])
        return _filled(type(self), values)  # type: ignore[return-value]

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle and ``copy`` by value: the default would restore the slots through the
        # frozen ``__setattr__``.
        return _rebuilt, (type(self), _slot_values(self))

    # --- what a frozen pydantic model does -----------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        raise ValidationError.from_exception_data(
            "Message", [{"type": "frozen_instance", "loc": (name,), "input": value}]
        )

    def __delattr__(self, name: str) -> None:
        raise ValidationError.from_exception_data(
            "Message", [{"type": "frozen_instance", "loc": (name,), "input": None}]
        )

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
        if not isinstance(payload, Payload):
            raise _not_a_payload(payload)  # text or a dict has no message_type to name it by
        try:
            return cls(payload=payload, sender=sender, **fields)
        except ValidationError as exc:
            raise invalid_message(
                payload.message_type or type(payload).__name__, exc, _envelope()
            ) from exc

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
        kind = _KINDS.get(type(payload))  # a class with nothing to freeze, once it is known
        if kind is None:
            kind = _kind(type(payload))
            if kind:
                freeze_payload(payload, kind)
        if (
            not kind
            or type(sender) is not str
            or not sender
            or (recipient is not None and type(recipient) is not str)
            # Not ASCII: it may hold a lone surrogate, which ``new`` refuses naming the field.
            or not sender.isascii()
            or (recipient is not None and not recipient.isascii())
        ):
            return cls.new(payload, sender=sender, recipient=recipient, role=role, id=id)
        fields: Any = _Fields()  # made a Message below (see ``_Fields``)
        fields.id = id
        fields.type = kind
        fields.sender = sender
        fields.recipient = recipient
        fields.correlation_id = id
        fields.causation_id = None
        fields.trace_id = id
        fields.role = role
        fields.classification = Classification.INTERNAL
        fields.hops = 0
        fields._created_at = created_at
        fields.metadata = NO_METADATA
        fields.payload = payload
        fields.__class__ = Message
        msg: Message = fields
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
        (the hot path); the payload's own type is checked, and so is the text the caller gives
        (``metadata``, a ``recipient`` other than this message's sender), for lone surrogates.
        """
        return caused_by(
            self, payload, sender, id, created_at, recipient, role, classification, metadata
        )


# The envelope's text fields a caller may give: what a lone surrogate is looked for in.
_TEXT_FIELDS = frozenset(
    ("type", "sender", "recipient", "id", "correlation_id", "causation_id", "trace_id", "metadata")
)


def _lone_surrogate(type_name: str, fields: Mapping[str, Any]) -> InvalidMessageError | None:
    """The error for an envelope text field of ``fields`` (by name: the type, the sender, the
    recipient, an id, the metadata; other fields are not looked at) holding a lone surrogate,
    naming the field; None if none does. No file, log, bucket or JSON reader holds it as
    text: the audit log's row for a denial fails on it, a policy reading the message fails
    closed, so it is refused where the message is built: by the constructor (and so ``new``)
    and ``model_copy`` from a caller's fields, by ``caused_by`` from a handler's. A message read
    back (``model_validate``: the durable store's, another process's) is not refused: it is
    held already, and the policies name what they cannot read."""
    for name, value in fields.items():
        if name in _TEXT_FIELDS and not _plain(value):
            break
    else:
        return None  # the common message: ASCII names, ids and metadata
    found = lone_surrogate_in({name: v for name, v in fields.items() if name in _TEXT_FIELDS})
    if found is None:
        return None
    what = "a key is not" if found.key else "not"
    return InvalidMessageError(
        type_name,
        ".".join(str(step) for step in found.path),
        f"{what} valid UTF-8 text (a lone surrogate, U+{ord(found.text[found.at]):04X} at "
        f"index {found.at}): no log, file or policy can read it",
    )


def _plain(value: object) -> bool:
    """Whether ``value``, an envelope field, is ASCII text or None, or metadata whose keys and
    text (a string, a list or tuple of them) are ASCII and whose other values are numbers,
    bools or None: it holds no lone surrogate, and is not walked. False for anything else
    (then the walk says)."""
    if type(value) is str:
        return value.isascii()
    if value is None:
        return True
    if type(value) is not dict and not isinstance(value, Mapping):
        return False
    for key, item in value.items():
        if type(key) is not str or not key.isascii():
            return False
        if type(item) is str:
            plain = item.isascii()
        elif isinstance(item, tuple | list):
            plain = all(type(text) is str and text.isascii() for text in item)
        else:  # a number, a bool, None: no text (anything else is walked, then refused)
            plain = item is None or isinstance(item, int | float)
        if not plain:
            return False
    return True


# payload class -> its ``message_type``, for the Payload classes that set one and whose payloads
# have nothing to freeze (only scalar fields). A message's type is looked up here by its
# payload's class rather than read from the class each time (a read on a pydantic model class
# goes through its attribute hook), and a class found here needs no freezing: the common
# message pays one lookup for both. A class's type name is a ClassVar, fixed when it is
# registered, so it is read once per class; the table is of classes, not of runtimes: it holds
# no message and no agent.
_KINDS: dict[type, str] = {}


def _kind(cls: type) -> str:
    """``cls.message_type`` if ``cls`` is a Payload that sets one, else ``""``; remembered in
    ``_KINDS`` when its payloads have nothing to freeze."""
    # ``Payload in __mro__``: what isinstance decides here, without pydantic's ABC check.
    kind: str = cls.message_type if Payload in cls.__mro__ else ""  # type: ignore[attr-defined]
    if kind and not needs_freezing(cls):
        _KINDS[cls] = kind
    return kind


def _typed_by_payload(values: list[Any], typed: bool) -> None:
    """Make the type of a copy's ``values`` its payload's, or refuse a type given (``typed``)
    that the payload is not registered as, as the constructor does."""
    payload = values[_FIELD_INDEX["payload"]]
    if not isinstance(payload, Payload) or not payload.message_type:
        raise _not_a_payload(payload)
    at = _FIELD_INDEX["type"]
    if not typed:
        values[at] = payload.message_type
    elif values[at] != payload.message_type:
        raise InvalidMessageError(
            str(values[at]),
            "type",
            f"payload {type(payload).__name__} is registered as {payload.message_type!r}, "
            f"not {values[at]!r}: copy with the payload alone, which brings its own type",
        )


_E = TypeVar("_E", bound=enum.Enum)


def _member(type_name: str, field: str, kind: type[_E], value: object) -> _E:
    """``value`` as a member of ``kind`` (its text names one), as validation makes it; else
    the ``InvalidMessageError`` naming ``field`` and the choices."""
    try:
        return kind(value)
    except (ValueError, TypeError):
        choices = ", ".join(repr(member.value) for member in kind)
        raise InvalidMessageError(type_name, field, f"{value!r} is not one of {choices}") from None


def _not_a_payload(payload: object) -> InvalidMessageError:
    """The error for a ``payload`` argument that is not a payload model's instance."""
    return InvalidMessageError(
        type(payload).__name__, "payload", "must be a Payload subclass with message_type"
    )


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
    reply through it (a call with keywords binds them one by one)."""
    try:
        # A payload's class is in the table from its first reply on, if it has nothing to freeze.
        kind = _KINDS[type(payload)]
    except KeyError:
        kind = _kind(type(payload))
        if not kind:
            raise _not_a_payload(payload) from None
        freeze_payload(payload, kind)
    # Text the caller gives, not inherited (a reply's recipient is the parent's sender, checked
    # where the parent was built): refused as ``new`` refuses a caller's.
    if (
        recipient is not parent.sender
        and recipient is not None
        and (type(recipient) is not str or not recipient.isascii())
    ):
        if not isinstance(recipient, str):
            raise InvalidMessageError(
                kind,
                "recipient",
                f"an agent's id is text, or None to route by type: got {recipient!r}",
            )
        if (refused := _lone_surrogate(kind, {"recipient": recipient})) is not None:
            raise refused
    meta = parent.metadata
    if metadata or type(meta) is not FrozenDict:
        meta = frozen_metadata(kind, meta, metadata)
        if (
            metadata
            and not _plain(metadata)
            and (refused := _lone_surrogate(kind, {"metadata": metadata})) is not None
        ):
            raise refused
    # else: the parent's metadata, frozen, is shared (it cannot change)
    fields: Any = _Fields()  # made a Message below (see ``_Fields``)
    fields.id = id
    fields.type = kind
    fields.sender = sender
    fields.recipient = recipient
    fields.correlation_id = parent.correlation_id
    fields.causation_id = parent.id
    fields.trace_id = parent.trace_id
    # Checked as the constructor checks them: a policy compares them with the enum's members.
    fields.role = role if type(role) is Role else _member(kind, "role", Role, role)
    if classification is None:
        fields.classification = parent.classification
    elif type(classification) is Classification:
        fields.classification = classification
    else:
        fields.classification = _member(kind, "classification", Classification, classification)
    fields.hops = parent.hops + 1
    fields._created_at = created_at
    fields.metadata = meta
    fields.payload = payload
    fields.__class__ = Message
    msg: Message = fields
    return msg
