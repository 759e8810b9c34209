"""Speech to text and text to speech behind a provider interface, whole or streamed, with an
echo provider shipped (it turns audio bytes into text and back, so flows run offline)."""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, runtime_checkable

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

from genie import BaseAgent, Context, Message, Payload, Risk, handler

from .._go import go_names

__all__ = [
    "EchoVoiceProvider",
    "StreamingVoiceProvider",
    "Voice",
    "VoiceAsrChunk",
    "VoiceAsrFinal",
    "VoiceAsrPartial",
    "VoiceAudio",
    "VoiceProvider",
    "VoiceStreaming",
    "VoiceSynthesise",
    "VoiceTranscribe",
    "VoiceTranscript",
    "VoiceTtsChunk",
    "VoiceTtsStream",
]

MAX_AUDIO_BYTES = 10 * 1024 * 1024


def _decode(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError("must be base64 text")  # noqa: TRY004 (pydantic wants ValueError)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None


def _go_blank_lang(go: Mapping[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    # A Go client marshals a blank "lang" when it has none: the port's default applies.
    for key in ("language", "voice"):
        if data.get(key) == "":
            del data[key]
    return data


# Go's speech requests name the language "lang"; its synthesis picks the voice by language, so
# a Go "lang" is the port's voice name (a language code is one for a provider that picks so).
GO_TRANSCRIBE = {"lang": "language", "audio_b64": "audio"}
GO_SYNTHESISE = {"lang": "voice"}


# Audio travels as standard base64 in JSON and as bytes in Python.
Audio = Annotated[
    bytes,
    BeforeValidator(_decode),
    Field(max_length=MAX_AUDIO_BYTES, description="audio bytes, base64 (standard alphabet)"),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]


@runtime_checkable
class VoiceProvider(Protocol):
    """Speech recognition and synthesis (a cloud speech API, an on-prem model, the echo)."""

    async def transcribe(self, audio: bytes, language: str) -> str:
        """The text spoken in ``audio``."""
        ...

    async def synthesise(self, text: str, voice: str) -> bytes:
        """``text`` spoken by ``voice``, as audio bytes."""
        ...


@runtime_checkable
class StreamingVoiceProvider(VoiceProvider, Protocol):
    """A provider that also synthesises in chunks, the first one before the whole is ready."""

    def synthesise_stream(self, text: str, voice: str) -> AsyncIterator[bytes]:
        """The audio of ``text`` in order, chunk by chunk."""
        ...


class EchoVoiceProvider:
    """Audio is UTF-8 text: transcribing decodes it and appends " (echo)" (as Go's echo
    provider), synthesising encodes the text; the stream cuts it in ``chunk_bytes`` pieces."""

    SUFFIX = " (echo)"

    def __init__(self, chunk_bytes: int = 1024) -> None:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be at least 1")
        self.chunk_bytes = chunk_bytes

    async def transcribe(self, audio: bytes, language: str) -> str:
        return audio.decode("utf-8", errors="replace") + self.SUFFIX

    async def synthesise(self, text: str, voice: str) -> bytes:
        return (text + self.SUFFIX).encode()

    async def synthesise_stream(self, text: str, voice: str) -> AsyncIterator[bytes]:
        audio = await self.synthesise(text, voice)
        for start in range(0, len(audio), self.chunk_bytes):
            yield audio[start : start + self.chunk_bytes]


class VoiceTranscribe(Payload):
    message_type = "voice_transcribe"
    audio: Audio
    language: str = "en-IN"

    _go = go_names(GO_TRANSCRIBE, then=_go_blank_lang)


class VoiceTranscript(Payload):
    message_type = "voice_transcript"
    text: str
    language: str


class VoiceSynthesise(Payload):
    message_type = "voice_synthesise"
    text: str = Field(min_length=1, max_length=10_000)
    voice: str = "default"

    _go = go_names(GO_SYNTHESISE, then=_go_blank_lang)


class VoiceAudio(Payload):
    message_type = "voice_audio"
    audio: Audio
    voice: str


class Voice(BaseAgent):
    """Transcribes audio (``voice_transcribe``, base64 audio) and synthesises speech
    (``voice_synthesise``) through the ``provider`` (default: the echo provider)."""

    capabilities = ("voice",)
    risk = Risk.MEDIUM
    produces = (VoiceTranscript, VoiceAudio)

    def __init__(self, id: str, *, provider: VoiceProvider | None = None) -> None:
        super().__init__(id)
        self.provider: VoiceProvider = provider if provider is not None else EchoVoiceProvider()

    @handler
    async def on_transcribe(self, payload: VoiceTranscribe, ctx: Context) -> Message:
        text = await self.provider.transcribe(payload.audio, payload.language)
        return ctx.emit(VoiceTranscript(text=text, language=payload.language))

    @handler
    async def on_synthesise(self, payload: VoiceSynthesise, ctx: Context) -> Message:
        audio = await self.provider.synthesise(payload.text, payload.voice)
        return ctx.emit(VoiceAudio(audio=audio, voice=payload.voice))


class VoiceAsrChunk(Payload):
    message_type = "voice_asr_chunk"
    stream_id: str = Field(min_length=1)
    seq: int = Field(ge=0)
    audio: Audio
    final: bool = False
    language: str = "en-IN"

    # Go's chunk has no sequence number (it transcribed each chunk alone): seq stays required.
    _go = go_names(
        GO_TRANSCRIBE | {"session_id": "stream_id", "is_last": "final"}, then=_go_blank_lang
    )


class VoiceAsrPartial(Payload):
    message_type = "voice_asr_partial"
    stream_id: str
    seq: int
    text: str


class VoiceAsrFinal(Payload):
    message_type = "voice_asr_final"
    stream_id: str
    text: str


class VoiceTtsStream(Payload):
    message_type = "voice_tts_stream"
    text: str = Field(min_length=1, max_length=10_000)
    voice: str = "default"

    _go = go_names(GO_SYNTHESISE, then=_go_blank_lang)


class VoiceTtsChunk(Payload):
    message_type = "voice_tts_chunk"
    seq: int
    audio: Audio
    last: bool


@dataclass
class _Stream:
    next_seq: int = 0
    audio: bytearray = field(default_factory=bytearray)


class VoiceStreaming(BaseAgent):
    """Streaming voice. Speech in: ``voice_asr_chunk`` messages numbered from 0 per
    ``stream_id``; each answers a ``voice_asr_partial`` with the transcript of the audio so far,
    and the chunk marked ``final`` a ``voice_asr_final`` (a chunk out of order is refused; at
    most ``max_streams`` (100) open streams, the oldest dropped first). Speech out: a
    ``voice_tts_stream`` answers one ``voice_tts_chunk`` per provider chunk, in order, the
    last marked ``last``."""

    capabilities = ("voice_streaming",)
    risk = Risk.MEDIUM
    produces = (VoiceAsrPartial, VoiceAsrFinal, VoiceTtsChunk)

    def __init__(
        self, id: str, *, provider: StreamingVoiceProvider | None = None, max_streams: int = 100
    ) -> None:
        super().__init__(id)
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.provider: StreamingVoiceProvider = (
            provider if provider is not None else EchoVoiceProvider()
        )
        self.max_streams = max_streams
        # Open streams, bounded: the oldest is dropped first.
        self._streams: OrderedDict[str, _Stream] = OrderedDict()

    @handler
    async def on_chunk(self, payload: VoiceAsrChunk, ctx: Context) -> Message:
        p = payload
        stream = self._streams.get(p.stream_id)
        expected = 0 if stream is None else stream.next_seq
        if p.seq != expected:
            raise ValueError(
                f"voice_streaming: chunk {p.seq} of stream {p.stream_id!r} arrived out of "
                f"order (expected {expected})"
            )
        if stream is None:
            if len(self._streams) >= self.max_streams:
                self._streams.popitem(last=False)
            stream = self._streams[p.stream_id] = _Stream()
        if len(stream.audio) + len(p.audio) > MAX_AUDIO_BYTES:
            del self._streams[p.stream_id]
            raise ValueError(
                f"voice_streaming: stream {p.stream_id!r} is over {MAX_AUDIO_BYTES} bytes"
            )
        stream.audio += p.audio
        stream.next_seq += 1
        text = await self.provider.transcribe(bytes(stream.audio), p.language)
        if p.final:
            del self._streams[p.stream_id]
            return ctx.emit(VoiceAsrFinal(stream_id=p.stream_id, text=text))
        return ctx.emit(VoiceAsrPartial(stream_id=p.stream_id, seq=p.seq, text=text))

    @handler
    async def on_tts(self, payload: VoiceTtsStream, ctx: Context) -> list[Message]:
        chunks = [c async for c in self.provider.synthesise_stream(payload.text, payload.voice)]
        return [
            ctx.emit(VoiceTtsChunk(seq=i, audio=chunk, last=i == len(chunks) - 1))
            for i, chunk in enumerate(chunks)
        ]
