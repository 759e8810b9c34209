"""The LLM agents on the real runtime over genie.llm's scripted provider: deep research (its
tool calls are governed deliveries), the MoA panel, receipt OCR and the auditor's judge.
Every expected value is worked out by hand from the script."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from genie_agents.advisory.moa import MoaRecommender, MoaRecommendRequest
from genie_agents.finance.receipts import ReceiptOcr, ReceiptOcrRequest
from genie_agents.research.deep import CorpusSearch, DeepResearch, ResearchRequest
from genie_agents.support.review import Auditor, AuditRequest

from genie import (
    Classification,
    ConfigurationError,
    InvalidMessageError,
    MessageTypes,
    Payload,
    Runtime,
)
from genie.llm import (
    ProviderUnavailableError,
    Response,
    ScriptedProvider,
    ToolCall,
)
from genie.policies import Rule

pytestmark = pytest.mark.anyio


def busy(name: str) -> ProviderUnavailableError:
    return ProviderUnavailableError(provider=name, status=503, request_id=None, excerpt="busy")


def calls(*calls: tuple[str, dict[str, Any]]) -> Response:
    return Response(
        tool_calls=tuple(
            ToolCall(id=f"c{i}", name=name, arguments=args)
            for i, (name, args) in enumerate(calls, 1)
        ),
        finish_reason="tool_calls",
    )


async def research(
    payload: ResearchRequest, llm: ScriptedProvider | None = None, *, deny_search: bool = False
) -> tuple[dict[str, Any], Runtime]:
    policies = [Rule("no-search", 'type == "corpus_query"')] if deny_search else []
    async with Runtime(policies=policies) as rt:
        rt.add(DeepResearch("deep_research", llm=llm))
        rt.add(CorpusSearch("corpus_search"))
        result = await rt.ask(
            rt.message(payload, recipient="deep_research"), until="research_brief"
        )
    assert result.message is not None, result
    return result.message.payload.model_dump(), rt


# --- deep_research -----------------------------------------------------------------------------


async def test_offline_asks_the_corpus_agent_once_per_source() -> None:
    brief, rt = await research(ResearchRequest(question="AA roles", sources=["sahamati", "x"]))
    assert brief["mode"] == "offline"
    assert brief["summary"] == (
        "[sahamati] Sahamati Account Aggregator framework defines FIP/FIU/AA roles.\n"
        "[x] No snippet found for 'AA roles' in 'x'."
    )
    assert [c["title"] for c in brief["citations"]] == ["Sahamati AA specs", "no_source"]
    assert brief["steps"] == 2
    # two searches: each a delivery of the runtime to the corpus agent
    assert rt.statistics().mailboxes["corpus_search"].handled == 2


async def test_react_runs_the_tools_and_tells_the_model_its_mistakes() -> None:
    llm = ScriptedProvider(
        [
            calls(("corpus_search", {"corpus": "rbi", "query": "KYC"}), ("web", {"q": "KYC"})),
            calls(("corpus_search", {"corpus": "rbi"})),  # no query: told, not failed
            "KYC follows the RBI master directions.",
        ]
    )
    brief, rt = await research(ResearchRequest(question="KYC rules?"), llm)
    assert (brief["mode"], brief["steps"]) == ("react", 3)
    assert brief["summary"] == "KYC follows the RBI master directions."
    assert [c["title"] for c in brief["citations"]] == ["RBI master directions"]
    first, second, third = llm.requests
    assert [t.name for t in first.tools] == ["corpus_search"]
    assert first.context.correlation_id is not None
    search, unknown = second.messages[-2:]
    assert json.loads(search.text)["snippet"].startswith("RBI circulars are indexed")
    assert unknown.text == "error: unknown tool 'web' (the tool is 'corpus_search')"
    assert third.messages[-1].text.startswith("error: bad arguments for corpus_search")
    assert "query" in third.messages[-1].text
    assert rt.statistics().mailboxes["corpus_search"].handled == 1  # the one valid search


async def test_a_failing_model_degrades_to_the_offline_brief() -> None:
    brief, _ = await research(ResearchRequest(question="q"), ScriptedProvider([busy("m")]))
    assert brief["mode"] == "offline"
    assert len(brief["citations"]) == 3


async def test_a_model_that_never_answers_is_stopped_at_max_steps() -> None:
    llm = ScriptedProvider([calls(("corpus_search", {"corpus": "rbi", "query": "q"}))])
    brief, _ = await research(ResearchRequest(question="q", max_steps=2), llm)
    assert len(llm.requests) == 2
    assert brief["mode"] == "offline"


async def test_a_denied_search_is_told_to_the_model_and_skipped_offline() -> None:
    llm = ScriptedProvider([calls(("corpus_search", {"corpus": "rbi", "query": "q"})), "done"])
    brief, rt = await research(ResearchRequest(question="q"), llm, deny_search=True)
    assert (brief["summary"], brief["citations"]) == ("done", [])
    assert llm.requests[1].messages[-1].text == (
        "error: denied by policy no-search: matched rule no-search"
    )
    offline, rt = await research(ResearchRequest(question="q"), deny_search=True)
    assert (offline["summary"], offline["citations"], offline["steps"]) == ("", [], 0)
    assert rt.statistics().denied == 3


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (ResearchRequest, {"question": "q", "max_steps": -1}, "max_steps"),  # Go: 0 = 4
        (ResearchRequest, {"question": "q", "max_steps": 17}, "max_steps"),
        (ResearchRequest, {"question": ""}, "question"),
        (MoaRecommendRequest, {"question": ""}, "question"),
        (ReceiptOcrRequest, {"image": "not base64!"}, "image"),
        (ReceiptOcrRequest, {"image": "aGk=", "mime_type": "text/html"}, "mime_type"),
    ],
)
def test_bad_payloads_are_refused_naming_the_field(
    model: type[Payload], data: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidMessageError, match=f"invalid '{model.message_type}'.*{field}"):
        MessageTypes([model]).parse_payload(model.message_type, data)


# --- moa_recommender ---------------------------------------------------------------------------


async def ask_panel(panel: list[ScriptedProvider], question: str = "Where?") -> Any:
    async with Runtime() as rt:
        rt.add(MoaRecommender("moa", llm=tuple(panel)))
        result = await rt.ask(
            rt.message(MoaRecommendRequest(question=question), recipient="moa"),
            until="moa_recommendation",
        )
    return result, rt


async def test_the_panel_votes_in_parallel_and_names_the_winner() -> None:
    panel = [
        ScriptedProvider(["gold"], name="a"),
        ScriptedProvider([busy("b")], name="b"),
        ScriptedProvider(["index fund"], name="c"),
        ScriptedProvider(["index fund "], name="d"),
    ]
    result, _ = await ask_panel(panel)
    out = result.message.payload
    assert (out.winner, out.winner_text) == ("c", "index fund")
    assert out.votes == {"gold": 1, "index fund": 2}
    assert [(c.panellist, c.text, bool(c.error)) for c in out.candidates] == [
        ("a", "gold", False),
        ("b", "", True),
        ("c", "index fund", False),
        ("d", "index fund", False),
    ]
    request = panel[0].requests[0]
    assert (request.max_tokens, request.temperature) == (256, 0.2)
    assert request.messages[0].text == "Where?"


async def test_all_panellists_failing_fails_the_request() -> None:
    result, rt = await ask_panel([ScriptedProvider([busy("a")], name="a")])
    assert (result.status, result.replies) == ("partial", ())
    [letter] = list(rt.dead_letters)
    assert "all panellists failed" in letter.reason


def test_an_empty_panel_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="empty panel"):
        MoaRecommender("moa", llm=())


def test_a_pipeline_gives_a_panel_its_stacks(tmp_path: Any) -> None:
    from genie.pipeline import load_pipeline

    path = tmp_path / "moa.yaml"
    path.write_text(
        "llm:\n"
        "  providers:\n"
        "    a: {kind: scripted, answers: [bonds]}\n"
        "    b: {kind: scripted, answers: [bonds]}\n"
        "  stacks: {one: {providers: [a]}, two: {providers: [b]}}\n"
        "agents:\n"
        "  - {id: moa, use: moa_recommender, llm: [one, two]}\n"
        "entry: {type: moa_recommend_request, to: moa, payload: {question: Where?}}\n"
        "output: moa_recommendation\n"
    )
    import anyio

    result = anyio.run(load_pipeline(path).run)
    assert result.output is not None
    assert result.output.payload.model_dump()["votes"] == {"bonds": 2}
    path.write_text(path.read_text().replace("llm: [one, two]", "llm: []"))
    with pytest.raises(ConfigurationError, match="empty panel"):
        load_pipeline(path)


# --- receipt_ocr -------------------------------------------------------------------------------

IMAGE = base64.b64encode(b"\x89PNG\r\n\x1a\n receipt").decode()


async def ocr(answer: str) -> tuple[Any, Runtime, ScriptedProvider]:
    llm = ScriptedProvider([answer])
    async with Runtime() as rt:
        rt.add(ReceiptOcr("receipt_ocr", llm=llm))
        request = ReceiptOcrRequest(image=IMAGE, mime_type="image/png", account_id="acct-1")
        result = await rt.ask(
            rt.message(request, recipient="receipt_ocr"), until="raw_transactions"
        )
    return result, rt, llm


async def test_a_receipt_becomes_one_pii_transaction_with_go_defaults() -> None:
    answer = (
        '```json\n{"date": "2026-03-14", "description": "Cafe Coffee Day latte",'
        ' "merchant": "ccd", "amount_cents": -45000, "category": "food:dining"}\n```'
    )
    result, _, llm = await ocr(answer)
    assert result.message.classification is Classification.PII
    [txn] = result.message.payload.transactions
    assert (txn.date, txn.amount_cents, txn.merchant) == ("2026-03-14", -45000, "ccd")
    assert (txn.currency, txn.direction, txn.account_id) == ("INR", "debit", "acct-1")
    [request] = llm.requests
    [image] = request.messages[0].images
    assert (image.data, image.mime_type) == (IMAGE, "image/png")
    assert (request.max_tokens, request.temperature) == (256, 0)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ('{"date": "2026-03-14"}', "transaction.amount_cents: Field required"),
        ('{"date": "2026-03-14", "amount_cents": "lots"}', "transaction.amount_cents"),
        ("I cannot read this receipt.", "the model's answer is not JSON"),
        ("[1, 2]", "not a JSON object"),
    ],
)
async def test_an_answer_that_is_not_a_transaction_fails_naming_the_field(
    answer: str, reason: str
) -> None:
    result, rt, _ = await ocr(answer)
    assert (result.status, result.replies) == ("partial", ())
    [letter] = list(rt.dead_letters)
    assert reason in letter.reason


@pytest.mark.parametrize(
    ("mime_type", "metadata", "sent"),
    [
        (None, {}, "image/jpeg"),  # Go's default
        (None, {"mime_type": "image/png"}, "image/png"),  # Go's place for it
        ("image/webp", {"mime_type": "image/png"}, "image/webp"),  # the request's own wins
    ],
)
async def test_a_go_receipt_takes_its_mime_type_from_the_metadata(
    mime_type: str | None, metadata: dict[str, str], sent: str
) -> None:
    llm = ScriptedProvider(['{"date": "2026-03-14", "amount_cents": -100}'])
    async with Runtime([ReceiptOcr("receipt_ocr", llm=llm)]) as rt:
        request = rt.parse(
            "receipt_ocr_request",
            json.dumps(IMAGE if mime_type is None else {"image": IMAGE, "mime_type": mime_type}),
            recipient="receipt_ocr",
            metadata=metadata,
        )
        result = await rt.ask(request, until="raw_transactions")
    assert result.complete
    [image] = llm.requests[0].messages[0].images
    assert (image.data, image.mime_type) == (IMAGE, sent)


async def test_a_metadata_mime_type_the_model_cannot_take_fails_naming_it() -> None:
    llm = ScriptedProvider(["{}"])
    async with Runtime([ReceiptOcr("receipt_ocr", llm=llm)]) as rt:
        msg = rt.parse(
            "receipt_ocr_request",
            json.dumps(IMAGE),
            recipient="receipt_ocr",
            metadata={"mime_type": "text/html"},
        )
        result = await rt.ask(msg, until="raw_transactions")
    assert result.status == "partial"
    assert llm.requests == []  # nothing was sent
    [letter] = rt.dead_letters
    assert "metadata mime_type 'text/html' is not one of image/jpeg" in letter.reason


# --- the auditor's judge -----------------------------------------------------------------------


async def audit(llm: ScriptedProvider | None, content: str = "Buy now, 40% guaranteed") -> Any:
    async with Runtime() as rt:
        rt.add(Auditor("llm_auditor", llm=llm, constitution="Never promise returns."))
        request = AuditRequest(message_id="m1", sender="a", recipient="b", content=content)
        result = await rt.ask(rt.message(request, recipient="llm_auditor"), until="audit_result")
    return result.message.payload


async def test_a_low_score_is_a_flag_with_the_judges_reasoning() -> None:
    judge = ScriptedProvider(["SCORE: 3\nREASONING: promises returns"])
    out = await audit(judge)
    assert (out.success, out.constitution_score) == (False, 3)
    assert out.flags == ("constitution_score_low: promises returns",)
    assert out.summary == "constitution_score_low: promises returns"
    [request] = judge.requests
    assert request.system == "Never promise returns."
    assert "Buy now, 40% guaranteed" in request.messages[0].text


async def test_a_score_of_six_passes_and_a_failed_judge_adds_no_flag() -> None:
    out = await audit(ScriptedProvider(["SCORE: 6\nREASONING: fine"]))
    assert (out.success, out.flags, out.constitution_score) == (True, (), 6)
    out = await audit(ScriptedProvider([busy("judge")]))
    assert (out.success, out.flags, out.constitution_score) == (True, (), None)
    out = await audit(None, content=" ")
    assert (out.flags, out.constitution_score) == (("empty_content",), None)


async def test_a_go_audit_request_audits_its_own_envelope() -> None:
    """Go's audit_request was the message to audit: its content a bare text, its id, sender
    and recipient the envelope's (a message routed by type has no recipient: a flag)."""
    async with Runtime([Auditor("llm_auditor")]) as rt:
        addressed = rt.parse("audit_request", '"All good."', recipient="llm_auditor")
        ok = await rt.ask(addressed, until="audit_result")
        rt.subscribe("llm_auditor", "audit_request")
        routed = rt.parse("audit_request", '"All good."')
        flagged = await rt.ask(routed, until="audit_result")
    result: Any = ok.message.payload
    assert result.message_id == addressed.id
    assert (result.success, result.flags) == (True, ())
    result = flagged.message.payload
    assert result.flags == ("missing_address",)
