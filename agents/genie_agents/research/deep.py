"""Deep research (Go's ``deep_research``): a ReAct loop over a model, whose tool calls are
messages to a corpus agent (``ctx.request``), so each is a governed delivery like any other.
Without a model, or when the model fails, the offline brief asks the corpus agent once per
corpus, as Go's stub resolver did. With ``memory`` it remembers (``ctx.memory``): the model is
shown the client's earlier findings that bear on the question and the conversation's summary,
and each brief is kept (episodes, a semantic entry, the last question as a fact), every write
judged by the policies first. With ``reference`` (an MCP tool server, ``ctx.tool(NAME)``, such
as ``genie_agents.tools.reference``) the model is offered that server's tools beside the corpus
search, each call governed both ways, and the offline brief searches its circulars too."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from genie import (
    BaseAgent,
    Context,
    DeniedError,
    Message,
    Payload,
    Risk,
    ToolArgumentsError,
    ToolDeniedError,
    handler,
)
from genie.llm import (
    ChatMessage,
    LLMError,
    Provider,
    Request,
    Tool,
    ToolCall,
    complete_by_streaming,
)

from .._go import go_unset
from .._remember import recalled_context, session_of, topic_key, user_of

__all__ = [
    "CorpusQuery",
    "CorpusSearch",
    "CorpusSnippet",
    "DeepResearch",
    "ResearchBrief",
    "ResearchRequest",
]

CORPORA = ("rbi", "sahamati", "fiu_ind")
SYSTEM = (
    "You are a precise financial researcher. Use the available tools to gather facts before "
    "answering. Cite the source corpus for every claim."
)
DISCLAIMERS = {
    "react": "Synthesised by an AI research loop. Verify all citations and quotations against "
    "the original RBI/Sahamati/FIU-IND publications before relying on them.",
    "offline": "Offline mode: deterministic snippets from the stub corpus, no model was asked.",
}


class Citation(BaseModel):
    model_config = ConfigDict(frozen=True)  # a value inside a payload: frozen, as payloads are

    title: str
    url: str = ""
    quote: str = ""


# The offline brief sends the question (stripped) to each source as a corpus_query, so the
# two take the same: a blank question, a blank or 65-character source, or a question longer
# than the query's 2,000 passed the request and then failed the agent's own corpus_query.
QUESTION_MAX, CORPUS_MAX = 4000, 64
_Corpus = Annotated[str, Field(min_length=1, max_length=CORPUS_MAX)]


class ResearchRequest(Payload):
    """Go's request as is; as in Go, ``max_steps`` 0 and ``sources`` null mean the defaults
    (4 steps, every corpus)."""

    message_type = "research_request"
    question: str = Field(min_length=1, max_length=QUESTION_MAX, description="not blank")
    sources: list[_Corpus] = Field(default_factory=list, max_length=16)
    max_steps: int = Field(default=4, ge=1, le=16)

    _go = go_unset("max_steps", "sources")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, question: str) -> str:
        if not question.strip():
            raise ValueError("a question, not only spaces")
        return question


class ResearchBrief(Payload):
    message_type = "research_brief"
    question: str
    summary: str
    citations: list[Citation]
    steps: int
    mode: Literal["react", "offline"]
    disclaimer: str


class CorpusQuery(Payload):
    """Search one corpus (``rbi``, ``sahamati`` or ``fiu_ind``) for a short factual snippet."""

    message_type = "corpus_query"
    corpus: _Corpus
    query: str = Field(min_length=1, max_length=QUESTION_MAX)


class CorpusSnippet(Payload):
    message_type = "corpus_snippet"
    corpus: str
    snippet: str
    citation: Citation


_STUB = {
    "rbi": (
        "RBI circulars are indexed under master directions per topic.",
        Citation(
            title="RBI master directions",
            url="https://rbi.org.in/Scripts/BS_ViewMasDirections.aspx",
        ),
    ),
    "sahamati": (
        "Sahamati Account Aggregator framework defines FIP/FIU/AA roles.",
        Citation(title="Sahamati AA specs", url="https://sahamati.org.in/"),
    ),
    "fiu_ind": (
        "FIU-IND requires STR within 7 days, CTR for cash ≥₹10L, CCR within 7 days.",
        Citation(title="FIU-IND reporting", url="https://fiuindia.gov.in/"),
    ),
}


class CorpusSearch(BaseAgent):
    """The research corpus as a tool agent: a snippet and its citation per corpus query (Go's
    offline stub: ``rbi``, ``sahamati``, ``fiu_ind``; any other corpus has no snippet)."""

    capabilities = ("corpus_search",)
    produces = (CorpusSnippet,)

    @handler
    async def on_query(self, payload: CorpusQuery, ctx: Context) -> Message:
        snippet, citation = _STUB.get(
            payload.corpus,
            (
                f"No snippet found for {payload.query!r} in {payload.corpus!r}.",
                Citation(title="no_source"),
            ),
        )
        return ctx.reply(CorpusSnippet(corpus=payload.corpus, snippet=snippet, citation=citation))


_SEARCH = Tool.from_model(
    CorpusQuery,
    name="corpus_search",
    description="Search one corpus (rbi, sahamati or fiu_ind) for a short factual snippet.",
)


class DeepResearch(BaseAgent):
    """A cited research brief: a ReAct loop (at most ``max_steps`` model calls) whose
    ``corpus_search`` tool calls are requests to the ``tools`` agent; offline, or when the
    model fails, one request per corpus and the snippets joined. A search that governance
    denies is told to the model as the tool's answer (offline: that corpus is skipped).

    With ``reference``, a tool server's tools are offered too (``ctx.tool(reference)``); a
    result with ``results`` (``title``, ``url``, ``text``: ``search_circulars``) is cited. The
    offline brief adds its ``search_circulars`` for the question. A denial, bad arguments or
    the tool's own error are told to the model (offline: left out); a server that cannot be
    reached fails the handler, retried as its options say."""

    capabilities = ("deep_research",)
    risk = Risk.MEDIUM
    produces = (ResearchBrief, CorpusQuery)

    def __init__(
        self,
        id: str = "deep_research",
        *,
        tools: str = "corpus_search",
        llm: Provider | None = None,
        model: str | None = None,
        max_tokens: int = 1024,
        memory: str | None = None,
        reference: str | None = None,
    ) -> None:
        super().__init__(id)
        self.tools = tools
        self.reference = reference
        self.llm = llm
        self.model = model
        self.max_tokens = max_tokens
        self.memory = memory

    @handler
    async def on_request(self, payload: ResearchRequest, ctx: Context) -> Message:
        brief = None
        if self.llm is not None:
            try:
                brief = await self._react(payload, ctx)
            except LLMError as exc:  # Go degrades to the offline brief; the log says why
                ctx.logger.warning("deep_research: model failed, offline brief: %s", exc)
        if brief is None:
            brief = await self._offline(payload, ctx)
        await self._remember(ctx, brief)
        return ctx.emit(brief)

    async def _recall(self, ctx: Context, question: str) -> str:
        """What memory holds that bears on ``question`` (empty without memory)."""
        if self.memory is None:
            return ""
        mem = ctx.memory(self.memory)
        user = user_of(ctx)
        return recalled_context(
            await mem.episodes.snapshot(session_of(ctx)),
            await mem.semantic.search(user, question, k=3),
            [],
        )

    async def _remember(self, ctx: Context, brief: ResearchBrief) -> None:
        if self.memory is None:
            return
        mem = ctx.memory(self.memory)
        user, session = user_of(ctx), session_of(ctx)
        await mem.episodes.append(session, brief.question, role="user")
        await mem.episodes.append(session, brief.summary, role=self.id)
        await mem.semantic.add(
            user,
            topic_key(brief.question),
            f"{brief.question} {brief.summary}",
            {"mode": brief.mode, "citations": [c.title for c in brief.citations]},
        )
        await mem.facts.record(user, "last_research_question", brief.question, source=self.id)

    async def _search(self, ctx: Context, query: CorpusQuery) -> CorpusSnippet:
        answer = await ctx.request(self.tools, query)
        return CorpusSnippet.model_validate(answer.payload.model_dump())

    async def _offline(self, payload: ResearchRequest, ctx: Context) -> ResearchBrief:
        parts, citations = [], []
        for corpus in payload.sources or CORPORA:
            query = CorpusQuery(corpus=corpus, query=payload.question.strip())
            try:
                found = await self._search(ctx, query)
            except DeniedError as exc:  # as Go skipped a corpus its resolver failed
                ctx.logger.info("deep_research: search of %s denied: %s", corpus, exc.reason)
                continue
            parts.append(f"[{corpus}] {found.snippet}")
            citations.append(found.citation)
        if self.reference is not None:
            arguments = {"query": payload.question.strip(), "limit": 2}
            text, cited = await self._server_tool(ctx, "search_circulars", arguments)
            if not text.startswith("error: "):
                for citation in cited:
                    parts.append(f"[{self.reference}] {citation.title}: {citation.quote}")
                    citations.append(citation)
        return ResearchBrief(
            question=payload.question.strip(),
            summary="\n".join(parts),
            citations=citations,
            steps=len(parts),
            mode="offline",
            disclaimer=DISCLAIMERS["offline"],
        )

    async def _react(self, payload: ResearchRequest, ctx: Context) -> ResearchBrief | None:
        """None when the loop ends without an answer (every step spent on tools)."""
        assert self.llm is not None
        llm = ctx.llm(self.llm)
        question = payload.question.strip()
        recalled = await self._recall(ctx, question)
        if recalled:  # what memory holds, not the whole conversation replayed
            question = f"What we already know:\n{recalled}\n\nQuestion: {question}"
        messages = [ChatMessage.user(question)]
        citations: list[Citation] = []
        offered = (_SEARCH, *await self._server_tools(ctx))
        for step in range(1, payload.max_steps + 1):
            # Streamed, so that a client of ``genie serve`` reads the answer as it is written.
            response = await complete_by_streaming(
                llm,
                Request(
                    system=SYSTEM,
                    messages=tuple(messages),
                    model=self.model,
                    tools=offered,
                    max_tokens=self.max_tokens,
                ),
            )
            if not response.tool_calls:
                return ResearchBrief(
                    question=payload.question.strip(),
                    summary=response.text.strip(),
                    citations=citations,
                    steps=step,
                    mode="react",
                    disclaimer=DISCLAIMERS["react"],
                )
            messages.append(ChatMessage.assistant(response.text, response.tool_calls))
            names = {t.name for t in offered}
            for call in response.tool_calls:
                text, cited = await self._tool(ctx, call, names)
                messages.append(ChatMessage.tool_result(call, text))
                citations += [c for c in cited if c not in citations]
        return None

    async def _server_tools(self, ctx: Context) -> tuple[Tool, ...]:
        """The reference server's tools, as the model is offered them (none without one)."""
        if self.reference is None:
            return ()
        specs = await ctx.tool(self.reference).list()
        return tuple(
            Tool(name=t.name, description=t.description, parameters=dict(t.input_schema))
            for t in specs
            if t.name != _SEARCH.name
        )

    async def _tool(
        self, ctx: Context, call: ToolCall, names: set[str]
    ) -> tuple[str, list[Citation]]:
        """The tool's answer as the model reads it, and its citations; a bad call is told to
        the model, which may correct it, rather than failing the request."""
        if call.name not in names:
            known = f"tools: {', '.join(sorted(names))}"
            if len(names) == 1:
                known = f"the tool is {_SEARCH.name!r}"
            return f"error: unknown tool {call.name!r} ({known})", []
        if call.name != _SEARCH.name:
            return await self._server_tool(ctx, call.name, call.arguments)
        try:
            query = CorpusQuery.model_validate(call.arguments)
        except ValueError as exc:
            return f"error: bad arguments for {_SEARCH.name}: {exc}", []
        try:
            found = await self._search(ctx, query)
        except DeniedError as exc:  # the model is told, and may research without it
            return f"error: denied by policy {exc.policy}: {exc.reason}", []
        text = json.dumps({"snippet": found.snippet, "source": found.citation.model_dump()})
        return text, [found.citation]

    async def _server_tool(
        self, ctx: Context, name: str, arguments: Mapping[str, Any]
    ) -> tuple[str, list[Citation]]:
        """A call to the reference server through ``ctx.tool``, governed both ways: its text
        (or what went wrong, for the model) and the documents it found, as citations."""
        assert self.reference is not None
        try:
            out = await ctx.tool(self.reference).call(name, arguments)
        except ToolDeniedError as exc:
            return f"error: denied by policy {exc.policy}: {exc.reason}", []
        except ToolArgumentsError as exc:
            return (
                f"error: bad arguments for {name}: {exc.problem} ({exc.field or 'arguments'})",
                [],
            )
        if out.is_error:
            return f"error: {out.text}", []
        return out.text, _cited(out.structured)


def _cited(structured: Mapping[str, Any] | None) -> list[Citation]:
    """The documents of a tool's structured answer (``results``: ``title``, ``url``,
    ``text``) as citations; nothing for any other answer."""
    results = (structured or {}).get("results")
    if not isinstance(results, list):
        return []
    return [
        Citation(title=str(r["title"]), url=str(r.get("url", "")), quote=str(r.get("text", "")))
        for r in results
        if isinstance(r, Mapping) and "title" in r
    ]
