"""The shipped policies do not cry wolf: every shipped pipeline on its shipped input, and the
finance pipeline on generated statements (ordinary, rich, income only), end with nothing
denied."""

from __future__ import annotations

import random
import re
from pathlib import Path

import anyio
import pytest
from genie_agents.finance.sessions import statements

from genie import Message, Observer, Runtime
from genie.pipeline import RunResult, load_pipeline

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = sorted((ROOT / "config" / "pipelines").glob("*.yaml"))
FINANCE = ROOT / "config" / "pipelines" / "finance.yaml"


def test_every_shipped_pipeline_is_governed_by_the_shipped_policies() -> None:
    assert len(PIPELINES) >= 5
    for path in PIPELINES:
        assert "governance:\n  file: ../policies/ai-policy.yaml" in path.read_text(), path.name


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
async def test_a_shipped_pipeline_on_its_shipped_input_is_not_denied(path: Path) -> None:
    """A pipeline that waits for a person (payments, claims) is approved by one holding the
    role it asks for: the approval, its answer and the rest pass the policies too."""
    pipeline = load_pipeline(path)
    payload = pipeline.entry_payload(pipeline.read_input(None), "the input")
    results: list[RunResult] = []
    done = anyio.Event()

    async def ask(rt: Runtime) -> None:
        results.append(await pipeline.ask(rt, payload))
        done.set()

    async with pipeline.runtime() as rt, anyio.create_task_group() as tg:
        tg.start_soon(ask, rt)
        while not done.is_set():
            await anyio.wait_all_tasks_blocked()
            for approval in rt.approvals.pending():
                roles = (approval.role,) if approval.role else ()
                rt.approvals.approve(approval.id, by=approval.principal or "reviewer", roles=roles)
            with anyio.move_on_after(0.05):
                await done.wait()
    [result] = results
    assert result.stats.denied == 0, [(m.policy, m.reason) for m in result.missing]
    assert result.status == "ok"


async def run_finance(csv: str) -> tuple[str, int, list[str]]:
    pipeline = load_pipeline(FINANCE)
    result = await pipeline.run(csv)
    return result.status, result.stats.denied, [f"{m.policy}: {m.reason}" for m in result.missing]


async def test_a_statement_with_only_income_is_not_denied() -> None:
    csv = "date,description,category,amount,type\n2026-01-01,Salary,Income,50000.00,credit\n"
    assert await run_finance(csv) == ("ok", 0, [])


class TenDigits(Observer):
    """Remembers the delivered messages whose payload JSON holds a ten-digit number."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def delivered(self, msg: Message, agent_id: str) -> None:
        if re.search(r"[0-9]{10}", msg.payload.model_dump_json()):
            self.seen.append(msg.type)


async def test_two_salaries_of_ten_lakh_are_not_a_phone_number() -> None:
    csv = (
        "date,description,category,amount,type\n"
        "2026-01-01,Salary,Income,1000000.00,credit\n"
        "2026-02-01,Salary,Income,1000000.00,credit\n"
    )
    assert await run_finance(csv) == ("ok", 0, [])
    # The guard's guard: the run does carry ten-digit amounts in paise (the six-month
    # forecast of 20 lakh a month is 1,20,00,00,000), which the Go phone pattern denied.
    pipeline = load_pipeline(FINANCE)
    spy = TenDigits()
    async with pipeline.runtime() as rt:
        rt.add_observer(spy)
        result = await pipeline.ask(rt, pipeline.entry_payload(csv))
    assert result.ok
    assert "forecast_result" in spy.seen


# A caller's W3C trace whose random hex holds digit runs a PII pattern reads as a phone
# number, a card number or an Aadhaar number (about one trace in thirty does).
FLAGGED_TRACE = "00-ae658f33fe3b890b93f448b3a5aa3c81-72158370d269a9a5-01"
FLAGGED_TRACE_ID = "a4b9a9c4b753a1eef08360852789d059"


@pytest.mark.parametrize(
    ("metadata", "denied"),
    [
        ({"traceparent": FLAGGED_TRACE}, 0),
        ({"trace_id": FLAGGED_TRACE_ID}, 0),
        # Under any other key, or as anything but a trace, the same text is read: its hex ids
        # are no number there either (a UUID's, a digest's: test_evasion), what is beside
        # them is.
        ({"note": FLAGGED_TRACE}, 0),
        ({"note": FLAGGED_TRACE_ID}, 0),
        ({"note": f"{FLAGGED_TRACE_ID} call +91 98765 43210"}, 1),
        ({"traceparent": f"{FLAGGED_TRACE} call +91 98765 43210"}, 1),
        ({"trace_id": "call me on +91 98765 43210"}, 1),
    ],
)
async def test_a_trace_in_the_metadata_is_no_personal_data(
    metadata: dict[str, str], denied: int
) -> None:
    """``genie serve`` writes a caller's ``traceparent`` (and the pipeline a ``trace_id``) into
    the request's metadata, which the content screen reads: a trace's ids are machine-made
    hex, left out of the scan, and only they are."""
    pipeline = load_pipeline(FINANCE)
    csv = "date,description,category,amount,type\n2026-01-01,Salary,Income,50000.00,credit\n"
    async with pipeline.runtime() as rt:
        msg = pipeline.entry_message(rt, pipeline.entry_payload(csv), metadata=metadata)
        result = await pipeline.ask(rt, msg)
    assert result.stats.denied == denied
    if denied:
        assert [m.policy for m in result.missing] == ["pii_block"]


async def test_generated_statements_are_never_denied() -> None:
    pipeline = load_pipeline(FINANCE)
    outcomes: dict[str, int] = {}
    async with pipeline.runtime() as rt:
        for session in range(150):
            salary = (50_000.0, 1_000_000.0, 25_000_000.0)[session % 3]  # up to 2.5 crore
            csv = statements(random.Random(session), session, salary=salary)
            result = await pipeline.ask(rt, pipeline.entry_payload(csv))
            outcomes[result.status] = outcomes.get(result.status, 0) + 1
        denied = rt.statistics().denied
    assert (outcomes, denied) == ({"ok": 150}, 0)
