"""Receipt OCR (Go's ``receipt_ocr``): a vision model reads a photographed receipt into one
transaction of the finance flow's ``raw_transactions``, classified PII."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Literal, get_args

from pydantic import Field, ValidationError, field_validator

from genie import BaseAgent, Classification, Context, Message, Payload, Risk, handler
from genie.llm import ChatMessage, ImagePart, Provider, Request

from .._go import go_text
from .models import RawTransactions
from .statement import Transaction

__all__ = ["ReceiptOcr", "ReceiptOcrError", "ReceiptOcrRequest"]

PROMPT = """You are reading a transaction receipt photo from India.
Extract a single transaction as JSON with this exact schema. Do not add commentary.

{
  "date": "YYYY-MM-DD",
  "description": "<merchant name + line item>",
  "merchant": "<lowercase merchant slug>",
  "amount_cents": <integer, NEGATIVE for debits, POSITIVE for credits>,
  "currency": "<ISO 4217, default INR>",
  "category": "<food:dining | food:delivery | transport:ride | shopping:ecom | utilities:* | uncategorized>",
  "direction": "debit" | "credit"
}"""  # noqa: E501 (Go's prompt, one schema line as the model reads it)

MAX_IMAGE_BYTES = 8 * 1024 * 1024


class ReceiptOcrError(ValueError):
    """The model's answer is not one transaction; the message names the field at fault."""


MimeType = Literal["image/jpeg", "image/png", "image/webp", "image/gif"]


class ReceiptOcrRequest(Payload):
    """``image``: the receipt's bytes in base64 (at most 8 MiB decoded). Go's request, the
    bare base64 with the MIME type in the message's ``mime_type`` metadata, is taken too: a
    request that names no ``mime_type`` uses the metadata's, else ``image/jpeg``."""

    message_type = "receipt_ocr_request"
    image: str = Field(min_length=1)
    mime_type: MimeType | None = Field(
        default=None, description="default: the message's mime_type metadata, else image/jpeg"
    )
    account_id: str = ""

    _go = go_text("image")  # Go's content was the base64 itself

    @field_validator("image")
    @classmethod
    def _base64(cls, image: str) -> str:
        try:
            raw = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64 (the image's bytes, base64-encoded)") from None
        if len(raw) > MAX_IMAGE_BYTES:
            raise ValueError(f"the image is {len(raw)} bytes, over {MAX_IMAGE_BYTES}")
        return image


class ReceiptOcr(BaseAgent):
    """One transaction from a receipt image, by a vision model (256 tokens, temperature 0):
    currency INR when the model gives none, direction debit for a negative amount; an answer
    that is not one transaction fails the request naming the field."""

    capabilities = ("ocr_receipt",)
    risk = Risk.MEDIUM
    produces = (RawTransactions,)

    def __init__(self, id: str = "receipt_ocr", *, llm: Provider, model: str | None = None) -> None:
        super().__init__(id)
        self.llm = llm
        self.model = model

    @handler
    async def on_request(self, payload: ReceiptOcrRequest, ctx: Context) -> Message:
        image = ImagePart(data=payload.image, mime_type=mime_type_of(payload, ctx.message))
        response = await ctx.llm(self.llm).complete(
            Request(
                system=PROMPT,
                messages=(ChatMessage.user("Extract the transaction from this receipt.", image),),
                model=self.model,
                max_tokens=256,
                temperature=0,
            )
        )
        txn = parse_transaction(response.text, account_id=payload.account_id)
        return ctx.emit(RawTransactions(transactions=(txn,)), classification=Classification.PII)


def mime_type_of(payload: ReceiptOcrRequest, message: Message) -> str:
    """The request's MIME type, else the metadata's (Go's place for it), else JPEG (Go's
    default); a metadata value the model would refuse fails the request naming it."""
    if payload.mime_type is not None:
        return payload.mime_type
    meta = message.metadata.get("mime_type")
    if meta is None or meta == "":
        return "image/jpeg"
    known = get_args(MimeType)
    if meta not in known:
        raise ReceiptOcrError(
            f"receipt_ocr: metadata mime_type {meta!r} is not one of {', '.join(known)}"
        )
    return str(meta)


def parse_transaction(text: str, *, account_id: str = "") -> Transaction:
    """The model's JSON (fenced or not) as a transaction, with Go's defaults."""
    body = _strip_fences(text)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ReceiptOcrError(f"receipt_ocr: the model's answer is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReceiptOcrError("receipt_ocr: the model's answer is not a JSON object")
    data.setdefault("account_id", account_id)
    if not data.get("currency"):
        data["currency"] = "INR"
    try:
        txn = Transaction.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"]) or "<answer>"
        raise ReceiptOcrError(f"receipt_ocr: transaction.{field}: {err['msg']}") from None
    if not txn.direction and txn.amount_cents < 0:
        txn = txn.model_copy(update={"direction": "debit"})
    return txn


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.removeprefix("```json").removeprefix("```")
        end = text.rfind("```")
        if end >= 0:
            text = text[:end]
    return text.strip()
