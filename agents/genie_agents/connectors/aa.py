"""Bank statements through India's account aggregator (AA) network, behind a client interface,
only with the user's active consent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Protocol, runtime_checkable

from pydantic import model_validator

from genie import BaseAgent, Classification, Context, Message, Payload, Risk, handler
from genie.policies import ConsentCategory, InMemoryConsentLedger

from .._go import from_metadata, go_text
from ..finance.models import Transaction

__all__ = [
    "AaFetchRequest",
    "AaFetchResult",
    "AaFetcher",
    "ConsentLookup",
    "FIClient",
    "InMemoryFIClient",
]

CONSENT = ConsentCategory.TRANSACTIONS


@runtime_checkable
class ConsentLookup(Protocol):
    """``genie.policies.ConsentLedger`` (any ledger the consent policy takes), checkable at
    run time so the catalogue can validate it as a parameter."""

    def has_active(self, user_id: str, category: str) -> bool: ...


@runtime_checkable
class FIClient(Protocol):
    """A financial-information client (an AA's FIU interface, or a fixture)."""

    async def fetch_statement(self, user_id: str, account_id: str) -> Sequence[Transaction]:
        """The account's transactions (amounts in paise), oldest first.

        Raises ``LookupError`` when the user has no such account.
        """
        ...


class InMemoryFIClient:
    """Statements given up front, keyed by (user id, account id)."""

    def __init__(
        self, statements: Mapping[tuple[str, str], Sequence[Transaction]] | None = None
    ) -> None:
        self._statements = {key: tuple(txns) for key, txns in (statements or {}).items()}

    @classmethod
    def sample(cls) -> InMemoryFIClient:
        """One user (``user-1``) with one account (``acct-123``) and four transactions."""
        rows = [
            ("t1", "2026-01-01", 8_500_000, "SALARY ACME LTD"),
            ("t2", "2026-01-03", -2_500_000, "RENT JAN"),
            ("t3", "2026-01-10", -349_900, "BIGBASKET ORDER"),
            ("t4", "2026-02-01", 8_500_000, "SALARY ACME LTD"),
        ]
        txns = [
            Transaction(
                transaction_id=tid,
                account_id="acct-123",
                date=day,
                amount_cents=paise,
                currency="INR",
                description=text,
            )
            for tid, day, paise, text in rows
        ]
        return cls({("user-1", "acct-123"): txns})

    async def fetch_statement(self, user_id: str, account_id: str) -> Sequence[Transaction]:
        try:
            return self._statements[(user_id, account_id)]
        except KeyError:
            raise LookupError(f"no account {account_id!r} for user {user_id!r}") from None


class AaFetchRequest(Payload):
    """The account to fetch; the user is the message's ``user_id`` metadata, as the consent
    policy reads it, so a payload cannot ask for someone else's data. Without an
    ``account_id`` the account is the message's ``account_id`` metadata, as Go sent it."""

    message_type = "aa_fetch_request"
    account_id: str = ""
    from_date: date | None = None
    to_date: date | None = None

    _go = go_text(None)  # Go's content was empty: its request was the metadata

    @model_validator(mode="after")
    def _ordered(self) -> AaFetchRequest:
        if self.from_date and self.to_date and self.from_date > self.to_date:
            raise ValueError(f"from_date {self.from_date} is after to_date {self.to_date}")
        return self


class AaFetchResult(Payload):
    message_type = "aa_fetch_result"
    user_id: str
    account_id: str
    transactions: tuple[Transaction, ...]


class AaFetcher(BaseAgent):
    """Fetches an account's statement through the ``client`` (default: an empty in-memory one)
    for the message's ``user_id``, only if the consent ``ledger`` (pass the one the consent
    policy uses; default: an empty one, so nothing is fetched) holds an active
    ``transactions`` consent for that user; keeps the transactions dated within
    ``from_date``-``to_date`` (inclusive). The result is classified ``pii``."""

    capabilities = ("aa_fetch",)
    risk = Risk.HIGH
    produces = (AaFetchResult,)

    def __init__(
        self,
        id: str,
        *,
        client: FIClient | None = None,
        ledger: ConsentLookup | None = None,
    ) -> None:
        super().__init__(id)
        self.client: FIClient = client if client is not None else InMemoryFIClient()
        self.ledger: ConsentLookup = ledger if ledger is not None else InMemoryConsentLedger()

    @handler
    async def on_request(self, payload: AaFetchRequest, ctx: Context) -> Message:
        user = ctx.message.metadata.get("user_id")
        if not isinstance(user, str) or not user:
            raise ValueError("aa_fetcher: the message has no user_id metadata")
        # The policy checks consent at admission; checked again here because consent can be
        # revoked while the request waits, and the agent may run without that policy.
        if not self.ledger.has_active(user, CONSENT):
            raise ValueError(f"aa_fetcher: missing active consent for category {CONSENT}")
        try:
            account = from_metadata("account_id", payload.account_id, ctx.message.metadata)
        except ValueError as exc:
            raise ValueError(f"aa_fetcher: {exc}") from None
        txns = await self.client.fetch_statement(user, account)
        low = payload.from_date.isoformat() if payload.from_date else ""
        high = payload.to_date.isoformat() if payload.to_date else "9999-12-31"
        kept = tuple(t for t in txns if low <= t.date <= high)
        result = AaFetchResult(user_id=user, account_id=account, transactions=kept)
        return ctx.emit(result, classification=Classification.PII)
