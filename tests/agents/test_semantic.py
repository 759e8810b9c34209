"""h_supervisor: cosine routing over an embedder; the hash embedder; Ollama's embeddings
endpoint over httpx (MockTransport speaking Ollama's wire format)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

import httpx
import pytest
from genie_agents.fraud import PhishingClassifier
from genie_agents.fraud.phishing import PhishingCheck
from genie_agents.support import ComplaintTriage, HSupervisor, SemanticRoute
from genie_agents.support.embeddings import EmbeddingError, HashEmbedder, OllamaEmbedder, cosine
from genie_agents.support.review import Complaint
from genie_agents.support.semantic import HSuperviseRequest

from genie import Classification, Runtime

from .helpers import call, one

AXES = ("card", "otp", "loan")


class KeywordEmbedder:
    """Counts three words: vectors whose cosines are easy to compute by hand."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[float(t.split().count(word)) for word in AXES] for t in texts]


ROUTES = {
    "cards": SemanticRoute(
        "complaint_triage", Complaint, ("card", "loan loan card"), fixed={"complaint_id": "c-1"}
    ),
    "scam": SemanticRoute("phishing_classifier", PhishingCheck, ("otp",)),
}


async def test_the_best_exemplar_of_the_best_route_wins() -> None:
    embedder = KeywordEmbedder()
    agent = HSupervisor("h_supervisor", routes=ROUTES, embedder=embedder)
    # "card card otp" = (2, 1, 0). cards: max(cos to (1,0,0), cos to (1,0,2)) = max(2/sqrt5,
    # 2/(sqrt5 sqrt5)) = 0.8944; scam: cos to (0,1,0) = 1/sqrt5 = 0.4472.
    [out] = await call(agent, HSuperviseRequest(query="card card otp"))
    assert (out.recipient, out.type) == ("complaint_triage", "complaint")
    assert out.payload == Complaint(complaint_id="c-1", text="card card otp")
    assert out.metadata["h_route_id"] == "cards"
    assert out.metadata["h_route_score"] == round(2 / math.sqrt(5), 4) == 0.8944
    assert out.classification is Classification.INTERNAL
    scores = await agent.scores("card card otp")
    assert [(rid, round(s, 4)) for rid, s in scores] == [("cards", 0.8944), ("scam", 0.4472)]
    # Exemplars are embedded once: one call for them, then one per query.
    assert embedder.calls[0] == ["card", "loan loan card", "otp"]
    assert len(embedder.calls) == 3

    [scam] = await call(agent, HSuperviseRequest(query="otp otp card"))
    assert (scam.recipient, scam.payload) == (
        "phishing_classifier",
        PhishingCheck(text="otp otp card"),
    )


async def test_ties_go_to_the_route_declared_first() -> None:
    # "card otp" = (1, 1, 0): 1/sqrt2 to both "card" and "otp".
    agent = HSupervisor("h", routes=ROUTES, embedder=KeywordEmbedder())
    [out] = await call(agent, HSuperviseRequest(query="card otp"))
    assert out.metadata["h_route_id"] == "cards"
    flipped = HSupervisor("h", routes=dict(reversed(ROUTES.items())), embedder=KeywordEmbedder())
    [out] = await call(flipped, HSuperviseRequest(query="card otp"))
    assert out.metadata["h_route_id"] == "scam"


async def test_unroutable_queries_answer_the_caller() -> None:
    agent = HSupervisor("h", routes=ROUTES, embedder=KeywordEmbedder(), min_score=0.5)
    # A query sharing no word with any exemplar scores 0 everywhere: below 0.5.
    [out] = await call(agent, HSuperviseRequest(query="hello there"))
    assert (out.recipient, out.type) == ("upstream", "h_unrouted")
    assert (out.payload.best_route, out.payload.best_score) == ("cards", 0.0)
    assert out.payload.reason == "no route scores above 0.5"
    # "otp loan" = (0, 1, 1): scam 1/sqrt2 = 0.7071 is above 0.5; at a 0.75 floor it is not.
    routed = await one(agent, HSuperviseRequest(query="otp loan"))
    assert routed.message_type == "phishing_check"
    strict = HSupervisor("h", routes=ROUTES, embedder=KeywordEmbedder(), min_score=0.75)
    refused = await one(strict, HSuperviseRequest(query="otp loan"))
    assert (refused.best_route, refused.best_score) == ("scam", 0.7071)
    empty = await one(HSupervisor("h"), HSuperviseRequest(query="anything"))
    assert (empty.message_type, empty.reason) == (
        "h_unrouted",
        "h_supervisor: no routes configured",
    )


def test_routes_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="PhishingCheck has no field 'query'"):
        SemanticRoute("phishing_classifier", PhishingCheck, ("x",), field="query")
    with pytest.raises(ValueError, match="needs non-empty exemplars"):
        SemanticRoute("phishing_classifier", PhishingCheck, ())
    with pytest.raises(ValueError, match="needs a target agent"):
        SemanticRoute("", PhishingCheck, ("x",))


async def test_h_supervisor_on_the_runtime_with_the_hash_embedder() -> None:
    routes = {
        "scam": SemanticRoute(
            "phishing_classifier",
            PhishingCheck,
            ("is this message a scam", "someone asked for my otp", "suspicious link in an sms"),
        ),
        "complaint": SemanticRoute(
            "complaint_triage",
            Complaint,
            ("my card was charged twice", "refund not received for a failed upi payment"),
            fixed={"complaint_id": "h-1"},
        ),
    }
    agents = [
        HSupervisor("h_supervisor", routes=routes),
        PhishingClassifier("phishing_classifier"),
        ComplaintTriage("complaint_triage"),
    ]
    ends = {"phishing_verdict", "complaint_triage", "h_unrouted"}
    async with Runtime(agents) as rt:

        async def ask(query: str) -> str:
            msg = rt.message(HSuperviseRequest(query=query), recipient="h_supervisor")
            result = await rt.ask(msg, until=lambda m: m.type in ends, timeout=5)
            return result.message.type

        assert await ask("got an sms asking for my OTP, is it a scam?") == "phishing_verdict"
        assert await ask("the bank charged my card twice") == "complaint_triage"
        assert await ask("zzz qqq") == "h_unrouted"


# --- embedders --------------------------------------------------------------------------------
def test_cosine_by_hand() -> None:
    assert cosine([1, 0], [1, 0]) == 1.0
    assert cosine([1, 0], [0, 3]) == 0.0
    assert cosine([3, 4], [4, 3]) == 24 / 25
    assert cosine([0, 0], [1, 1]) == 0.0
    with pytest.raises(EmbeddingError, match="different lengths"):
        cosine([1], [1, 2])


async def test_hash_embedder_is_deterministic_unit_length_and_robust_to_inflection() -> None:
    emb = HashEmbedder()
    [a, b, c, blank] = await emb.embed(["home loan", "home loans", "credit card fraud", "!!"])
    assert a == HashEmbedder().vector("Home LOAN")  # case-insensitive, same in any instance
    assert math.isclose(sum(x * x for x in a), 1.0)
    assert cosine(a, b) > 0.6 > 0.2 > cosine(a, c)
    assert blank == [0.0] * 256
    with pytest.raises(ValueError, match="dim must be at least 8"):
        HashEmbedder(dim=4)


def ollama(handler: Callable[[httpx.Request], httpx.Response]) -> OllamaEmbedder:
    return OllamaEmbedder(
        "http://ollama.test:11434/",
        transport=httpx.MockTransport(handler),
    )


async def test_ollama_embedder_speaks_the_embed_endpoint() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content)
        vectors = [[float(len(text)), 1.0] for text in body["input"]]
        return httpx.Response(
            200,
            json={
                "model": body["model"],
                "embeddings": vectors,
                "total_duration": 14143917,
                "load_duration": 1019500,
                "prompt_eval_count": 8,
            },
        )

    vectors = await ollama(handler).embed(["abc", "hello"])
    assert vectors == [[3.0, 1.0], [5.0, 1.0]]
    [request] = seen
    assert (request.method, str(request.url)) == ("POST", "http://ollama.test:11434/api/embed")
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"model": "nomic-embed-text", "input": ["abc", "hello"]}


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            httpx.Response(
                404, json={"error": 'model "nomic-embed-text" not found, try pulling it first'}
            ),
            'HTTP 404: model "nomic-embed-text" not found',
        ),
        (httpx.Response(500, text="boom"), "HTTP 500: boom"),
        (httpx.Response(200, json={"embeddings": [[1.0]]}), "expected 2 embeddings"),
        (httpx.Response(200, json={"embeddings": [[1.0], ["x"]]}), "expected 2 embeddings"),
        (httpx.Response(200, text="not json"), "expected 2 embeddings"),
    ],
)
async def test_ollama_embedder_errors_are_clear(response: httpx.Response, message: str) -> None:
    with pytest.raises(
        EmbeddingError, match=r"ollama embed at http://ollama\.test:11434/api/embed"
    ) as info:
        await ollama(lambda request: response).embed(["a", "b"])
    assert message in str(info.value)


async def test_ollama_embedder_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(EmbeddingError, match="ConnectError: connection refused"):
        await ollama(handler).embed(["a"])


async def test_h_supervisor_over_ollama() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["input"]
        return httpx.Response(
            200, json={"embeddings": [[float("otp" in t), float("card" in t)] for t in texts]}
        )

    routes = {
        "cards": SemanticRoute(
            "complaint_triage", Complaint, ("card",), fixed={"complaint_id": "c"}
        ),
        "scam": SemanticRoute("phishing_classifier", PhishingCheck, ("otp",)),
    }
    agent = HSupervisor("h", routes=routes, embedder=ollama(handler))
    [out] = await call(agent, HSuperviseRequest(query="they want my otp"))
    assert (out.recipient, out.metadata["h_route_score"]) == ("phishing_classifier", 1.0)


class BrokenEmbedder:
    def __init__(self, vectors: list[list[float]]) -> None:
        self.vectors = vectors

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        # The exemplars get ``vectors``; a query gets the first of them.
        return self.vectors if len(texts) > 1 else self.vectors[:1]


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        ([[1.0, 0.0]], "returned 1 vectors for 2 exemplars"),
        ([[math.nan, 0.0], [1.0, 0.0]], "non-finite value"),
        ([[1.0, 0.0], [1.0]], "different lengths"),
    ],
)
async def test_a_broken_embedder_fails_the_request_clearly(
    vectors: list[list[float]], message: str
) -> None:
    routes = {
        "a": SemanticRoute("x", PhishingCheck, ("one",)),
        "b": SemanticRoute("y", PhishingCheck, ("two",)),
    }
    agent = HSupervisor("h", routes=routes, embedder=BrokenEmbedder(vectors))
    with pytest.raises(EmbeddingError, match=message):
        await call(agent, HSuperviseRequest(query="one"))
