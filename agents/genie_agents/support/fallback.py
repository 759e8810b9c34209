"""The fallback agent (as in the Go system): tells the caller a human will follow up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from genie import Context, Message, Payload, Risk

__all__ = ["Fallback", "FallbackNotice"]


class FallbackNotice(Payload):
    message_type = "fallback_notice"
    text: str


class Fallback:
    """Answers any message it is given (the supervisor hands it what the primary agent failed)
    with a notice to ``target``, keeping the correlation so the caller's wait ends at once.

    ``primary`` defaults to the id without its ``_fallback`` suffix, as in Go's ``NewFor``.
    """

    capabilities: Sequence[str] = ("fallback",)
    risk = Risk.LOW
    consumes_any: ClassVar[bool] = True
    produces: ClassVar[tuple[type[Payload], ...]] = (FallbackNotice,)

    def __init__(self, id: str, *, primary: str | None = None, target: str = "user") -> None:
        self.id = id
        self.primary = primary or id.removesuffix("_fallback")
        self.name = f"Fallback for {self.primary}"
        self.target = target

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        text = (
            f"The {self.primary} agent could not complete your request. "
            f"A human reviewer will follow up. Reference id: {msg.id}"
        )
        return (ctx.emit(FallbackNotice(text=text), recipient=self.target),)
