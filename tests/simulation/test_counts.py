"""A simulation report adds up: sessions to the total, the agent rows to the runtime's totals,
the dead letters to the counts of their kinds; and a session whose declared gather bundled
without a part is ``partial``, not ``completed``. Real runs of the shipped finance-gather
pipeline, on virtual time."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from genie._cli.main import main
from genie.simulation import Report, simulate

ROOT = Path(__file__).resolve().parents[2]
GATHER = ROOT / "config" / "pipelines" / "finance-gather.yaml"
FAULTS = [
    "latency:*=lognormal,mean=200ms",
    "error:forecaster=0.2",
    "deny:recommender=0.1",
    "capacity:anomaly_detector=1,overflow=shed",
]


def adds_up(r: Report) -> None:
    """What docs/simulation.md says of the report, "The report"."""
    o = r.sessions
    assert o.completed + o.partial + o.fallback + o.denied + o.failed + o.timed_out == o.total
    m = r.messages
    rows = r.agents.values()
    assert sum(a.deliveries for a in rows) == m["to_agents"]
    assert sum(a.handled for a in rows) == m["handled_by_agents"]
    assert sum(a.denied for a in rows) + m["denied_to_caller"] == m["denied"]
    parts = m["to_agents"] + m["collected"] + m["timers"] + m["denied"] + m["shed"]
    assert m["delivered"] == parts
    assert m["handled"] == m["handled_by_agents"] + m["collected"] + m["timers_handled"]
    ended = m["handled"] + m["denied"] + m["dead_lettered"] + m["shed"] + m["in_flight"]
    assert m["delivered"] == ended
    assert m["in_flight"] == 0
    kinds: Counter[str] = Counter()
    for letter in r.dead_letters:
        kinds[letter["kind"]] += letter["count"]
    assert kinds["failed"] + kinds["cancelled"] == m["dead_lettered"]
    assert (kinds["shed"], kinds["unrouted"]) == (m["shed"], m["unrouted"])


def test_the_agent_rows_add_up_to_the_totals() -> None:
    """Failures, denials, sheds, session timeouts (cancelled work and gather timers): every
    way a delivery can end, in one run."""
    r = simulate(GATHER, sessions=200, concurrency=6, seed=11, faults=FAULTS, timeout=2.2)
    adds_up(r)
    o, m = r.sessions, r.messages
    assert min(o.completed, o.partial, o.timed_out) > 0
    assert min(m["denied"], m["shed"], m["dead_lettered"], m["timers"]) > 0
    injected = {(f["kind"], f["agent"]): f for f in r.faults}
    assert sum(a.failed for a in r.agents.values()) == injected["error", "forecaster"]["injected"]
    assert r.agents["recommender"].denied == injected["deny", "recommender"]["denied"]
    cancelled = sum(d["count"] for d in r.dead_letters if d["kind"] == "cancelled")
    assert cancelled > 0  # what the session timeouts cut short


def test_a_session_missing_a_gathered_part_is_partial() -> None:
    """A failed forecast leaves the gather's bundle without it: the report still comes, built
    without the forecast, so the session is partial, and only the others are completed."""
    faults = ["latency:*=50ms", "error:forecaster=0.3"]
    r = simulate(GATHER, sessions=200, concurrency=4, seed=7, faults=faults)
    adds_up(r)
    failed = sum(d["count"] for d in r.dead_letters if d["agent"] == "forecaster")
    assert failed == r.agents["forecaster"].failed > 0
    assert (r.sessions.partial, r.sessions.completed) == (failed, 200 - failed)
    assert r.as_json()["sessions"]["partial"] == failed
    lines = r.text().splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("sessions"))
    names = lines[heading].replace("timed out", "timed_out").split()[1:]
    columns = dict(zip(names, lines[heading + 1].split(), strict=True))
    assert columns["partial"] == str(failed)
    assert "DO NOT ADD UP" not in r.text()
    assert "DOES NOT BALANCE" not in r.text()


def test_the_json_of_the_command_adds_up(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--sessions", "60", "--concurrency", "4", "--seed", "3", "--json", "-q"]
    assert main(["simulate", str(GATHER), *args, *(f"--fault={f}" for f in FAULTS)]) == 0
    data = json.loads(capsys.readouterr().out)
    s, m = data["sessions"], data["messages"]
    assert sum(s[k] for k in s if k != "total") == s["total"]
    assert s["partial"] > 0
    rows = data["agents"].values()
    assert sum(a["deliveries"] for a in rows) == m["to_agents"]
    assert sum(a["handled"] for a in rows) == m["handled_by_agents"]


def test_the_sample_in_the_docs_adds_up() -> None:
    """docs/simulation.md's ten-thousand-session sample: its agent rows sum to its totals, its
    sessions to the total, and its deliveries to what the sessions and agents account for."""
    text = (ROOT / "docs" / "simulation.md").read_text()
    sample = text.split("$ genie simulate config/pipelines/finance.yaml --sessions 10000", 1)[1]
    lines = sample.split("```", 1)[0].splitlines()

    def figures(line: str) -> list[int]:
        return [int(w.replace(",", "")) for w in line.split() if w.replace(",", "").isdigit()]

    heading = next(i for i, line in enumerate(lines) if line.startswith("sessions "))
    total, *ended = figures(lines[heading + 1])
    assert total == 10_000 == sum(ended)
    first = next(i for i, line in enumerate(lines) if line.startswith("agent ")) + 1
    rows = [figures(line) for line in lines[first : lines.index("", first)]]
    delivered = next(figures(line) for line in lines if line.startswith("  delivered "))
    handled = next(figures(line) for line in lines if line.startswith("  handled "))
    accounting = next(figures(line) for line in lines if line.startswith("  accounting "))
    assert sum(row[0] for row in rows) == delivered[1]  # to agents
    assert sum(row[1] for row in rows) == handled[1]  # by agents
    assert delivered[0] == sum(delivered[1:6])
    assert handled[0] == sum(handled[1:])
    assert accounting[0] == sum(accounting[1:])
    assert delivered[2] == total  # each session's answer, collected
