"""The consent ledger of a namespace, shared by every process through a JetStream KV bucket.

A grant or revoke in one process is written to the bucket; every process follows the bucket
into memory, so the ``Consent`` policy's ``has_active`` (asked for every gated delivery, on
the hot path) never waits for the broker. Another process sees a change about one broker
round trip after it is written (docs/scale-out.md, "Semantics").
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

import anyio

from .._base.log import lazy_logger
from .._errors import ConfigurationError
from ..policies._compliance import Consent
from ._wire import bound

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

    from .._runtime.policy import Policy

__all__ = ["NatsConsentLedger"]

_DELETED = ("DEL", "PURGE")
_log = lazy_logger("genie.nats")


def _key(user_id: str, category: str) -> str:
    """A KV key for any user id (KV keys allow few characters): both parts base64url."""
    return ".".join(
        base64.urlsafe_b64encode(part.encode()).decode().rstrip("=") for part in (user_id, category)
    )


def _parts(key: str) -> tuple[str, str]:
    user, category = (
        base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)).decode() for p in key.split(".")
    )
    return user, category


class NatsConsentLedger:
    """A ``ConsentLedger`` (genie.policies) in the KV bucket ``bucket``.

    ``NatsTransport`` makes one per process (``transport.consent``) and follows the bucket
    while it runs; pass it to ``load_policy_file``/``build_policies``/``Consent``, and
    ``await grant(...)``/``await revoke(...)`` from any process.
    """

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._active: set[tuple[str, str]] = set()
        self._kv: KeyValue | None = None
        self.loaded = anyio.Event()  # the bucket's content is in memory

    def has_active(self, user_id: str, category: str) -> bool:
        # Before the bucket is loaded nothing is active: gated deliveries are denied.
        return (user_id, str(category)) in self._active

    async def grant(self, user_id: str, category: str) -> None:
        """Record the grant in the bucket (seen by every process); active here at once."""
        await self._bucket().put(_key(user_id, str(category)), b"granted")
        self._active.add((user_id, str(category)))

    async def revoke(self, user_id: str, category: str) -> None:
        """Withdraw the grant in the bucket (seen by every process); inactive here at once."""
        await self._bucket().delete(_key(user_id, str(category)))
        self._active.discard((user_id, str(category)))

    def _bucket(self) -> KeyValue:
        if self._kv is None:
            raise ConfigurationError("NatsTransport.connect() first")
        return self._kv

    async def bind(self, js: JetStreamContext) -> None:
        """Create the bucket if it is not there (idempotent)."""
        from nats.js.api import KeyValueConfig, StorageType

        self._kv = await js.create_key_value(
            KeyValueConfig(bucket=self.bucket, history=1, storage=StorageType.FILE)
        )

    async def follow(self, js: JetStreamContext) -> None:
        """Keep the bucket in memory (through broker restarts); set ``loaded`` once it is."""
        from nats.js.api import DeliverPolicy

        stream = f"KV_{self.bucket}"
        prefix = f"$KV.{self.bucket}."
        info = await bound(f"read the consent bucket {self.bucket}", lambda: js.stream_info(stream))
        sub = await bound(
            f"follow the consent bucket {self.bucket}",
            lambda: js.subscribe(
                f"{prefix}>",
                stream=stream,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                idle_heartbeat=1.0,  # two missed beats and the client recreates the consumer
            ),
        )
        if info.state.messages == 0:
            self.loaded.set()  # loaded, and followed from here on
        try:
            async for raw in sub.messages:
                key = raw.subject[len(prefix) :]
                try:
                    entry = _parts(key)
                except (binascii.Error, UnicodeDecodeError, ValueError):
                    _log.warning("consent bucket %s: key %r is not ours; ignored", self.bucket, key)
                    entry = ("", "")  # matches no user
                if (raw.headers or {}).get("KV-Operation") in _DELETED:
                    self._active.discard(entry)
                else:
                    self._active.add(entry)
                if raw.metadata.num_pending == 0:
                    self.loaded.set()
        finally:
            await sub.unsubscribe()

    def share(self, policies: tuple[Policy, ...]) -> None:
        """Make every ``Consent`` policy of ``policies`` ask this ledger (what a pipeline file
        builds has a ledger of its own, in memory, which other processes cannot see)."""
        for policy in policies:
            if isinstance(policy, Consent):
                policy.ledger = self
