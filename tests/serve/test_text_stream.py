"""Model text on a served stream (issue 36): the shipped research pipeline's model answer
reaches the client that asked as ``text`` frames while it is written, judged by the pipeline's
policies for that principal; what they deny is never sent, not even in part; another
principal cannot read the stream; the plain ``ask`` carries no text."""

from __future__ import annotations

from pathlib import Path

from genie.pipeline import Pipeline, load_pipeline
from genie.serve import ServeSettings

from .conftest import ALICE, BOB, ROOT, auth, keyring, serving, sse

ASK = "/v1/pipelines/research/ask"
QUESTION = {"question": "What must a regulated entity report to FIU-IND, and when?"}
CONTACT = "compliance.officer@examplebank.in"


def research(tmp_path: Path, answer: str | None = None) -> Pipeline:
    """The shipped research pipeline; with ``answer``, its scripted model's final answer."""
    text = (ROOT / "config/pipelines/research.yaml").read_text()
    text = text.replace("../policies/", f"{ROOT}/config/policies/")
    text = text.replace("../data/", f"{ROOT}/config/data/")
    if answer is not None:
        start = text.index('        - "A regulated entity')
        end = text.index("    openai:")
        text = text[:start] + f"        - {answer!r}\n" + text[end:]
    path = tmp_path / "research.yaml"
    path.write_text(text)
    return load_pipeline(path)


Frames = list[tuple[str | None, str, dict[str, object]]]


def of(frames: Frames, *kinds: str) -> list[dict[str, object]]:
    return [data for _, kind, data in frames if kind in kinds]


async def test_the_answer_streams_to_the_client_that_asked(tmp_path: Path) -> None:
    pipeline = load_pipeline(ROOT / "config/pipelines/research.yaml")
    settings = ServeSettings(hold_back=16)
    async with serving([pipeline], keyring(tmp_path), settings) as client:
        response = await client.post(ASK + "/stream", json=QUESTION, headers=auth(ALICE))
        frames = sse(response.text)
        plain = (await client.post(ASK, json=QUESTION, headers=auth(ALICE))).json()
        cid = frames[0][2]["correlation_id"]
        bob = await client.get(f"/v1/streams/{cid}", headers=auth(BOB))
    assert response.status_code == 200
    [result] = of(frames, "result")
    summary = result["output"]["payload"]["summary"]  # type: ignore[index]
    text = "".join(str(d["text"]) for d in of(frames, "text"))
    assert text.strip() == summary
    ends = of(frames, "text_end")
    assert [(e["agent"], e["call"], e["finish"]) for e in ends] == [
        ("deep_research", 1, "tool_calls"),  # the search step: no text
        ("deep_research", 2, "stop"),
    ]
    kinds = [kind for _, kind, _ in frames]
    assert kinds.index("text") < kinds.index("result")
    assert "text" not in plain  # only a stream carries text
    assert bob.status_code == 404  # another principal's stream is not there for bob


async def test_what_a_policy_denies_is_never_sent_even_in_part(tmp_path: Path) -> None:
    answer = (
        "Reports go to FIU-IND within 7 days; for questions on the process write to "
        f"{CONTACT} and quote the report's reference."
    )
    pipeline = research(tmp_path, answer)
    async with serving([pipeline], keyring(tmp_path), ServeSettings(hold_back=64)) as client:
        response = await client.post(ASK + "/stream", json=QUESTION, headers=auth(ALICE))
    frames = sse(response.text)
    sent = "".join(str(d["text"]) for d in of(frames, "text"))
    assert "compliance" not in sent
    assert "@" not in response.text.split("event: result")[0]  # nowhere before the result
    assert answer.startswith(sent)
    [denied] = of(frames, "text_denied")
    assert denied["agent"] == "deep_research"
    assert denied["call"] == 2
    assert (denied["policy"], denied["reason"]) == (
        "pii_block",
        "content matched PII pattern: e-mail address",
    )


async def test_a_hold_back_of_none_sends_each_call_whole(tmp_path: Path) -> None:
    pipeline = load_pipeline(ROOT / "config/pipelines/research.yaml")
    async with serving([pipeline], keyring(tmp_path), ServeSettings(hold_back=None)) as client:
        response = await client.post(ASK + "/stream", json=QUESTION, headers=auth(ALICE))
    texts = of(sse(response.text), "text")
    assert len(texts) == 1
    assert str(texts[0]["text"]).startswith("A regulated entity files")


async def test_a_long_answer_cannot_grow_its_recording_past_the_byte_budget(
    tmp_path: Path,
) -> None:
    """A recording is bounded in bytes as in frames: from the model text frame that would take
    it past ``stream_bytes``, frames are dropped (counted in ``dropped`` before the result),
    whatever their number; what was kept stays a prefix, and the result still carries the
    whole answer."""
    answer = "Reports go to FIU-IND within 7 days. " * 5_000  # 185 kB, one frame whole
    pipeline = research(tmp_path, answer)
    settings = ServeSettings(hold_back=None, stream_bytes=64 * 1024)
    async with serving([pipeline], keyring(tmp_path), settings) as client:
        response = await client.post(ASK + "/stream", json=QUESTION, headers=auth(ALICE))
        cid = sse(response.text)[0][2]["correlation_id"]
        again = await client.get(f"/v1/streams/{cid}", headers=auth(ALICE))
    frames = sse(response.text)
    assert of(frames, "text") == []  # over the budget on its own
    # The first call's end (the search step) came before, and nothing after the answer.
    assert [(e["call"], e["finish"]) for e in of(frames, "text_end")] == [(1, "tool_calls")]
    assert [kind for _, kind, _ in frames[-2:]] == ["dropped", "result"]
    [dropped] = of(frames, "dropped")
    assert isinstance(dropped["count"], int)
    assert dropped["count"] > 1
    [result] = of(frames, "result")
    assert result["output"]["payload"]["summary"] == answer.strip()  # type: ignore[index]
    before_result = response.text.rpartition("event: result")[0]
    assert len(before_result.encode()) <= 64 * 1024
    assert again.text == response.text  # the recording is what was sent


async def test_many_text_frames_stop_at_the_byte_budget(tmp_path: Path) -> None:
    answer = " ".join(f"word{n}" for n in range(2_000))
    pipeline = research(tmp_path, answer)
    settings = ServeSettings(hold_back=16, stream_bytes=8 * 1024, stream_frames=100_000)
    async with serving([pipeline], keyring(tmp_path), settings) as client:
        response = await client.post(ASK + "/stream", json=QUESTION, headers=auth(ALICE))
    frames = sse(response.text)
    sent = "".join(str(d["text"]) for d in of(frames, "text"))
    assert sent
    assert answer.startswith(sent)  # a prefix: no hole
    assert len(sent) < len(answer)
    [dropped] = of(frames, "dropped")
    assert isinstance(dropped["count"], int)
    assert dropped["count"] > 0
    assert len(response.text.rpartition("event: result")[0].encode()) <= 8 * 1024
    assert of(frames, "result")[0]["status"] == "ok"
