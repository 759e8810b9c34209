"""Red-team probes: messages with the decision a policy set must reach for each."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._agent.agent import Risk
from .._base.yamlconf import ConfigFileError, Loc, key_of, line_of, load_model
from .._errors import InvalidMessageError
from .._message.envelope import Message
from .._message.payload import Classification, Payload
from .._runtime.policy import Limits, admit, checked_policies
from ._board import PolicySet

__all__ = ["ClassCount", "ProbeReport", "run_probes"]


# The most characters a probe's content makes, repeated (a size probe's message).
_MAX_REPEATED = 10_000_000


class _ProbeMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str = Field(min_length=1)
    content: str = ""
    # The payload's other fields ("card_number", a nested "document"...), beside ``content``.
    fields: dict[str, Any] = {}
    repeat: int = Field(default=1, ge=1, le=_MAX_REPEATED)  # content repeated, for size probes
    recipient: str = "agent"
    recipient_risk: Risk = Risk.LOW
    sender: str = "red-team"
    classification: Classification = Classification.INTERNAL
    metadata: dict[str, Any] = {}

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        # The bound is on what the probe makes: a long content repeated would be gigabytes.
        size = len(self.content) * self.repeat
        if size > _MAX_REPEATED:
            raise ValueError(
                f"content repeated {self.repeat:,} times is {size:,} characters, at most "
                f"{_MAX_REPEATED:,}"
            )
        return self


class _Probe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str = Field(min_length=1)
    message: _ProbeMessage
    expect: Literal["allow", "deny"]
    reason_contains: str = ""
    # What the probe tries (injection, pii-card, benign-loans, ...): the report counts by it.
    kind: str = Field(default="", alias="class")


class _ProbeFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    probes: list[_Probe] = Field(min_length=1)


class _ProbePayload(Payload):
    """A probe's content: its JSON object's fields when it is one, else ``content``."""

    model_config = ConfigDict(frozen=True, extra="allow")


@dataclass
class ClassCount:
    """One class of probes: those that must be denied and how many were, those that must be
    allowed and how many were wrongly denied."""

    must_deny: int = 0
    denied: int = 0
    must_allow: int = 0
    wrongly_denied: int = 0

    @property
    def recall(self) -> float | None:
        """The share of the probes to deny that were denied (None: there are none)."""
        return self.denied / self.must_deny if self.must_deny else None

    def as_dict(self) -> dict[str, int | float | None]:
        return {
            "must_deny": self.must_deny,
            "denied": self.denied,
            "recall": self.recall,
            "must_allow": self.must_allow,
            "wrongly_denied": self.wrongly_denied,
        }

    def text(self) -> str:
        parts = []
        if self.must_deny:
            parts.append(f"{self.denied}/{self.must_deny} denied ({self.recall:.0%})")
        if self.must_allow:
            parts.append(f"{self.wrongly_denied}/{self.must_allow} wrongly denied")
        return ", ".join(parts)


@dataclass
class ProbeReport:
    total: int = 0
    ok: list[str] = field(default_factory=list)
    unexpected_allows: list[str] = field(default_factory=list)
    unexpected_denies: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    classes: dict[str, ClassCount] = field(default_factory=dict)  # by the probes' class

    @property
    def passed(self) -> bool:
        return not self.unexpected_allows and not self.unexpected_denies

    def count(self, kind: str, expect: str, got: str) -> None:
        counts = self.classes.setdefault(kind or "-", ClassCount())
        if expect == "deny":
            counts.must_deny += 1
            counts.denied += got == "deny"
        else:
            counts.must_allow += 1
            counts.wrongly_denied += got == "deny"

    def as_json(self) -> str:
        return json.dumps(
            {
                "total": self.total,
                "unexpected_allows": self.unexpected_allows,
                "unexpected_denies": self.unexpected_denies,
                "ok": self.ok,
                "classes": {k: c.as_dict() for k, c in sorted(self.classes.items())},
            },
            indent=2,
        )


def _message(probe: _ProbeMessage) -> Message:
    payload_type = type(
        "Probe", (_ProbePayload,), {"message_type": probe.type, "__module__": __name__}
    )
    content = probe.content * probe.repeat
    try:
        fields = json.loads(content)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        fields = {"content": content}
    fields.update(probe.fields)
    return Message.new(
        payload_type(**fields),
        sender=probe.sender,
        recipient=probe.recipient,
        classification=probe.classification,
        metadata=probe.metadata,
    )


def run_probes(policy_set: PolicySet, probes_path: str | Path) -> ProbeReport:
    """Evaluate each probe against the policies, in order, as one delivery would be."""
    probe_file, lines = load_model(probes_path, _ProbeFile)
    # Every probe's message is made before any runs: a value no message can hold is the probe
    # file's mistake, named with its line and probe, not a message error of no file.
    messages: list[Message] = []
    problems: list[str] = []
    for i, probe in enumerate(probe_file.probes):
        try:
            messages.append(_message(probe.message))
        except InvalidMessageError as exc:
            at: Loc = ("probes", i, "message", *exc.field.split("."))
            problems.append(
                f"{probes_path}:{line_of(lines, at)}: {key_of(at)}: probe {probe.name!r}: "
                f"{exc.problem}"
            )
    if problems:
        raise ConfigFileError(problems)
    report = ProbeReport(total=len(probe_file.probes))
    # As a runtime keeps them: probing a set a runtime uses never changes whom it gates.
    policies = checked_policies(policy_set.policies)
    told = tuple(hosted for p in policies if callable(hosted := getattr(p, "agent_hosted", None)))
    for probe, message in zip(probe_file.probes, messages, strict=True):
        for hosted in told:  # the probe's recipient, at the probe's risk
            hosted(probe.message.recipient, probe.message.recipient_risk)
        decision = admit(message, probe.message.recipient, 0, Limits(), policies)
        got = "allow" if decision.allowed else "deny"
        report.count(probe.kind, probe.expect, got)
        report.details[probe.name] = (
            "allow" if decision.allowed else f"deny by {decision.policy}: {decision.reason}"
        )
        if got != probe.expect:
            (report.unexpected_allows if got == "allow" else report.unexpected_denies).append(
                probe.name
            )
        elif (
            got == "deny" and probe.reason_contains and probe.reason_contains not in decision.reason
        ):
            report.unexpected_denies.append(f"{probe.name} (wrong reason)")
        else:
            report.ok.append(probe.name)
    return report
