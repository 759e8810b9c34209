"""What the HTTP adapters share: one ``httpx.AsyncClient`` each, and the one place where httpx's
errors and the providers' error statuses become :mod:`genie.llm` errors."""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import aclosing, asynccontextmanager, contextmanager
from typing import Any

import httpx

from ..._base.clock import waiting_outside
from ..._base.log import lazy_logger
from ..._base.nesting import loads_bounded
from ..._base.surrogates import utf8_text
from .._errors import (
    EXCERPT_LIMIT,
    AuthenticationError,
    BadRequestError,
    LLMError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
)
from .._provider import EventStream
from .._types import Request, Response

__all__ = ["HTTPAdapter", "Redactor", "count", "drain", "iter_ndjson", "iter_sse"]

logger = lazy_logger("genie.llm")

REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-goog-request-id")

MAX_RESPONSE_BYTES = 32 << 20
"""Bytes an answer's body may have (decoded, a stream's all together) unless the adapter is
given another ``max_response_bytes``: far above any text answer (a few bytes a token), room
for inline images; past it, the answer is malformed and reading stops."""


class Redactor:
    """Blanks a secret wherever it would be shown: error text, excerpts, log lines."""

    __slots__ = ("_secrets",)

    def __init__(self, *secrets: str | None) -> None:
        # Short values are not worth hiding and would blank ordinary words.
        self._secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def shown(self, text: str) -> str:
        """What is shown of a server's words (a body, an event, a request id): the secret
        blanked first, then whitespace folded (one log line) and the rest cut to
        ``EXCERPT_LIMIT``. Cutting first would leave the beginning of a secret that straddles
        the cut readable."""
        return " ".join(self(text).split())[:EXCERPT_LIMIT]


def request_id(headers: httpx.Headers, redact: Redactor) -> str | None:
    """The provider's request id, as shown: a server may echo anything in it, the key too."""
    raw = next((headers[h] for h in REQUEST_ID_HEADERS if h in headers), None)
    return None if raw is None else redact.shown(raw)


def count(raw: Mapping[str, Any], key: str) -> int:
    """The token count ``raw[key]`` of a provider's usage report: 0 when left out or null.
    Anything but an integer (text, a fraction, a boolean: JSON's true is no count) raises
    ValueError, which makes the answer malformed (``HTTPAdapter._reading``); read before any
    sum, where Python would add true as 1."""
    value = raw.get(key)
    if value is None:
        return 0
    if type(value) is not int:
        raise ValueError(f"usage count {key!r} is not an integer: {value!r}")
    return value


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the provider asked us to wait: ``retry-after-ms`` (OpenAI, Anthropic) first,
    then ``Retry-After`` in seconds. An HTTP date is not honoured (the backoff applies)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


def error_for(provider: str, response: httpx.Response, body: str, redact: Redactor) -> LLMError:
    """The error for an error status: the class decides what retry and fallback do."""
    status = response.status_code
    cls: type[ProviderError]
    if status == 429:
        cls = RateLimitedError
    elif status in (408, 409) or status >= 500:
        cls = ProviderUnavailableError
    elif status in (401, 403):
        cls = AuthenticationError
    else:
        cls = BadRequestError
    return cls(
        provider=provider,
        status=status,
        request_id=request_id(response.headers, redact),
        excerpt=redact.shown(body),
        retry_after=retry_after(response.headers),
    )


class HTTPAdapter:
    """Base of the HTTP adapters: a client, a name and region, and the error boundary.

    Pass ``client`` to share connection settings or to test over ``httpx.MockTransport``;
    otherwise the adapter makes its own and :meth:`aclose` closes it. An answer whose body is
    larger than ``max_response_bytes`` is refused as it arrives (``ProviderResponseError``).
    """

    default_base_url = ""
    default_model = ""
    default_region = "us"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        name: str | None = None,
        region: str | None = None,
        timeout: float = 60.0,
        client: httpx.AsyncClient | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        if max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be at least 1, not {max_response_bytes}")
        self.max_response_bytes = max_response_bytes
        self._name = name or type(self).__name__.removesuffix("Provider").lower()
        self._region = region or self.default_region
        self.model = model or self.default_model
        self._redact = Redactor(api_key)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._base_url = (base_url or self.default_base_url).rstrip("/")
        self._headers = self.auth_headers(api_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, base_url={self._base_url!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def region(self) -> str:
        return self._region

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {}

    async def complete(self, request: Request) -> Response:
        raise NotImplementedError

    def stream(self, request: Request) -> EventStream:
        raise NotImplementedError

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    @contextmanager
    def _boundary(self) -> Iterator[None]:
        """httpx's exceptions become ours here, and only here, with the key blanked out."""
        try:
            yield
        except LLMError:
            raise
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection, so no request: the provider cannot have billed this call.
            detail = self._redact(str(exc)) or type(exc).__name__
            error = ProviderConnectionError(
                f"{self._name}: connection failed before the request left: {detail}",
                provider=self._name,
            )
            error.sent = False
            raise error from None
        except httpx.TimeoutException as exc:
            raise ProviderConnectionError(
                f"{self._name}: no answer in time ({type(exc).__name__})", provider=self._name
            ) from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            detail = self._redact(str(exc)) or type(exc).__name__
            raise ProviderConnectionError(
                f"{self._name}: connection failed: {detail}", provider=self._name
            ) from None

    def _request(self, path: str, body: dict[str, Any]) -> httpx.Request:
        """The POST of ``body`` as JSON, written as httpx writes it (compact UTF-8), except
        that a lone surrogate (a tool's or a model's ``"\\ud800"`` escape fed back into the
        conversation) goes as U+FFFD: UTF-8 cannot carry it, and httpx's writer raised a
        UnicodeEncodeError for it before anything was sent. NaN or infinity, which JSON cannot
        carry either, is an ``LLMError`` of a call never sent."""
        try:
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except ValueError:  # NaN or infinity: nothing was sent, and nothing is billed
            error = LLMError(
                f"{self._name}: the request holds a number JSON cannot carry (NaN or infinity, "
                "in a temperature, a tool's schema or a tool call's arguments fed back), so it "
                "was not sent",
                provider=self._name,
            )
            error.sent = False
            raise error from None
        return self._client.build_request(
            "POST",
            self._base_url + path,
            content=utf8_text(text).encode(),
            headers={**self._headers, "content-type": "application/json"},
        )

    async def _post(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """POST JSON, return the JSON object answered and the provider's request id."""
        with self._boundary():
            request = self._request(path, body)
            with waiting_outside():  # the server: a virtual clock waits for it
                response = await self._client.send(request, stream=True)
            try:
                with waiting_outside():
                    text = await self._body(response)
            finally:
                await response.aclose()
            if response.is_error:
                raise self._failed(response, text)
            try:
                data = loads_bounded(text)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise ProviderResponseError(
                    f"{self._name}: the answer is not a JSON object: {self._redact.shown(text)!r}",
                    provider=self._name,
                )
            return data, request_id(response.headers, self._redact)

    async def _text(self, response: httpx.Response) -> AsyncGenerator[str, None]:
        """The body of ``response`` as it arrives, decoded, within ``max_response_bytes``:
        past it, or where it does not decode as its ``Content-Encoding`` says,
        :class:`ProviderResponseError` before more of it is held; an error status's body (it
        only feeds an excerpt) is cut there instead."""
        decoder = codecs.getincrementaldecoder(response.encoding or "utf-8")("replace")
        size = 0
        # httpx's iterator is typed as a plain one; the response's aclose (its caller's) ends it.
        chunks = aiter(response.aiter_bytes())
        while True:
            try:
                chunk = await anext(chunks, None)
            except httpx.DecodingError as exc:  # not what its Content-Encoding says (gzip)
                if response.is_error:
                    return
                raise ProviderResponseError(
                    f"{self._name}: the answer's body does not decode as its "
                    f"Content-Encoding says: {self._redact(str(exc))}",
                    provider=self._name,
                ) from None
            if chunk is None:
                break
            size += len(chunk)
            if size > self.max_response_bytes:
                if response.is_error:
                    return
                raise ProviderResponseError(
                    f"{self._name}: the answer is larger than {self.max_response_bytes} "
                    "bytes (max_response_bytes); reading stopped there",
                    provider=self._name,
                )
            if text := decoder.decode(chunk):
                yield text
        if text := decoder.decode(b"", final=True):
            yield text

    async def _body(self, response: httpx.Response) -> str:
        """The whole body of ``response`` (``_text``)."""
        async with aclosing(self._text(response)) as pieces:
            return "".join([piece async for piece in pieces])

    def _failed(self, response: httpx.Response, body: str) -> LLMError:
        err = error_for(self._name, response, body, self._redact)
        logger.warning("llm call failed: %s", err)
        return err

    @asynccontextmanager
    async def _stream_lines(
        self, path: str, body: dict[str, Any]
    ) -> AsyncIterator[tuple[AsyncIterator[str], str | None]]:
        """POST JSON and stream the answer's lines; an error status raises on entry."""
        with self._boundary():
            request = self._request(path, body)
            with waiting_outside():
                response = await self._client.send(request, stream=True)
        try:
            if response.is_error:
                with self._boundary(), waiting_outside():
                    text = await self._body(response)
                raise self._failed(response, text)

            async def lines() -> AsyncGenerator[str, None]:
                # Only whole lines: every streamed format here ends each line, so a part-line
                # at the end means the connection broke, whatever the part happens to parse as.
                # A line's pieces are joined once, at its end: a long line (a whole answer or
                # an inline image in one event) costs its length, not its length squared.
                rest: list[str] = []
                with self._boundary():
                    async with aclosing(self._text(response)) as chunks:
                        while True:
                            # Only the wait for the server is outside the loop, not the time
                            # the caller takes between lines.
                            with waiting_outside():
                                text = await anext(chunks, None)
                            if text is None:
                                break
                            *whole, last = text.split("\n")
                            if whole:
                                whole[0] = "".join((*rest, whole[0]))
                                rest.clear()
                                for line in whole:
                                    yield line.removesuffix("\r")
                            if last:
                                rest.append(last)
                if rest:
                    raise ProviderConnectionError(
                        f"{self._name}: the stream ended before the end of a line",
                        provider=self._name,
                    )

            async with aclosing(lines()) as reader:
                yield reader, request_id(response.headers, self._redact)
        finally:
            await response.aclose()

    def _failed_in_stream(self, detail: object) -> ProviderConnectionError:
        """An error the provider sent inside a stream that had started (status 200): the
        stream is lost, like a dropped connection (retried only before its first event)."""
        return ProviderConnectionError(
            f"{self._name}: the stream failed: {self._redact.shown(str(detail))}",
            provider=self._name,
        )

    @contextmanager
    def _reading(self, what: str, raw: object) -> Iterator[None]:
        """Reading a 2xx answer (``raw``: its JSON, or its text): a value of the wrong shape
        anywhere in it (a string where an object was due, counts that are not integers) makes it
        a malformed answer, whichever of Python's or pydantic's errors found it. Whether counts
        that are numbers can be true is the kill switch's question (it does not let a negative
        count refund a budget)."""
        try:
            yield
        except LLMError:
            raise
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
            raise self._malformed(what, text) from None

    def _malformed(self, what: str, raw: str) -> ProviderResponseError:
        return ProviderResponseError(
            f"{self._name}: malformed {what}: {self._redact.shown(raw)!r}",
            provider=self._name,
        )

    def _json(self, what: str, raw: str) -> dict[str, Any]:
        try:
            data = loads_bounded(raw)
        except ValueError:
            raise self._malformed(what, raw) from None
        if not isinstance(data, dict):
            raise self._malformed(what, raw)
        return data


async def iter_sse(lines: AsyncIterator[str]) -> AsyncGenerator[tuple[str, str], None]:
    """Server-sent events as ``(event, data)``; ``event`` is ``message`` when unnamed."""
    event, data = "message", list[str]()
    async for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    # An event without its closing blank line is incomplete and is not dispatched (the SSE
    # specification): the reader then sees the stream end without its terminal event.


async def drain(lines: AsyncIterator[str], limit: int = 64) -> None:
    """Reads what follows a stream's terminal event (a blank line, then the end of the body),
    so every iterator under it, httpx's included, finishes instead of being dropped half-read
    (trio warns about each such generator). Bounded: a server that keeps sending after its
    terminal event is left to the connection's close. The answer is whole by then, so a stray
    part-line or a connection lost after it is logged, not raised: it would lose the answer."""
    try:
        for _ in range(limit):
            if await anext(lines, None) is None:
                return
    except ProviderConnectionError as exc:
        logger.debug("llm stream: ignored what followed its last event: %s", exc)


async def iter_ndjson(lines: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    """The non-blank lines of newline-delimited JSON."""
    async for line in lines:
        if line.strip():
            yield line
