"""aa_fetcher (consent from the policies' ledger, pii output) and voice (echo provider, whole
and streamed)."""

from __future__ import annotations

import base64

import pytest
from genie_agents.connectors import (
    AaFetcher,
    EchoVoiceProvider,
    InMemoryFIClient,
    Voice,
    VoiceStreaming,
)
from genie_agents.connectors.aa import AaFetchRequest
from genie_agents.connectors.voice import (
    VoiceAsrChunk,
    VoiceAudio,
    VoiceSynthesise,
    VoiceTranscribe,
    VoiceTtsStream,
)

from genie import Classification, GatherResult, InvalidMessageError, MessageTypes, Runtime
from genie.policies import Consent, InMemoryConsentLedger

from .helpers import call, one

TYPES = MessageTypes([AaFetchRequest, VoiceTranscribe, VoiceAsrChunk, VoiceSynthesise])
JANUARY = AaFetchRequest(account_id="acct-123", from_date="2026-01-02", to_date="2026-01-31")


def granted() -> InMemoryConsentLedger:
    ledger = InMemoryConsentLedger()
    ledger.grant("user-1", "transactions")
    return ledger


def fetcher(ledger: InMemoryConsentLedger) -> AaFetcher:
    return AaFetcher("aa_fetcher", client=InMemoryFIClient.sample(), ledger=ledger)


# --- aa_fetcher -------------------------------------------------------------------------------
async def test_aa_fetch_keeps_the_dates_asked_and_is_pii() -> None:
    [out] = await call(fetcher(granted()), JANUARY, metadata={"user_id": "user-1"})
    assert out.classification is Classification.PII
    assert out.payload.user_id == "user-1"
    # Of t1 (01-01), t2 (01-03), t3 (01-10), t4 (02-01): the two inside 01-02..01-31.
    assert [t.transaction_id for t in out.payload.transactions] == ["t2", "t3"]
    assert sum(t.amount_cents for t in out.payload.transactions) == -2_849_900
    whole = await one(
        fetcher(granted()), AaFetchRequest(account_id="acct-123"), metadata={"user_id": "user-1"}
    )
    assert len(whole.transactions) == 4
    edges = AaFetchRequest(account_id="acct-123", from_date="2026-01-01", to_date="2026-02-01")
    inclusive = await one(fetcher(granted()), edges, metadata={"user_id": "user-1"})
    assert len(inclusive.transactions) == 4


async def test_aa_fetch_needs_the_user_and_active_consent() -> None:
    ledger = granted()
    with pytest.raises(ValueError, match="the message has no user_id metadata"):
        await call(fetcher(ledger), JANUARY)
    with pytest.raises(ValueError, match="missing active consent for category transactions"):
        await call(fetcher(ledger), JANUARY, metadata={"user_id": "user-2"})
    ledger.revoke("user-1", "transactions")
    with pytest.raises(ValueError, match="missing active consent for category transactions"):
        await call(fetcher(ledger), JANUARY, metadata={"user_id": "user-1"})
    # With no ledger given, nothing is fetched.
    with pytest.raises(ValueError, match="missing active consent"):
        await call(AaFetcher("aa"), JANUARY, metadata={"user_id": "user-1"})


async def test_aa_fetch_unknown_account() -> None:
    other = AaFetchRequest(account_id="acct-999")
    with pytest.raises(LookupError, match="no account 'acct-999' for user 'user-1'"):
        await call(fetcher(granted()), other, metadata={"user_id": "user-1"})


async def test_aa_fetcher_and_the_consent_policy_share_one_ledger() -> None:
    ledger = granted()
    policy = Consent(ledger, {"aa_fetch_request": "transactions"})
    async with Runtime([fetcher(ledger)], policies=[policy]) as rt:

        async def ask() -> GatherResult:
            msg = rt.message(JANUARY, recipient="aa_fetcher", metadata={"user_id": "user-1"})
            return await rt.ask(msg, until="aa_fetch_result", timeout=5)

        result = await ask()
        assert result.complete
        ledger.revoke("user-1", "transactions")
        denied = await ask()
    assert denied.status == "partial"
    assert "missing active consent for category transactions" in str(denied.missing)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"account_id": 5}, "account_id"),  # none at all: the metadata's (test_go_ported.py)
        ({"account_id": "a", "from_date": "2026-13-01"}, "from_date"),
        ({"account_id": "a", "extra": 1}, "extra"),
    ],
)
def test_aa_fetch_request_refuses_bad_fields(data: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidMessageError, match=f"message: field '{field}'"):
        TYPES.parse_payload("aa_fetch_request", data)


def test_aa_fetch_request_dates_in_order() -> None:
    with pytest.raises(
        InvalidMessageError, match="from_date 2026-02-01 is after to_date 2026-01-01"
    ):
        TYPES.parse_payload(
            "aa_fetch_request",
            {"account_id": "a", "from_date": "2026-02-01", "to_date": "2026-01-01"},
        )


# --- voice ------------------------------------------------------------------------------------
def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_voice_transcribe_and_synthesise_with_the_echo() -> None:
    spoken = TYPES.parse_payload("voice_transcribe", {"audio": b64("namaste")})
    out = await one(Voice("voice"), spoken)
    assert (out.text, out.language) == ("namaste (echo)", "en-IN")
    audio = await one(Voice("voice"), VoiceSynthesise(text="hi", voice="asha"))
    assert audio.audio == b"hi (echo)"
    assert audio.model_dump(mode="json") == {"audio": b64("hi (echo)"), "voice": "asha"}


@pytest.mark.parametrize("audio", ["not base64!", "abc", 12])
def test_voice_refuses_audio_that_is_not_base64(audio: object) -> None:
    with pytest.raises(InvalidMessageError, match="field 'audio'"):
        TYPES.parse_payload("voice_transcribe", {"audio": audio})


async def test_streaming_asr_partials_then_final() -> None:
    agent = VoiceStreaming("voice_streaming")
    first = await one(agent, VoiceAsrChunk(stream_id="s1", seq=0, audio=b"hel"))
    assert (first.message_type, first.seq, first.text) == ("voice_asr_partial", 0, "hel (echo)")
    last = await one(agent, VoiceAsrChunk(stream_id="s1", seq=1, audio=b"lo", final=True))
    assert (last.message_type, last.text) == ("voice_asr_final", "hello (echo)")
    # The stream is closed: numbering starts again.
    again = await one(agent, VoiceAsrChunk(stream_id="s1", seq=0, audio=b"x"))
    assert again.text == "x (echo)"


async def test_streaming_asr_refuses_chunks_out_of_order_and_bounds_streams() -> None:
    agent = VoiceStreaming("v", max_streams=1)
    with pytest.raises(
        ValueError, match=r"chunk 1 of stream 's1' arrived out of order \(expected 0\)"
    ):
        await one(agent, VoiceAsrChunk(stream_id="s1", seq=1, audio=b"a"))
    await one(agent, VoiceAsrChunk(stream_id="s1", seq=0, audio=b"a"))
    await one(agent, VoiceAsrChunk(stream_id="s2", seq=0, audio=b"b"))  # evicts s1
    with pytest.raises(ValueError, match=r"\(expected 0\)"):
        await one(agent, VoiceAsrChunk(stream_id="s1", seq=1, audio=b"a"))
    with pytest.raises(ValueError, match="max_streams must be at least 1"):
        VoiceStreaming("v", max_streams=0)


async def test_streaming_tts_emits_chunks_in_order() -> None:
    agent = VoiceStreaming("v", provider=EchoVoiceProvider(chunk_bytes=4))
    outs = await call(agent, VoiceTtsStream(text="abcdef"))
    chunks = [o.payload for o in outs]
    # "abcdef (echo)" is 13 bytes: 4 + 4 + 4 + 1.
    assert [(c.seq, c.audio, c.last) for c in chunks] == [
        (0, b"abcd", False),
        (1, b"ef (", False),
        (2, b"echo", False),
        (3, b")", True),
    ]
    assert {o.type for o in outs} == {"voice_tts_chunk"}


async def test_voice_on_the_runtime() -> None:
    async with Runtime([Voice("voice")]) as rt:
        msg = rt.message(VoiceSynthesise(text="ok"), recipient="voice")
        result = await rt.ask(msg, until="voice_audio", timeout=5)
    payload = result.message.payload
    assert isinstance(payload, VoiceAudio)
    assert payload.audio == b"ok (echo)"
