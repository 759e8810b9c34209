"""The registry of message types: which payload model each type name maps to, and the
boundaries' parsing of payloads and whole envelopes through it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from .._base.nesting import MAX_DEPTH, json_depth_exceeds, top_level_type, value_depth_exceeds
from .._errors import ConfigurationError, InvalidMessageError, UnknownMessageTypeError
from .envelope import Message
from .envelope import _envelope as envelope
from .payload import Payload, invalid_message

__all__ = ["MessageTypes", "too_deep"]


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
            raise invalid_message(name, exc, model) from exc

    def parse_message(self, data: Mapping[str, Any] | str | bytes) -> Message:
        """Validate a whole envelope (as produced by ``Message.model_dump(mode="json")``).

        An envelope nested deeper than ``MAX_DEPTH`` (64) levels is refused as invalid."""
        if isinstance(data, str | bytes):
            text = data.decode() if isinstance(data, bytes) else data
            if json_depth_exceeds(text):
                raise too_deep(top_level_type(text) or "<unknown>")
            return self.parse_bounded_message(_load_json(text))
        if isinstance(data, Mapping) and isinstance(data.get("type"), str):
            _check_depth(data["type"], data)
        return self.parse_bounded_message(data)

    def parse_bounded_message(self, data: object) -> Message:
        """``parse_message`` of an envelope whose nesting the caller has already bounded to
        ``MAX_DEPTH`` (for instance by checking the JSON text it was loaded from), so neither
        the envelope nor the payload inside it is walked again for depth."""
        if not isinstance(data, Mapping):
            raise InvalidMessageError("<unknown>", "<root>", "a message is a JSON object")
        type_name = data.get("type")
        if not isinstance(type_name, str):
            raise InvalidMessageError("<unknown>", "type", "a message needs a string 'type'")
        raw = data.get("payload", {})
        if isinstance(raw, str | bytes):
            payload = self.parse_payload(type_name, raw)  # JSON text inside: its own check
        else:
            model = self.get(type_name)
            try:
                payload = model.model_validate(raw)
            except ValidationError as exc:
                raise invalid_message(type_name, exc, model) from exc
        try:
            return Message.model_validate({**data, "payload": payload})
        except ValidationError as exc:
            raise invalid_message(type_name, exc, envelope()) from exc


def _load_json(text: str) -> object:
    import json

    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidMessageError("<unknown>", "<root>", f"not JSON: {exc}") from exc


def too_deep(type_name: str) -> InvalidMessageError:
    return InvalidMessageError(
        type_name, "<root>", f"nested deeper than {MAX_DEPTH} levels of arrays and objects"
    )


def _check_depth(type_name: str, data: Mapping[str, Any] | str | bytes) -> None:
    if isinstance(data, bytes):
        data = data.decode(errors="replace")  # brackets are ASCII: replacement changes none
    if json_depth_exceeds(data) if isinstance(data, str) else value_depth_exceeds(data):
        raise too_deep(type_name)
