"""The shipped research and advice pipelines remember, from the CLI, offline; a memory kept
in the run's store file outlives the run; a bad ``memory:`` section is named by line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from genie_agents.research.deep import CorpusSearch, DeepResearch, ResearchRequest

from genie import ConfigurationError, Runtime
from genie._base.yamlconf import ConfigFileError
from genie._cli.main import main
from genie.llm import ScriptedProvider
from genie.memory import Store
from genie.pipeline import load_pipeline

from ..conftest import requires

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "config" / "pipelines"

Capture = pytest.CaptureFixture[str]


def run(capsys: Capture, name: str, *args: str) -> dict[str, Any]:
    code = main(["run", str(PIPELINES / f"{name}.yaml"), "--json", *args])
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert result["status"] == "ok", result
    return result


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(query).fetchall()


@requires("mcp", extra="mcp")  # the pipeline calls the catalogue's MCP server too
def test_research_remembers_across_runs_in_the_store_file(tmp_path: Path, capsys: Capture) -> None:
    store, audit = tmp_path / "run.db", tmp_path / "audit.jsonl"
    options = ("--set", "MEMORY=sqlite", "--store", str(store))
    first = run(capsys, "research", *options)
    second = run(capsys, "research", *options, "--audit", str(audit), "--audit-unkeyed")
    assert first["output"]["payload"] == second["output"]["payload"]
    turns = rows(store, "SELECT role FROM memory_episodes WHERE memory='research' ORDER BY seq")
    assert [r for (r,) in turns] == ["user", "deep_research"] * 2
    history = rows(store, "SELECT key, source FROM memory_facts ORDER BY seq")
    assert history == [("last_research_question", "deep_research")] * 2
    # The same question asked again replaces its entry rather than adding one.
    assert rows(store, "SELECT COUNT(*) FROM memory_semantic") == [(1,)]
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    actions = {(r["action"], r["target"]) for r in records}
    assert ("memory_write", "memory:research") in actions
    assert ("memory_read", "memory:research") in actions


async def test_the_second_request_shows_the_model_what_the_first_found() -> None:
    model = ScriptedProvider(["The answer."])
    agents = [DeepResearch(llm=model, memory="research"), CorpusSearch("corpus_search")]
    async with Runtime(agents, memory={"research": Store()}) as rt:
        for _ in range(2):
            msg = rt.message(ResearchRequest(question="What is a CTR?"), recipient="deep_research")
            assert (await rt.ask(msg, until="research_brief", timeout=10)).complete
    first, second = (r.messages[0].text for r in model.requests)
    assert first == "What is a CTR?"
    assert "Earlier finding: What is a CTR? The answer." in second
    assert "deep_research: The answer." in second  # the conversation's last turn
    assert second.endswith("Question: What is a CTR?")


@requires("mcp", extra="mcp")  # the pipeline calls the catalogue's MCP server too
def test_advice_remembers_the_last_recommendation(tmp_path: Path, capsys: Capture) -> None:
    store = tmp_path / "run.db"
    options = ("--set", "MEMORY=sqlite", "--store", str(store))
    for _ in range(2):
        out = run(capsys, "advice", *options)["output"]["payload"]
        assert out["votes"] == {out["winner_text"]: 2}
    facts = rows(store, "SELECT user, key, source FROM memory_facts ORDER BY seq")
    assert facts == [("client-7", "last_recommendation", "moa_recommender:cautious")] * 2


def test_a_bad_memory_section_is_named_by_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "agents:\n"
        "  - {id: echo, use: echo}\n"
        "memory:\n"
        "  notes:\n"
        "    backend: postgres\n"
        "    threshold: 1\n"
        "  facts:\n"
        "    path: notes.db\n"
        "  talk:\n"
        "    summariser: nowhere\n"
        "entry: {type: echo_request, to: echo}\n"
        "output: echo_reply\n"
    )
    with pytest.raises(ConfigFileError) as caught:
        load_pipeline(path)
    text = str(caught.value)
    assert f"{path}:5: memory.notes.backend:" in text
    assert f"{path}:6: memory.notes.threshold:" in text
    assert "a path is for the sqlite backend" in text
    assert f"{path}:10: memory.talk.summariser: llm stack 'nowhere'" in text


def memory_with_embedder(tmp_path: Path, embedder: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(
        "agents:\n"
        "  - {id: server, use: 'tests.pipelines.loopers:Server'}\n"
        "memory:\n"
        "  notes:\n"
        f"    embedder: '{embedder}'\n"
        "entry: {type: serve, to: server, input: {format: json}}\n"
        "output: return\n"
    )
    return path


@pytest.mark.parametrize(
    ("embedder", "says"),
    [
        # An embedder is made by calling it with nothing: one that takes an argument failed
        # with a bare TypeError (a traceback from genie run and genie simulate).
        (
            "json:loads",
            "json:loads is called with no arguments to make the embedder: missing a required",
        ),
        ("os:sep", "'os:sep' is not callable (an embedder is made by calling it)"),
    ],
)
def test_an_embedder_that_cannot_be_made_is_named_by_line(
    tmp_path: Path, embedder: str, says: str
) -> None:
    path = memory_with_embedder(tmp_path, embedder)
    with pytest.raises(ConfigFileError) as caught:
        load_pipeline(path)
    assert f"{path}:5: memory.notes.embedder: {says}" in str(caught.value)


def test_an_embedder_that_makes_no_embedder_is_named(tmp_path: Path) -> None:
    # os:getcwd is called as an embedder's maker is, and makes a str: it was kept as the
    # store's embedder, to fail at the first semantic call with an AttributeError.
    path = memory_with_embedder(tmp_path, "os:getcwd")
    pipeline = load_pipeline(path)
    with pytest.raises(ConfigurationError) as caught:
        pipeline.runtime()
    assert str(caught.value) == (
        f"{path}: memory.notes.embedder: os:getcwd made a str, not an embedder (one with a "
        "name and an async embed(texts), genie.memory.Embedder)"
    )


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("no/such/folder/memory.db", "the folder {base}/no/such/folder does not exist"),
        (".", "{base} is a folder, not the memory's file"),
    ],
)
def test_a_memory_file_that_cannot_be_made_is_named_by_line(
    tmp_path: Path, where: str, says: str
) -> None:
    # A file in no folder was taken when the file was loaded, to fail the first memory call
    # of a handler ("unable to open database file"), not the load, naming the line.
    path = tmp_path / "p.yaml"
    path.write_text(
        "agents:\n"
        "  - {id: server, use: 'tests.pipelines.loopers:Server'}\n"
        "memory:\n"
        "  notes:\n"
        "    backend: sqlite\n"
        f"    path: '{where}'\n"
        "entry: {type: serve, to: server, input: {format: json}}\n"
        "output: return\n"
    )
    with pytest.raises(ConfigFileError) as caught:
        load_pipeline(path)
    said = says.format(base=tmp_path)
    assert f"{path}:6: memory.notes.path: {said}" in str(caught.value)
