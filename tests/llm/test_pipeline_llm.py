"""The ``llm:`` section of a pipeline file, and the shipped research pipeline over it: stacks
named by agents, checked by ``genie validate`` with file and line, keys read from the
environment at start, and the same file pointed at an OpenAI-compatible server by one --set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from genie._base.yamlconf import ConfigFileError
from genie._cli.main import main
from genie._errors import ConfigurationError
from genie.llm._providers.http import HTTPAdapter
from genie.pipeline import load_pipeline
from genie.simulation import simulate

from ..conftest import requires
from .server import ProviderServer, Reply

# The research pipeline these tests run calls the catalogue's MCP server (its tools: section).
pytestmark = requires("mcp", extra="mcp")

ROOT = Path(__file__).resolve().parents[2]
RESEARCH = ROOT / "config" / "pipelines" / "research.yaml"

pytestmark = pytest.mark.anyio

HEAD = (
    "llm:\n"
    "  providers:\n"
    "    local: {kind: scripted, answers: [hello]}\n"
    "  stacks:\n"
    "    research: {providers: [local]}\n"
)
TAIL = (
    "  - id: corpus_search\n"
    "    use: corpus_search\n"
    "entry: {type: research_request, to: deep_research}\n"
    "output: research_brief\n"
)


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as caught:
        load_pipeline(path)
    return [p.replace(f"{path}:", "") for p in caught.value.problems]


def test_an_unknown_stack_is_named_with_its_line_and_the_closest_stack(tmp_path: Path) -> None:
    text = HEAD + "agents:\n  - id: deep_research\n    use: deep_research\n    llm: reserch\n"
    assert problems_of(tmp_path, text + TAIL) == [
        "9: agents.0.llm: no llm stack named 'reserch' (did you mean 'research'?)"
    ]


def test_a_stack_without_an_llm_section_is_refused(tmp_path: Path) -> None:
    text = "agents:\n  - id: deep_research\n    use: deep_research\n    llm: research\n"
    assert problems_of(tmp_path, text + TAIL) == [
        "4: agents.0.llm: llm stack 'research': the file has no llm: section to declare it"
    ]


def test_a_model_given_as_a_parameter_is_refused(tmp_path: Path) -> None:
    text = HEAD + "agents:\n  - id: deep_research\n    use: deep_research\n"
    text += "    params: {llm: research}\n"
    [problem] = problems_of(tmp_path, text + TAIL)
    assert problem.startswith("9: agents.0.params.llm: an agent's model is named by its own")


def test_an_agent_that_calls_no_model_takes_no_stack(tmp_path: Path) -> None:
    text = HEAD + "agents:\n  - id: deep_research\n    use: deep_research\n"
    text += TAIL.replace("use: corpus_search\n", "use: corpus_search\n    llm: research\n", 1)
    assert problems_of(tmp_path, text) == [
        "11: agents.1.llm: corpus_search calls no model (it takes no llm)"
    ]


def test_a_mistake_in_the_llm_section_names_its_line_and_key(tmp_path: Path) -> None:
    text = HEAD.replace("kind: scripted", "kind: scriptd") + "agents:\n"
    text += "  - id: deep_research\n    use: deep_research\n    llm: research\n"
    [problem] = problems_of(tmp_path, text + TAIL)
    assert problem.startswith("3: llm.providers.local.kind: Input should be")


def test_a_key_is_never_read_from_the_file(tmp_path: Path) -> None:
    text = HEAD.replace("kind: scripted, answers: [hello]", "kind: openai, api_key: sk-x")
    text += "agents:\n  - id: deep_research\n    use: deep_research\n    llm: research\n"
    [problem] = problems_of(tmp_path, text + TAIL)
    assert problem.startswith("3: llm.providers.local.api_key: unknown key")


def test_importing_genie_pipeline_imports_no_http_client() -> None:
    code = "import sys, genie.pipeline; print('httpx' in sys.modules, 'genie.llm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


async def test_the_research_pipeline_runs_offline_through_its_tool_agent() -> None:
    result = await load_pipeline(RESEARCH).run()
    assert result.ok, result
    assert result.output is not None
    brief = result.output.payload.model_dump()
    assert brief["mode"] == "react"
    assert brief["steps"] == 2  # one step of three searches, then the answer
    assert [c["title"] for c in brief["citations"]] == [
        "FIU-IND reporting",
        "RBI master directions",
        "PMLA reporting obligations: STR, CTR, CCR",  # the circulars, an MCP tool's
        "Master Direction - Know Your Customer (KYC) Direction, 2016",
    ]
    assert brief["summary"].startswith("A regulated entity files a suspicious transaction report")
    # each search was a delivery of the runtime to the corpus agent
    assert result.runtime.mailboxes["corpus_search"].handled == 2


def test_a_missing_key_stops_the_run_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pipeline = load_pipeline(RESEARCH, variables={"LLM": "openai"})
    with pytest.raises(ConfigurationError, match="environment variable OPENAI_API_KEY is not set"):
        pipeline.llm_stacks()
    assert main(["run", str(RESEARCH), "--set", "LLM=openai"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "llm provider 'openai': environment variable OPENAI_API_KEY is not set" in err


def test_an_unused_provider_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    stacks = load_pipeline(RESEARCH).llm_stacks()
    assert stacks is not None
    assert list(stacks.stacks) == ["scripted"]


def test_one_set_points_it_at_an_openai_compatible_server(
    server: ProviderServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-research")
    monkeypatch.setenv("OPENAI_MODEL", "gpt-test")
    search = {"name": "corpus_search", "arguments": '{"corpus": "sahamati", "query": "AA"}'}
    server.script(
        "/v1/chat/completions",
        _openai(
            {"content": None, "tool_calls": [{"id": "c1", "type": "function", "function": search}]}
        ),
        _openai({"content": "AA roles are FIP, FIU and AA."}),
    )
    assert main(["run", str(RESEARCH), "--set", "LLM=openai", "--json"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert '"mode": "react"' in out, captured.err
    assert '"summary": "AA roles are FIP, FIU and AA."' in out
    assert '"title": "Sahamati AA specs"' in out
    first, second = server.received
    assert first.path == second.path == "/v1/chat/completions"
    assert first.headers["authorization"] == "Bearer sk-test-research"
    assert first.body["model"] == "gpt-test"
    assert first.body["tools"][0]["function"]["name"] == "corpus_search"
    # the corpus agent's answer went back to the model as the tool's result
    tool_turn = second.body["messages"][-1]
    assert tool_turn["role"] == "tool"
    assert tool_turn["tool_call_id"] == "c1"
    assert "Sahamati Account Aggregator framework" in tool_turn["content"]
    assert "sk-test-research" not in out


def _openai(message: dict[str, object]) -> Reply:
    """A chat completion as the OpenAI API streams it (the research agent streams its calls):
    the message as one delta, its finish, its usage, then ``[DONE]``."""
    delta: dict[str, object] = {"role": "assistant", **message}
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
    chunks: list[dict[str, object]] = [
        {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
        {
            "choices": [
                {"index": 0, "delta": {}, "finish_reason": "tool_calls" if calls else "stop"}
            ]
        },
        {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}},
    ]
    lines = [
        f"data: {json.dumps({'id': 'r', 'model': 'gpt-test', **chunk})}\n\n".encode()
        for chunk in chunks
    ]
    return Reply(
        chunks=(*lines, b"data: [DONE]\n\n"), headers={"content-type": "text/event-stream"}
    )


def test_genie_validate_names_the_unknown_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "research.yaml"
    path.write_text(RESEARCH.read_text().replace("${LLM:-scripted}", "scriptd"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err
    assert "agents.0.llm: no llm stack named 'scriptd' (did you mean 'scripted'?)" in err


def _adapter_of(provider: object) -> HTTPAdapter:
    while not isinstance(provider, HTTPAdapter):
        provider = provider.inner  # type: ignore[attr-defined]
    return provider


def _serve_research(server: ProviderServer, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-research")
    answer = _openai({"content": "Brief."})
    server.script("/v1/chat/completions", *[answer] * n)


async def test_the_runtime_closes_the_stacks_the_pipeline_built_for_it(
    server: ProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pipeline.runtime() without llm= builds the HTTP stacks itself, so it closes them when
    the runtime stops: no client left open (and no ResourceWarning, which is an error here)."""
    _serve_research(server, monkeypatch, 1)
    pipeline = load_pipeline(RESEARCH, variables={"LLM": "openai"})
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload("What is an STR?"), timeout=10)
        [agent] = [a for a in rt.agents() if a.id == "deep_research"]
        adapter = _adapter_of(agent.llm)  # type: ignore[attr-defined]
        assert not adapter._client.is_closed
    assert result.ok
    assert len(server.received) == 1
    assert adapter._client.is_closed


def test_a_simulation_of_an_http_backed_pipeline_closes_its_clients(
    server: ProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve_research(server, monkeypatch, 3)
    closed: list[bool] = []
    real_aclose = HTTPAdapter.aclose

    async def watched(self: HTTPAdapter) -> None:
        await real_aclose(self)
        closed.append(self._client.is_closed)

    monkeypatch.setattr(HTTPAdapter, "aclose", watched)
    pipeline = load_pipeline(RESEARCH, variables={"LLM": "openai"})
    report = simulate(pipeline, sessions=3, concurrency=1, clock="real", timeout=30)
    assert report.sessions.completed == 3
    assert len(server.received) == 3
    assert closed == [True]


def test_the_model_budgets_are_pipeline_limits(
    tmp_path: Path, server: ProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve_research(server, monkeypatch, 0)
    text = RESEARCH.read_text().replace("correlation_tokens: 50000", "correlation_tokens: 10")
    text = text.replace("../", str(RESEARCH.parent.parent) + "/")
    path = tmp_path / "research.yaml"
    path.write_text(text)
    pipeline = load_pipeline(path, variables={"LLM": "openai"})
    result = anyio.run(pipeline.run)
    assert server.received == []  # 10 tokens cannot hold a call: nothing was sent
    brief = result.output.payload.model_dump() if result.output is not None else {}
    assert brief.get("mode") == "offline"  # deep_research falls back to its offline brief
    costly = text.replace("  correlation_tokens: 10", "  correlation_cost: 0.5")
    assert problems_of(tmp_path, costly) == [
        "38: limits.correlation_cost: a cost budget needs the prices of the models: declare "
        "them in llm.prices"
    ]


def test_a_simulation_reports_the_model_budget_firing_once_per_session(
    tmp_path: Path, server: ProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve_research(server, monkeypatch, 0)
    text = RESEARCH.read_text().replace("correlation_tokens: 50000", "correlation_tokens: 10")
    path = tmp_path / "research.yaml"
    path.write_text(text.replace("../", str(RESEARCH.parent.parent) + "/"))
    pipeline = load_pipeline(path, variables={"LLM": "openai"})
    report = simulate(pipeline, sessions=4, concurrency=2, clock="real", timeout=30)
    assert server.received == []  # every call was refused before it was sent
    assert report.sessions.completed == 4  # deep_research answers offline when refused
    assert report.limits["correlation_tokens"] == 4  # once per session's correlation
    assert "correlation tokens 4" in report.text()
    # A pipeline that budgets no model calls lists no model budget.
    plain = simulate(load_pipeline(ROOT / "config" / "pipelines" / "finance.yaml"), sessions=2)
    assert "correlation_tokens" not in plain.limits


def test_genie_run_stream_text_prints_the_model_text_as_it_comes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "research", "--stream-text"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "[deep_research call 1 ended: tool_calls]",  # the search step has no text
        "A regulated entity files a suspicious transaction report (STR) with FIU-IND within 7 "
        "days of concluding a transaction is suspicious, a cash transaction report (CTR) for "
        "cash of Rs 10 lakh or more by the 15th of the following month, and a counterfeit "
        "currency report (CCR) within 7 days; the RBI master direction on KYC sets these duties "
        "under the PML Rules.",
        "[deep_research call 2 ended: stop]",
    ]
    assert "A regulated entity files" in captured.out  # the output, as without the flag


def _screened(tmp_path: Path, verdict: str, extra: str = "") -> Path:
    """The research pipeline with a classifier on its entry: a scripted model that answers
    ``verdict`` (the shipped files it names, by their full paths)."""
    config = RESEARCH.parent.parent
    text = RESEARCH.read_text()
    text = text.replace("../policies/", f"{config}/policies/").replace(
        "../data/", f"{config}/data/"
    )
    text = text.replace(
        "  stacks:\n",
        f"    screen:\n      kind: scripted\n      answers: [{verdict}]\n  stacks:\n"
        "    screen: {providers: [screen]}\n",
        1,
    )
    text = text.replace(
        "governance:\n",
        f"governance:\n  classifier: {{stack: screen, fail: closed, budget: 2s{extra}}}\n",
    )
    path = tmp_path / f"research-{verdict}.yaml"
    path.write_text(text)
    return path


def test_a_pipeline_file_puts_a_classifier_on_its_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``governance.classifier`` names a stack of the file: the model judges what enters, from
    the CLI as from Python; its verdict denies, and the shipped policies still run."""
    unsafe = _screened(tmp_path, "unsafe")
    assert main(["run", str(unsafe), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "denied"
    [denial] = result["denials"]
    assert (denial["policy"], denial["reason"]) == ("classifier", "flagged by model:screen")
    safe = _screened(tmp_path, "safe")
    assert main(["run", str(safe), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"


def test_a_classifier_names_a_stack_of_the_file(tmp_path: Path) -> None:
    text = HEAD + "agents:\n  - id: deep_research\n    use: deep_research\n    llm: research\n"
    text += TAIL + "governance:\n  classifier: {stack: screne}\n"
    assert problems_of(tmp_path, text) == [
        "15: governance.classifier.stack: no llm stack named 'screne' (declared stacks: research)"
    ]
