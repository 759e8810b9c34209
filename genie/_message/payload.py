"""What a message carries: the typed payload, the sender's role, the data's classification and
the metadata values an envelope may hold."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from .._errors import InvalidMessageError, did_you_mean, validation_problems

__all__ = [
    "Classification",
    "MetaValue",
    "Payload",
    "Role",
    "invalid_message",
    "unencodable",
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
    # otherwise pay for all of them at start-up. A message travels as JSON (a store, NATS,
    # serve, ``--json``), which has no NaN or infinity: a float that is one is refused here,
    # naming its field, rather than turned into null or invalid JSON on its way.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True, allow_inf_nan=False)
    message_type: ClassVar[str] = ""


def invalid_message(
    type_name: str, exc: ValidationError, model: type[BaseModel] | None
) -> InvalidMessageError:
    """Pydantic's report on a message of type ``type_name`` as genie's error: the type, the
    first field at fault, then every other problem; a key that is no field of ``model`` (the
    payload's, or the envelope's) is said to be unknown, with the closest field."""
    field, problem = validation_problems(
        exc.errors(include_url=False), lambda err: _closest(err, model)
    )
    return InvalidMessageError(type_name, field, problem)


def _closest(err: ErrorDetails, model: type[BaseModel] | None) -> str:
    """The field of ``model`` (or of the model nested in it that holds the key) closest to an
    unknown key, as a hint."""
    from .._base.yamlconf import keys_at  # read for a mistake only

    return did_you_mean(str(err["loc"][-1]), keys_at(model, err["loc"]))


def unencodable(
    type_name: str,
    payload: BaseModel,
    metadata: Mapping[str, object],
    consequence: str,
    shown: Callable[[object], str] = str,
) -> InvalidMessageError | None:
    """The error for a message of type ``type_name`` holding text UTF-8 cannot encode: a string
    or key of its payload or metadata with a lone surrogate (a ``str`` built in Python can hold
    one). It names the field (``payload.items.2.note``, ``metadata.user_id``; each key on the way
    as ``shown`` gives it), never the text, and says what cannot be done (``consequence``); None
    when there is none. A walk of every string: asked once a JSON dump or an encode has failed,
    not of every message."""
    from .._base.surrogates import lone_surrogate_in

    try:
        plain: object = payload.model_dump()  # keys as they are (the JSON mode's are not)
    except Exception:  # no plain form either: whatever the dump raised stands
        plain = None
    for top, value in (("payload", plain), ("metadata", metadata)):
        found = lone_surrogate_in(value)
        if found is None:
            continue
        field = ".".join([top, *(shown(step) for step in found.path)])
        what = "a key is not" if found.key else "not"
        return InvalidMessageError(
            type_name,
            field,
            f"{what} valid UTF-8 text (a lone surrogate, U+{ord(found.text[found.at]):04X} at "
            f"index {found.at}): {consequence}",
        )
    return None
