"""Who is asking: API keys mapped to a principal, its roles and its grants.

The keys come from a YAML file (``--keys PATH``) or the ``GENIE_API_KEYS`` variable (the same
document, usually in flow style). A key is given as its SHA-256 (``key_sha256``, so the file
holds no secret) or in clear (``key``, for the environment). The server keeps only digests.

The server's word on identity is final: ``stamp`` drops whatever the caller said about the
server-owned metadata keys and writes the key's principal and roles instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._base.yamlconf import ConfigFileError, WholeNumber, load_model, parse_yaml, validate
from .._errors import ConfigurationError
from .._message.envelope import RUNTIME_METADATA

__all__ = ["SERVER_OWNED", "ApiKey", "KeyRing", "load_keys"]

ENV = "GENIE_API_KEYS"

# Metadata only the server may write: who is asking, for which tenant, what they have
# acknowledged, where the data may go (``region``, read by data residency) and the trace (from
# the ``traceparent`` header, ``trace_id`` as the policies read it: a caller's value would tie
# its request to another's trace). A caller's value for any of them is dropped; a key's ``grants``
# lets its caller set the grantable ones (a back-office key that records a user's PII
# acknowledgement, say).
SERVER_OWNED = frozenset(
    {"user_id", "user_roles", "tenant_id", "pii_acknowledged", "region", "traceparent", "trace_id"}
)
# Never grantable: identity is the key's, whatever the key file says.
IDENTITY = frozenset({"user_id", "user_roles", "tenant_id", "traceparent", "trace_id"})


# A principal's or a role's name (as `genie mcp --principal` and `--role` take them).
Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.@:-]+$")]


class _KeyDecl(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    principal: Name
    key: str | None = Field(default=None, min_length=16)
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # A name each: the roles reach the policies joined by commas, so "user,admin" would be
    # two roles to them.
    roles: tuple[Name, ...] = ()
    tenant: str | None = Field(default=None, min_length=1)
    grants: tuple[str, ...] = ()
    # A rate the bucket can count with: `.inf` would pass `gt=0` and fail every request of the key.
    rate: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="requests per second"
    )
    burst: WholeNumber | None = Field(default=None, ge=1)
    tracebacks: bool = False  # answers say where a failed handler raised (developers only)

    @model_validator(mode="after")
    def _one_secret(self) -> _KeyDecl:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of 'key' and 'key_sha256'")
        bad = [g for g in self.grants if g not in SERVER_OWNED - IDENTITY]
        if bad:
            allowed = ", ".join(sorted(SERVER_OWNED - IDENTITY))
            raise ValueError(f"grants {bad} are not grantable (grantable: {allowed})")
        return self


class _KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: tuple[_KeyDecl, ...] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One caller: ``principal`` becomes ``user_id``, ``roles`` become ``user_roles``."""

    principal: str
    roles: tuple[str, ...]
    tenant: str | None
    grants: frozenset[str]
    rate: float | None  # requests per second; None: the server's default
    burst: int | None
    tracebacks: bool = False  # its answers carry failed handlers' tracebacks

    def takes(self, key: str) -> bool:
        """Whether this caller may set metadata ``key``: not one the server owns (unless the
        key file grants it) nor one of the runtime's own (``genie.``: a partial bundle's
        missing parts, which a caller could forge)."""
        if key in SERVER_OWNED:
            return key in self.grants
        return not key.startswith(RUNTIME_METADATA)

    def stamp(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """``metadata`` from the caller, with the keys it may not set dropped (``takes``) and
        the identity written."""
        kept = {k: v for k, v in metadata.items() if self.takes(k)}
        # Roles as the Go system writes them, a comma-separated string (``roles_of`` reads it).
        kept.update(user_id=self.principal, user_roles=",".join(self.roles))
        if self.tenant is not None:
            kept["tenant_id"] = self.tenant
        return kept

    def dropped(self, metadata: Mapping[str, Any]) -> list[str]:
        """The keys of ``metadata`` that ``stamp`` refuses."""
        return sorted(k for k in metadata if not self.takes(k))


def digest(secret: str | bytes) -> str:
    """A key's SHA-256, of its UTF-8 (or of the bytes a client sent), as ``printf %s KEY |
    sha256sum`` gives it."""
    return hashlib.sha256(secret if isinstance(secret, bytes) else secret.encode()).hexdigest()


class KeyRing:
    """The keys by digest; ``find`` is what authentication asks."""

    def __init__(self, keys: Mapping[str, ApiKey]) -> None:
        self._by_digest = dict(keys)

    def find(self, presented: str | bytes) -> ApiKey | None:
        """The key ``presented``: text, or the bytes a client sent, digested as they came."""
        return self._by_digest.get(digest(presented))

    def principals(self) -> list[str]:
        return sorted({k.principal for k in self._by_digest.values()})

    def of(self, principal: str) -> ApiKey | None:
        """A key of ``principal`` (its settings: a request resumed after a restart is
        recorded for it), or None when it has none any more."""
        return next((k for k in self._by_digest.values() if k.principal == principal), None)

    def __len__(self) -> int:
        return len(self._by_digest)


def _ring(parsed: _KeyFile, where: str) -> KeyRing:
    keys: dict[str, ApiKey] = {}
    for decl in parsed.keys:
        d = decl.key_sha256 or digest(decl.key or "")
        if d in keys:
            raise ConfigurationError(
                f"{where}: principals {keys[d].principal!r} and {decl.principal!r} share a key"
            )
        keys[d] = ApiKey(
            decl.principal,
            decl.roles,
            decl.tenant,
            frozenset(decl.grants),
            decl.rate,
            decl.burst,
            decl.tracebacks,
        )
    return KeyRing(keys)


def load_keys(path: str | Path | None, environ: Mapping[str, str]) -> KeyRing:
    """The keys of the file ``path``, else of the ``GENIE_API_KEYS`` variable. Raises
    ``ConfigFileError`` (file, line and key) for a bad document and ``ConfigurationError``
    when there is none: a server without keys would serve anyone."""
    if path is not None:
        parsed, _ = load_model(path, _KeyFile)
        return _ring(parsed, str(path))
    text = environ.get(ENV)
    if not text:
        raise ConfigurationError(
            f"genie serve needs API keys: --keys FILE or the {ENV} variable (docs/serve.md)"
        )
    doc = parse_yaml(text, f"${ENV}")
    if doc.problems:
        raise ConfigFileError(doc.problems)
    return _ring(validate(_KeyFile, doc.data, Path(f"${ENV}"), doc.lines), f"${ENV}")
