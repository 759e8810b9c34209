"""Who may send what: content length, required metadata, RBAC, tenant, and the risk gate.

Deny reasons are the Go system's, word for word, so audit trails read the same.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import ClassVar, Self

from .._agent.agent import Risk
from .._errors import ConfigurationError
from .._message.envelope import Message
from .._runtime.policy import Decision, DeliveryCheck, PlanStep
from ._content import ContentView, quote, roles_of
from ._normalise import blank
from ._screen import ScreenPart

__all__ = ["MaxContentLength", "RBAC", "RequiredMetadata", "RiskGate", "Tenant"]

ALLOW = Decision.ALLOW


class MaxContentLength:
    """Deny when the payload's JSON text is longer than ``max_bytes`` (UTF-8 bytes)."""

    name = "max_content_length"

    def __init__(self, max_bytes: int, view: ContentView | None = None) -> None:
        if max_bytes <= 0:
            raise ConfigurationError(
                "max content length must be positive: invalid max content length"
            )
        self.max_bytes = max_bytes
        self._view = view or ContentView()

    @property
    def settings(self) -> dict[str, object]:
        """What it decides by (``DeclaredPolicy``)."""
        return {"max_bytes": self.max_bytes}

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        return self._check(msg)

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = False

    @property
    def plan_class(self) -> type[object]:
        return MaxContentLength

    def plan_step(self, message_type: str) -> PlanStep | None:
        return self._check

    def screen_part(self, message_type: str) -> ScreenPart:
        return ScreenPart(self._view, max_bytes=self.max_bytes)

    def _check(self, msg: Message) -> Decision:
        bound = self._view.size_at_most(msg)
        if bound is not None and bound <= self.max_bytes:
            return ALLOW  # the JSON is no longer than the bound: under the limit
        text = self._view.text(msg)
        # A character is one to four UTF-8 bytes: the bytes are counted only when the
        # characters leave the limit in between.
        if len(text) > self.max_bytes or (
            len(text) * 4 > self.max_bytes and len(text.encode()) > self.max_bytes
        ):
            return Decision.deny(self.name, "content too long")
        return ALLOW


class RequiredMetadata:
    """For the listed types (all when empty), each key must be present and hold something:
    not null, an empty list or blank text (``blank``: a zero-width space is no value
    either)."""

    def __init__(self, required: Iterable[str], applies_to: Iterable[str] = ()) -> None:
        self.required = tuple(required)
        self.applies_to = frozenset(applies_to)
        scope = ",".join(sorted(self.applies_to)) or "*"
        self.name = f"required_metadata[{scope}]"

    @property
    def settings(self) -> dict[str, object]:
        """What it decides by (``DeclaredPolicy``)."""
        return {"required": list(self.required), "applies_to": sorted(self.applies_to)}

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        if self.applies_to and msg.type not in self.applies_to:
            return ALLOW
        return self._check(msg)

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = True

    @property
    def plan_class(self) -> type[object]:
        return RequiredMetadata

    def plan_step(self, message_type: str) -> PlanStep | None:
        if (self.applies_to and message_type not in self.applies_to) or not self.required:
            return None
        return self._check

    def screen_part(self, message_type: str) -> None:
        return None  # no content check to screen

    def _check(self, msg: Message) -> Decision:
        meta = msg.metadata
        if not meta and self.required:
            return Decision.deny(self.name, "missing metadata")
        for key in self.required:
            if key not in meta:
                return Decision.deny(self.name, f'missing metadata key "{key}"')
            value = meta[key]
            # A value that says nothing: null, an empty list, text with nothing to read.
            if value is None or value == () or (isinstance(value, str) and blank(value)):
                return Decision.deny(self.name, f'empty metadata key "{key}"')
        return ALLOW


class RBAC:
    """A message type listed in ``roles_by_type`` needs one of its roles in ``user_roles``;
    ``admin`` passes everything when ``admin_bypass``."""

    name = "rbac"

    def __init__(
        self, roles_by_type: Mapping[str, Iterable[str]], admin_bypass: bool = False
    ) -> None:
        self.roles_by_type: Mapping[str, frozenset[str]] = MappingProxyType(
            {t: frozenset(r) for t, r in roles_by_type.items()}
        )
        self.admin_bypass = admin_bypass

    @property
    def settings(self) -> dict[str, object]:
        """What it decides by (``DeclaredPolicy``)."""
        return {
            "roles_by_type": {t: sorted(r) for t, r in self.roles_by_type.items()},
            "admin_bypass": self.admin_bypass,
        }

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        return self._check(msg)

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = True

    @property
    def plan_class(self) -> type[object]:
        return RBAC

    def plan_step(self, message_type: str) -> PlanStep | None:
        return self._check if self.roles_by_type.get(message_type) else None

    def screen_part(self, message_type: str) -> None:
        return None  # no content check to screen

    def _check(self, msg: Message) -> Decision:
        needed = self.roles_by_type.get(msg.type)
        if not needed:
            return ALLOW
        roles = roles_of(msg.metadata)
        if self.admin_bypass and "admin" in roles:
            return ALLOW
        if needed.intersection(roles):
            return ALLOW
        return Decision.deny(self.name, "missing required role for message type")


class Tenant:
    """``tenant_id`` is required (for the listed types, all when empty); when
    ``expected_tenant`` is set it must match. ``admin`` bypasses when ``admin_bypass``."""

    name = "tenant"

    def __init__(self, applies_to: Iterable[str] = (), admin_bypass: bool = False) -> None:
        self.applies_to = frozenset(applies_to)
        self.admin_bypass = admin_bypass

    @property
    def settings(self) -> dict[str, object]:
        """What it decides by (``DeclaredPolicy``)."""
        return {"applies_to": sorted(self.applies_to), "admin_bypass": self.admin_bypass}

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        if self.applies_to and msg.type not in self.applies_to:
            return ALLOW
        return self._check(msg)

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = True

    @property
    def plan_class(self) -> type[object]:
        return Tenant

    def plan_step(self, message_type: str) -> PlanStep | None:
        if self.applies_to and message_type not in self.applies_to:
            return None
        return self._check

    def screen_part(self, message_type: str) -> None:
        return None  # no content check to screen

    def _check(self, msg: Message) -> Decision:
        meta = msg.metadata
        if self.admin_bypass and "admin" in roles_of(meta):
            return ALLOW
        tenant = meta.get("tenant_id")
        if not isinstance(tenant, str) or not tenant:
            return Decision.deny(self.name, "missing tenant_id in metadata")
        expected = meta.get("expected_tenant")
        if isinstance(expected, str) and expected and expected != tenant:
            return Decision.deny(
                self.name, f"tenant mismatch: expected {quote(expected)} got {quote(tenant)}"
            )
        return ALLOW


class RiskGate:
    """A high-risk agent only receives messages whose ``user_roles`` hold one of ``roles``.

    Each runtime gates with a copy of its own (``for_runtime``), which it tells of each agent
    it hosts, and its risk, before the agent can be reached (``agent_hosted``): runtimes given
    one policy list never gate by each other's agents. A recipient the table does not know (a
    tap) is not gated.
    """

    name = "risk_gate"

    def __init__(
        self, roles: Iterable[str], risk_of: Callable[[str], Risk | None] | None = None
    ) -> None:
        self.roles = frozenset(roles)
        if not self.roles:
            raise ConfigurationError(
                "risk gate: list at least one role allowed to reach high-risk agents"
            )
        self._risk: dict[str, Risk] = {}
        self._high: frozenset[str] = frozenset()
        self._risk_of = risk_of
        # Counts the tables bound: what the plan prepared from an older table is stale.
        self.plan_version = 0

    @property
    def settings(self) -> dict[str, object]:
        """What it decides by (``DeclaredPolicy``): the roles. The table of the agents' risks
        is the pipeline's (its agents are compared apart), told as the runtime hosts each."""
        return {"roles": sorted(self.roles)}

    def for_runtime(self) -> Self:
        """This gate (a subclass's too) with a table of agents of its own, for one runtime.
        The copy is shallow: a subclass that keeps more of a runtime's state in a mutable
        object gives its copy a fresh one (``super().for_runtime()``, then its own)."""
        own = copy.copy(self)
        own._risk, own._high, own.plan_version = {}, frozenset(), 0
        return own

    def agent_hosted(self, agent_id: str, risk: Risk) -> None:
        """``agent_id`` has ``risk`` in the runtime this gate is the copy of (an agent told
        again takes the risk told last)."""
        self._risk[agent_id] = risk
        if risk is Risk.HIGH:
            self._high |= {agent_id}
        else:
            self._high -= {agent_id}
        self.plan_version += 1

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        risk = self._risk_of(recipient) if self._risk_of else self._risk.get(recipient)
        if risk is not Risk.HIGH or self.roles.intersection(roles_of(msg.metadata)):
            return ALLOW
        return self._deny(recipient)

    # The compiled plan (``PlannedPolicy``, ``VersionedPolicy``): the same decisions as
    # ``evaluate``. The step reads the envelope and which agents are high-risk, which
    # ``agent_hosted`` changes (one more ``plan_version``).
    plan_reads_envelope: ClassVar[bool] = True

    @property
    def plan_class(self) -> type[object]:
        return RiskGate

    def plan_step(self, message_type: str) -> PlanStep | None:
        if self._risk_of is not None:
            return lambda msg: self.evaluate  # the caller's lookup runs for every delivery
        return self._roles_checked

    def screen_part(self, message_type: str) -> None:
        return None  # no content check to screen

    def _roles_checked(self, msg: Message) -> Decision | DeliveryCheck:
        if not self._high or self.roles.intersection(roles_of(msg.metadata)):
            return ALLOW
        return self._gate

    def _gate(self, msg: Message, recipient: str) -> Decision:
        """For a message without the roles: a set lookup per recipient."""
        return self._deny(recipient) if recipient in self._high else ALLOW

    def _deny(self, recipient: str) -> Decision:
        wanted = ", ".join(sorted(self.roles))
        return Decision.deny(
            self.name, f"high-risk agent {recipient!r} requires one of the roles: {wanted}"
        )
