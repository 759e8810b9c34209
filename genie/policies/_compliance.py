"""Consent, explainability and payload schemas."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

from .._base.yamlconf import Loc, key_of, not_text
from .._errors import ConfigurationError
from .._message.envelope import Message
from .._runtime.policy import Decision, DeliveryCheck, PlanStep
from ._content import ContentView, quote
from ._normalise import blank

__all__ = [
    "Consent",
    "ConsentCategory",
    "ConsentLedger",
    "Explainability",
    "InMemoryConsentLedger",
    "JsonSchema",
    "check_schema",
]

ALLOW = Decision.ALLOW


class ConsentCategory(enum.StrEnum):
    TRANSACTIONS = "transactions"
    PORTFOLIO = "portfolio"
    RECOMMENDATIONS = "recommendations"
    THIRD_PARTY_SHARE = "third_party_share"


class ConsentLedger(Protocol):
    """Where consent lives. ``has_active`` is asked for every delivery of a mapped type, in
    admission, before the recipient's mailbox: it answers at once, without waiting on I/O (a
    real ledger keeps the answers it serves). If it raises, the delivery is denied."""

    def has_active(self, user_id: str, category: str) -> bool: ...


class InMemoryConsentLedger:
    """Grants and revocations in memory (as Go's ledger: revoke withdraws every grant)."""

    def __init__(self) -> None:
        self._active: set[tuple[str, str]] = set()

    def grant(self, user_id: str, category: str) -> None:
        self._active.add((user_id, str(category)))

    def revoke(self, user_id: str, category: str) -> None:
        self._active.discard((user_id, str(category)))

    def has_active(self, user_id: str, category: str) -> bool:
        return (user_id, str(category)) in self._active


class Consent:
    """A message type mapped to a consent category needs ``user_id`` with active consent."""

    name = "consent"

    def __init__(self, ledger: ConsentLedger, type_to_category: Mapping[str, str]) -> None:
        self.ledger = ledger
        self.type_to_category: Mapping[str, str] = MappingProxyType(dict(type_to_category))

    @property
    def settings(self) -> dict[str, object]:
        """What it decides by (``DeclaredPolicy``): the categories. Not the ledger, where the
        grants live: a worker of a scale-out asks the namespace's, the entry its own."""
        return {"type_to_category": dict(self.type_to_category)}

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        check = self._user_checked(msg)
        return check if isinstance(check, Decision) else check(msg, recipient)

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    # The step reads the envelope; the ledger is asked by the check it leaves, for
    # every delivery.
    plan_reads_envelope: ClassVar[bool] = True

    @property
    def plan_class(self) -> type[object]:
        return Consent

    def plan_step(self, message_type: str) -> PlanStep | None:
        return self._user_checked if message_type in self.type_to_category else None

    def screen_part(self, message_type: str) -> None:
        return None  # no content check to screen

    def _user_checked(self, msg: Message) -> Decision | DeliveryCheck:
        category = self.type_to_category.get(msg.type)
        if category is None:
            return ALLOW
        user = msg.metadata.get("user_id")
        if not isinstance(user, str) or not user:
            return Decision.deny(self.name, "consent required but user id missing")
        # The ledger is asked for every delivery: consent may be granted or revoked between
        # two recipients of one message.
        return lambda m, r: self._ask_ledger(user, category)

    def _ask_ledger(self, user: str, category: str) -> Decision:
        if not self.ledger.has_active(user, category):
            return Decision.deny(self.name, f"missing active consent for category {category}")
        return ALLOW


class Explainability:
    """For the listed types, the payload must carry a non-empty string ``rationale`` at the
    root, or top-level lists whose every item is an object carrying one: each output explains
    itself. An empty list has nothing to explain (a statement with only income gets no
    recommendations), so it passes; a payload with neither a rationale nor a list does not."""

    name = "explainability"

    def __init__(
        self,
        applies_to: Iterable[str],
        rationale_field: str = "rationale",
        view: ContentView | None = None,
    ) -> None:
        self.applies_to = frozenset(applies_to)
        self.field = rationale_field or "rationale"
        self._view = view or ContentView()

    @property
    def settings(self) -> dict[str, object]:
        """What it decides by (``DeclaredPolicy``)."""
        return {"applies_to": sorted(self.applies_to), "rationale_field": self.field}

    def _has(self, item: Any) -> bool:
        value = item.get(self.field) if isinstance(item, dict) else None
        return isinstance(value, str) and not blank(value)

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        if msg.type not in self.applies_to:
            return ALLOW
        return self._check(msg)

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = False

    @property
    def plan_class(self) -> type[object]:
        return Explainability

    def plan_step(self, message_type: str) -> PlanStep | None:
        return self._check if message_type in self.applies_to else None

    def screen_part(self, message_type: str) -> None:
        return None  # no content check to screen

    def _check(self, msg: Message) -> Decision:
        data = self._view.data(msg)
        if isinstance(data, dict):
            if self._has(data):
                return ALLOW
            lists = [v for v in data.values() if isinstance(v, list)]
            if lists and all(self._has(item) for items in lists for item in items):
                return ALLOW
        return Decision.deny(self.name, "missing rationale for output")


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
_KEYWORDS = {
    "type", "required", "properties", "items", "enum", "minLength", "maxLength",
    "minimum", "maximum", "additionalProperties", "description", "title", "$schema",
}  # fmt: skip


class SchemaError(ConfigurationError):
    """A schema this validator cannot honour: ``at`` is where in it (``("schemas",
    "payment", "type")``), ``reason`` what is wrong there."""

    def __init__(self, at: Loc, reason: str) -> None:
        super().__init__(f"{key_of(at)}: {reason}")
        self.at = at
        self.reason = reason


_BOUNDS = ("minLength", "maxLength", "minimum", "maximum")
_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def bounds_from_text(schema: Any) -> Any:
    """``schema`` as a pipeline file reads its values, where a whole-value ``${VAR}`` writes
    text and is converted like the value it replaces: a bound (``minimum: "${MIN:-1}"``)
    that is the text of a number is that number, down to nested schemas. Anything else is
    left as it is, for ``check_schema`` to judge."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for bound in _BOUNDS:
        value = out.get(bound)
        if isinstance(value, str) and _DECIMAL.fullmatch(value):
            try:  # more digits than Python reads into an int are left as text: no number
                number = int(value) if _WHOLE.fullmatch(value) else float(value)
            except ValueError:
                continue
            if isinstance(number, int) or math.isfinite(number):
                out[bound] = number
    props = out.get("properties")
    if isinstance(props, dict):
        out["properties"] = {key: bounds_from_text(sub) for key, sub in props.items()}
    for nested in ("items", "additionalProperties"):
        if nested in out:
            out[nested] = bounds_from_text(out[nested])
    return out


def check_schema(schema: Any, where: Loc = ("schema",)) -> None:
    """Refuse a schema this validator cannot honour (``SchemaError``): unknown keywords or
    wrong shapes."""
    if not isinstance(schema, dict):
        raise SchemaError(where, f"a schema is a mapping, got {type(schema).__name__}")
    for key in schema:
        if not isinstance(key, str):  # `on:` read as true: named where the file has it
            raise SchemaError((*where, key), not_text(key))
    unknown = sorted(set(schema) - _KEYWORDS)
    if unknown:
        raise SchemaError(where, f"unsupported keyword(s) {', '.join(unknown)}")
    kind = schema.get("type")
    if kind is not None and (not isinstance(kind, str) or kind not in _TYPES):
        raise SchemaError((*where, "type"), f"{kind!r} is not a JSON Schema type")
    required = schema.get("required", [])
    if not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        raise SchemaError((*where, "required"), "a list of property names")
    for bound in _BOUNDS:
        if bound not in schema:
            continue
        value = schema[bound]
        # YAML's ``true`` is 1 to Python, and NaN bounds nothing (every comparison with it is
        # false): the validator would not check what the file says.
        if isinstance(value, bool):
            raise SchemaError((*where, bound), f"a number, not {str(value).lower()}")
        if not isinstance(value, int | float):
            raise SchemaError((*where, bound), "a number")
        if value != value:
            raise SchemaError((*where, bound), "a number, not NaN (it bounds nothing)")
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise SchemaError((*where, "enum"), "a list")
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        raise SchemaError((*where, "properties"), "a mapping of property schemas")
    for key, sub in props.items():
        if not isinstance(key, str):  # a JSON object's keys are text: it could never match
            raise SchemaError((*where, "properties", key), not_text(key))
        check_schema(sub, (*where, "properties", key))
    if "items" in schema:
        check_schema(schema["items"], (*where, "items"))
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        check_schema(extra, (*where, "additionalProperties"))


def _same(a: Any, b: Any) -> bool:
    """JSON's equality, which ``enum`` asks: ``true`` is not ``1`` (to Python it is), ``1`` is
    ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _validate(schema: dict[str, Any], value: Any, path: str) -> str | None:
    kind = schema.get("type")
    if kind is not None:
        ok = isinstance(value, _TYPES[kind]) and not (
            kind in ("integer", "number") and isinstance(value, bool)
        )
        if not ok:
            return f"{path}: expected {kind}"
    if "enum" in schema and not any(_same(value, item) for item in schema["enum"]):
        return f"{path}: value not in enum"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{path}: shorter than minLength"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{path}: longer than maxLength"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{path}: below minimum"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{path}: above maximum"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                return f"{path}.{key}: missing required property"
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                problem = _validate(props[key], item, f"{path}.{key}")
                if problem:
                    return problem
            elif schema.get("additionalProperties", True) is False:
                return f"{path}.{quote(key)}: additional property not allowed"
            elif isinstance(schema.get("additionalProperties"), dict):
                problem = _validate(schema["additionalProperties"], item, f"{path}.{quote(key)}")
                if problem:
                    return problem
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problem = _validate(schema["items"], item, f"{path}[{i}]")
            if problem:
                return problem
    return None


class JsonSchema:
    """Validate the payload (as JSON) against the schema registered for its type."""

    name = "schema"

    def __init__(
        self, schemas_by_type: Mapping[str, dict[str, Any]], view: ContentView | None = None
    ) -> None:
        for type_name, schema in schemas_by_type.items():
            check_schema(schema, ("schemas", type_name))
        self.schemas: Mapping[str, dict[str, Any]] = MappingProxyType(dict(schemas_by_type))
        self._view = view or ContentView()

    @property
    def settings(self) -> dict[str, object]:
        """What it decides by (``DeclaredPolicy``)."""
        return {"schemas": dict(self.schemas)}

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        return self._check(msg)

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = False

    @property
    def plan_class(self) -> type[object]:
        return JsonSchema

    def plan_step(self, message_type: str) -> PlanStep | None:
        return self._check if message_type in self.schemas else None

    def screen_part(self, message_type: str) -> None:
        return None  # no content check to screen

    def _check(self, msg: Message) -> Decision:
        schema = self.schemas.get(msg.type)
        if schema is None:
            return ALLOW
        problem = _validate(schema, self._view.data(msg), "$")
        if problem:
            return Decision.deny(self.name, f"schema validation failed: {problem}")
        return ALLOW
