"""The board policy file (the Go ``ai-policy.yaml``) and the policy list it builds.

The Go file loads as is and builds the Go composite in the Go order; our extensions are extra
top-level keys, appended after the Go policies. Unknown keys, wrong types, bad DSL rules and
schemas this validator cannot honour are refused at load with file, line and reason. A
policy file is read strictly: a value is what YAML typed it (a quoted ``"yes"`` is text, not
true), while a pipeline's inline board is read as the pipeline's ``${VAR}`` strings need.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .._base.shipped import located
from .._base.yamlconf import ConfigFileError, Loc, WholeNumber, key_of, line_of, load_model
from .._message.payload import Classification
from .._runtime.policy import Policy
from ._access import RBAC, MaxContentLength, RequiredMetadata, RiskGate, Tenant
from ._compliance import (
    Consent,
    ConsentLedger,
    Explainability,
    InMemoryConsentLedger,
    JsonSchema,
    SchemaError,
    bounds_from_text,
    check_schema,
)
from ._content import ContentView
from ._data import ClassificationCeiling, DataResidency
from ._detectors import PIIBlock, PromptInjection, SecretsBlock, SqlBlock
from ._dsl import Rule, RuleError, compile_rule
from ._normalise import fold, words

__all__ = [
    "BoardPolicy",
    "PolicySet",
    "board_problems",
    "load_policy_file",
    "rule_id_problems",
]


def _level(value: object) -> object:
    """A classification is written as its name, which strict reading alone would refuse (it
    takes only the enum's own instances)."""
    if isinstance(value, str):
        try:
            return Classification(value)
        except ValueError:
            names = [repr(level.value) for level in Classification]
            raise ValueError(f"Input should be {', '.join(names[:-1])} or {names[-1]}") from None
    return value


# A YAML word for a classification level.
_Level = Annotated[Classification, BeforeValidator(_level)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Governance(_Section):
    admin_bypass: bool = False
    rbac: dict[str, list[str]] = {}


class _Risk(_Section):
    max_content_length_bytes: WholeNumber = Field(default=262_144, gt=0)


# A century: dead letters hold message payloads and a board keeps them a bounded time, so a
# longer one is a mistake in the file, refused at its line rather than met at the first letter.
MAX_RETENTION_DAYS = 36_500


class _Data(_Section):
    retention_days: WholeNumber | None = Field(default=None, gt=0, le=MAX_RETENTION_DAYS)
    block_pii: bool = False
    block_prompt_injection: bool = False


class _Consumer(_Section):
    ai_disclosure_banner: str = ""


class _Sovereignty(_Section):
    home_region: str = "in"
    allow_cross_border_for_public: bool = True


class _Consent(_Section):
    type_to_category: dict[
        str, Literal["transactions", "portfolio", "recommendations", "third_party_share"]
    ] = {}


class _Explainability(_Section):
    applies_to: list[str] = []
    rationale_field: str = "rationale"


class _Limits(_Section):
    required_metadata: dict[str, list[str]] = {}


class _Classification(_Section):
    default_ceiling: _Level = Classification.INTERNAL
    allowed_to: dict[str, _Level] = {}


class _Rule(_Section):
    id: str = Field(min_length=1)
    when: str
    decision: Literal["allow", "deny", "ALLOW", "DENY", "Allow", "Deny"] = "deny"
    reason: str = ""


class _Detectors(_Section):
    """Genie's content detectors beyond the Go file's: credentials (``secrets_block``) and
    destructive SQL (``sql_block``)."""

    block_secrets: bool = False
    block_destructive_sql: bool = False


class _RiskGate(_Section):
    roles: list[str] = Field(min_length=1)


class _Tenant(_Section):
    applies_to: list[str] = []
    admin_bypass: bool = False


class BoardPolicy(_Section):
    """The file's schema: the Go keys, then ours (classification, rules, risk_gate, schemas,
    tenant, extra_injection_phrases, detectors)."""

    version: str = Field(min_length=1)
    board_approved_on: str = ""
    owner: str = ""
    purpose: str = ""
    principles: list[str] = []
    governance: _Governance = _Governance()
    risk: _Risk = _Risk()
    data: _Data = _Data()
    consumer: _Consumer = _Consumer()
    sovereignty: _Sovereignty = _Sovereignty()
    consent: _Consent = _Consent()
    explainability: _Explainability = _Explainability()
    limits: _Limits = _Limits()
    classification: _Classification = _Classification()
    rules: list[_Rule] = []
    risk_gate: _RiskGate | None = None
    schemas: dict[str, dict[str, Any]] = {}
    tenant: _Tenant | None = None
    extra_injection_phrases: list[str] = []
    detectors: _Detectors = _Detectors()


@dataclass
class PolicySet:
    """What a board file builds: the ordered policies and the settings they need."""

    policies: list[Policy]
    board: BoardPolicy
    ledger: ConsentLedger | None
    retention_days: int | None
    names: list[str] = field(default_factory=list)

    @property
    def retention(self) -> timedelta | None:
        """``data.retention_days`` for ``Runtime(retention=...)``: how long dead letters (which
        hold payloads) are kept."""
        return None if self.retention_days is None else timedelta(days=self.retention_days)


def build_policies(board: BoardPolicy, ledger: ConsentLedger | None = None) -> PolicySet:
    """The Go ``BuildComposite`` order, then the extensions. Raises ConfigurationError."""
    view = ContentView()
    policies: list[Policy] = [MaxContentLength(board.risk.max_content_length_bytes, view)]
    # Go iterated a map here (random order); we keep the file's order.
    for type_name, keys in board.limits.required_metadata.items():
        policies.append(RequiredMetadata(keys, applies_to=[type_name]))
    if board.governance.rbac:
        policies.append(RBAC(board.governance.rbac, board.governance.admin_bypass))
    policies.append(
        ClassificationCeiling(board.classification.allowed_to, board.classification.default_ceiling)
    )
    policies.append(
        DataResidency(
            board.sovereignty.home_region, board.sovereignty.allow_cross_border_for_public
        )
    )
    if board.data.block_pii:
        policies.append(PIIBlock(view))
    if board.data.block_prompt_injection:
        policies.append(PromptInjection(board.extra_injection_phrases, view))
    if board.consent.type_to_category:
        # No ledger given: an empty one, so consent-gated types are denied until granted.
        ledger = ledger if ledger is not None else InMemoryConsentLedger()
        policies.append(Consent(ledger, board.consent.type_to_category))
    if board.explainability.applies_to:
        policies.append(
            Explainability(
                board.explainability.applies_to, board.explainability.rationale_field, view
            )
        )
    if board.schemas:
        policies.append(JsonSchema(board.schemas, view))
    if board.tenant is not None:
        policies.append(Tenant(board.tenant.applies_to, board.tenant.admin_bypass))
    if board.risk_gate is not None:
        policies.append(RiskGate(board.risk_gate.roles))
    if board.detectors.block_secrets:
        policies.append(SecretsBlock(view))
    if board.detectors.block_destructive_sql:
        policies.append(SqlBlock(view))
    policies += [Rule(r.id, r.when, r.decision, r.reason, view) for r in board.rules]
    return PolicySet(policies, board, ledger, board.data.retention_days, [p.name for p in policies])


# The names of the policies a board file builds (as a deny names them), and of the classifier
# a pipeline adds: a rule of the same id would make a deny, and its audit row, say that policy
# fired. A board's required metadata is named by its types, ``required_metadata[...]``.
_BUILT_IN = (
    "max_content_length", "rbac", "classification", "data_residency", "pii_block",
    "prompt_injection", "consent", "explainability", "schema", "tenant", "risk_gate",
    "secrets_block", "sql_block", "classifier",
)  # fmt: skip
_REQUIRED_METADATA = "required_metadata["


def board_problems(board: BoardPolicy) -> list[tuple[Loc, str]]:
    """What the schema lets through and the board cannot mean, each with where it is: a
    phrase with no words, phrases that nothing reads, two rules of one id, a rule named like
    a built-in policy, each rule that does not compile and each schema this validator cannot
    honour (all of them: a board is fixed in one pass, not one mistake at a time)."""
    found: list[tuple[Loc, str]] = []
    for i, rule in enumerate(board.rules):
        try:
            compile_rule(rule.id, rule.when)
        except RuleError as exc:
            found.append((("rules", i, "when"), str(exc)))
    for type_name, schema in board.schemas.items():
        try:
            check_schema(schema, ("schemas", type_name))
        except SchemaError as exc:
            found.append((exc.at, exc.reason))
    phrases = board.extra_injection_phrases
    if phrases and not board.data.block_prompt_injection:
        found.append(
            (
                ("extra_injection_phrases",),
                "nothing reads these phrases: set data.block_prompt_injection: true, or remove "
                "them",
            )
        )
    for i, phrase in enumerate(phrases):
        if not words(fold(phrase)).strip():
            found.append(
                (("extra_injection_phrases", i), f"injection phrase {phrase!r} has no words")
            )
    found += [
        (("rules", i, "id"), problem) for i, problem in rule_id_problems(r.id for r in board.rules)
    ]
    return found


def rule_id_problems(ids: Iterable[str], board: Collection[str] = ()) -> list[tuple[int, str]]:
    """Each rule id of ``ids`` (by its index) that a deny, and its audit row, could not be told
    by: a blank id or one not printable, a built-in policy's name, the id of an earlier rule, or
    the name of a policy of the ``board`` the rules are added to (a pipeline's
    ``governance.rules`` after its board)."""
    found: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for i, rule_id in enumerate(ids):
        # A deny, its audit row and a log line show the id: an empty one says nothing, and a
        # control or format character (a line break, a bidi override) can make it read as
        # another ("\u202ekcolb_iip" shows as "pii_block").
        if not rule_id.strip() or not rule_id.isprintable():
            found.append(
                (
                    i,
                    f"{rule_id!r} is no name a deny can show: give the rule an id of "
                    "printable text",
                )
            )
        elif rule_id in _BUILT_IN or rule_id.startswith(_REQUIRED_METADATA):
            found.append(
                (
                    i,
                    f"{rule_id!r} is the name of a built-in policy: a deny by this rule would "
                    "read as that policy's; give the rule a name of its own",
                )
            )
        elif rule_id in seen:
            found.append((i, f"{rule_id!r} is the id of rule {seen[rule_id] + 1} too"))
        elif rule_id in board:
            found.append(
                (i, f"{rule_id!r} is the name of a policy of the board too; give the rule its own")
            )
        seen.setdefault(rule_id, i)
    return found


def inline_board(board: dict[str, Any]) -> dict[str, Any]:
    """A pipeline's ``governance.board``, as ``BoardPolicy`` validates it: read as the rest of
    the pipeline file is (not strictly), so a whole-value ``${VAR}``, which writes text, is
    converted like the value it replaces, a schema's bound included (``bounds_from_text``)."""
    out = {"version": "pipeline", **board}
    schemas = out.get("schemas")
    if isinstance(schemas, dict):
        out["schemas"] = {name: bounds_from_text(schema) for name, schema in schemas.items()}
    return out


def load_policy_file(path: str | Path, ledger: ConsentLedger | None = None) -> PolicySet:
    """Load and build a board policy file, or the shipped one ``path`` names (``ai-policy``,
    when no such file is here); every problem names the file, line and key."""
    if os.fspath(path):  # '' is refused as naming no file
        path = located(path, "policies", "policy files, by name")
    board, lines = load_model(path, BoardPolicy, strict=True)
    found = sorted(board_problems(board), key=lambda problem: line_of(lines, problem[0]))
    if found:
        raise ConfigFileError(
            [f"{path}:{line_of(lines, at)}: {key_of(at)}: {problem}" for at, problem in found]
        )
    return build_policies(board, ledger)
