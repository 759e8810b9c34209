"""The catalogue's agents that use memory and tools: the shipped advice and research pipelines
call the catalogue's reference MCP server (genie_agents/tools/reference.py, started on stdio by
the pipeline's ``tools:`` section), offline on the scripted provider, from the CLI and from
Python; each call is governed both ways and audited, and the pipeline's rule keeps every other
agent from the server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from genie import MemoryAuditLog
from genie._cli.main import main
from genie.llm import Response, ScriptedProvider, ToolCall
from genie.pipeline import load_pipeline

from ..conftest import optional

optional("mcp", "mcp")

from genie_agents.advisory.moa import (  # noqa: E402
    MoaRecommendation,
    MoaRecommender,
    MoaRecommendRequest,
)
from genie_agents.research.deep import (  # noqa: E402
    CorpusSearch,
    DeepResearch,
    ResearchBrief,
    ResearchRequest,
)
from genie_agents.tools.reference import DATA, search  # noqa: E402

from genie import Runtime  # noqa: E402
from genie.mcp import McpServer  # noqa: E402

from ..memory.test_pipelines import Capture, run  # noqa: E402  # a shipped pipeline, --json

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "config" / "pipelines"
REFERENCE = json.loads(DATA.read_text())
SERVER = McpServer(command=(sys.executable, "-m", "genie_agents.tools.reference"), timeout=20)


def audited(path: Path) -> list[tuple[str, str, str, str]]:
    """Each tool record of an audit log: actor, action, target, the tool."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [
        (r["actor"], r["action"], r["target"], r["details"]["reason"])
        for r in records
        if r["target"].startswith("tool:")
    ]


def test_the_data_is_the_shipped_snapshot_and_search_ranks_by_shared_words() -> None:
    assert DATA == ROOT / "agents" / "genie_agents" / "config" / "data" / "reference.json"
    assert REFERENCE["rates"]["policy"]["repo_rate"] == 5.5
    found = search(REFERENCE["circulars"], "FIU-IND STR CTR CCR reporting", 2)
    assert [doc["id"] for doc in found] == ["fiu-ind-str", "rbi-kyc-md"]
    assert search(REFERENCE["circulars"], "zebra", 3) == []


def test_advice_from_the_cli_shows_the_panel_the_rates(tmp_path: Path, capsys: Capture) -> None:
    audit = tmp_path / "audit.jsonl"
    result = run(capsys, "advice", "--audit", str(audit), "--audit-unkeyed")
    out = result["output"]["payload"]
    assert out["reference"]["policy"]["repo_rate"] == 5.5
    assert out["reference"]["as_of"] == REFERENCE["rates"]["as_of"]
    assert out["reference"]["fixed_deposits"] == REFERENCE["rates"]["fixed_deposits"]
    assert out["votes"] == {out["winner_text"]: 2}  # memory and the panel as before
    assert audited(audit) == [
        ("moa_recommender", "tool_call", "tool:reference", "get_rates"),
        ("moa_recommender", "tool_result", "tool:reference", "get_rates"),
    ]
    assert result["denials"] == []


def test_research_from_the_cli_cites_the_circulars_it_searched(
    tmp_path: Path, capsys: Capture
) -> None:
    audit = tmp_path / "audit.jsonl"
    brief = run(capsys, "research", "--audit", str(audit), "--audit-unkeyed")["output"]["payload"]
    assert (brief["mode"], brief["steps"]) == ("react", 2)
    assert [c["title"] for c in brief["citations"]] == [
        "FIU-IND reporting",  # the corpus agent's, as before
        "RBI master directions",
        "PMLA reporting obligations: STR, CTR, CCR",  # the MCP server's
        "Master Direction - Know Your Customer (KYC) Direction, 2016",
    ]
    assert "15th of the following month" in brief["citations"][2]["quote"]
    assert audited(audit) == [
        ("deep_research", "tool_list", "tool:reference", ""),  # the tools it offers the model
        ("deep_research", "tool_listing", "tool:reference", ""),
        ("deep_research", "tool_call", "tool:reference", "search_circulars"),
        ("deep_research", "tool_result", "tool:reference", "search_circulars"),
    ]


async def test_advice_from_python_and_the_rule_keeps_another_agent_out() -> None:
    pipeline = load_pipeline(PIPELINES / "advice.yaml")
    audit = MemoryAuditLog()
    intruder = MoaRecommender(
        "intruder", llm=(ScriptedProvider(["An FD."]),), reference="reference"
    )
    async with pipeline.runtime(audit=audit) as rt:
        rt.add(intruder)
        request = pipeline.entry_message(rt, pipeline.entry_payload(pipeline.read_input()))
        ours = await rt.ask(request, until="moa_recommendation", timeout=30)
        asked = rt.message(MoaRecommendRequest(question="Which FD?"), recipient="intruder")
        theirs = await rt.ask(asked, until="moa_recommendation", timeout=30)
    assert ours.message is not None
    assert theirs.message is not None
    mine, other = ours.message.payload, theirs.message.payload
    assert isinstance(mine, MoaRecommendation)
    assert isinstance(other, MoaRecommendation)
    assert mine.reference is not None
    assert mine.reference["small_savings"]["ppf"] == 7.1
    assert other.reference is None  # denied: the panel answered without it
    [denied] = [r for r in audit.records if r.action == "denied"]
    assert (denied.actor, denied.target) == (
        "only-the-adviser-reads-reference-rates",
        "tool:reference",
    )
    assert denied.details["sender"] == "intruder"


async def test_the_panel_is_shown_the_rates() -> None:
    panellist = ScriptedProvider(["Keep an emergency fund."])
    agent = MoaRecommender(llm=(panellist,), reference="reference")
    async with Runtime([agent], tools={"reference": SERVER}) as rt:
        msg = rt.message(MoaRecommendRequest(question="FD or PPF?"), recipient="moa_recommender")
        result = await rt.ask(msg, until="moa_recommendation", timeout=30)
    assert result.complete
    [request] = panellist.requests
    assert request.system is not None
    assert '"repo_rate": 5.5' in request.system
    assert "Reference rates (per cent a year)" in request.system


async def test_offline_research_searches_the_circulars_too() -> None:
    agents = [DeepResearch(reference="reference"), CorpusSearch("corpus_search")]
    async with Runtime(agents, tools={"reference": SERVER}) as rt:
        msg = rt.message(
            ResearchRequest(question="account aggregator consent", sources=["sahamati"]),
            recipient="deep_research",
        )
        result = await rt.ask(msg, until="research_brief", timeout=30)
    assert result.message is not None
    brief = result.message.payload
    assert isinstance(brief, ResearchBrief)
    assert brief.mode == "offline"
    assert [c.title for c in brief.citations] == [
        "Sahamati AA specs",
        "Account Aggregator framework: FIP, FIU and AA roles",  # the only one on consent
    ]
    assert brief.summary.splitlines()[1].startswith("[reference] Account Aggregator framework")


async def test_the_model_is_told_a_tool_error_and_an_unknown_tool() -> None:
    model = ScriptedProvider(
        [
            Response(
                tool_calls=(
                    ToolCall(id="c1", name="get_rates", arguments={"section": "gold"}),
                    ToolCall(id="c2", name="web", arguments={}),
                ),
                finish_reason="tool_calls",
            ),
            "Done.",
        ]
    )
    agents = [DeepResearch(llm=model, reference="reference"), CorpusSearch("corpus_search")]
    async with Runtime(agents, tools={"reference": SERVER}) as rt:
        msg = rt.message(ResearchRequest(question="Rates?"), recipient="deep_research")
        result = await rt.ask(msg, until="research_brief", timeout=30)
    assert result.message is not None
    assert isinstance(result.message.payload, ResearchBrief)
    assert result.message.payload.summary == "Done."
    first, second = model.requests
    assert [t.name for t in first.tools] == ["corpus_search", "get_rates", "search_circulars"]
    bad, unknown = (m.text for m in second.messages[-2:])
    assert bad.startswith("error: bad arguments for get_rates:")
    assert "'gold' is not one of" in bad
    assert unknown == (
        "error: unknown tool 'web' (tools: corpus_search, get_rates, search_circulars)"
    )


def test_without_the_sdk_the_run_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    monkeypatch.setitem(sys.modules, "genie.mcp", None)  # as if the mcp extra were missing
    assert main(["run", str(PIPELINES / "advice.yaml")]) == 2
    err = capsys.readouterr().err
    assert "advice.yaml: 'tools' needs the 'mcp' extra: pip install 'genie-bus[mcp]'" in err
