"""The shipped agents that ask a person (claim_adjudicator, payment_orchestrator) refuse an
``approval_deadline`` that is no positive number of seconds where it is given, naming the
agent and the argument, from Python and from a pipeline file (its line and key): not at the
first large claim or payment, whose approval request would then fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from genie_agents.insurance import ClaimAdjudicator
from genie_agents.payments import PaymentOrchestrator

from genie import AgentOptions, BaseAgent, ConfigurationError
from genie._base.yamlconf import ConfigFileError
from genie.pipeline import load_pipeline

AGENTS: list[tuple[type[BaseAgent], str, str, str]] = [
    (ClaimAdjudicator, "claim_adjudicator", "claim_request", "claim_decision"),
    (PaymentOrchestrator, "payment_orchestrator", "payment_request", "payment_instruction"),
]
BAD: list[object] = [-5, 0, 0.0, float("nan"), "2d", True]


@pytest.mark.parametrize(("agent", "name", "entry", "output"), AGENTS)
@pytest.mark.parametrize("deadline", BAD)
def test_a_bad_approval_deadline_is_refused_naming_the_agent_and_argument(
    agent: type[BaseAgent], name: str, entry: str, output: str, deadline: object
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        agent("desk", approval_role="adjuster", approval_deadline=deadline)  # type: ignore[call-arg]
    assert str(refused.value) == (
        f"{name} 'desk': approval_deadline must be a positive number of seconds or None, "
        f"not {deadline!r}"
    )
    # The same words as the runtime's own deadline option: one check for both.
    with pytest.raises(ConfigurationError, match=r"^deadline must be a positive number"):
        AgentOptions(deadline=deadline)  # type: ignore[arg-type]


@pytest.mark.parametrize(("agent", "name", "entry", "output"), AGENTS)
@pytest.mark.parametrize("deadline", [None, 0.5, 172800])
def test_a_positive_approval_deadline_or_none_is_taken(
    agent: type[BaseAgent], name: str, entry: str, output: str, deadline: float | None
) -> None:
    made = agent("desk", approval_role="adjuster", approval_deadline=deadline)  # type: ignore[call-arg]
    assert made.approval_deadline == deadline  # type: ignore[attr-defined]


@pytest.mark.parametrize(("agent", "name", "entry", "output"), AGENTS)
@pytest.mark.parametrize("deadline", ["-5", "0", ".nan"])
def test_a_bad_approval_deadline_in_a_pipeline_file_names_its_line_and_key(
    tmp_path: Path, agent: type[BaseAgent], name: str, entry: str, output: str, deadline: str
) -> None:
    path = tmp_path / "desk.yaml"
    path.write_text(
        f"""name: desk
agents:
  - id: desk
    use: {name}
    params:
      approval_role: adjuster
      approval_deadline: {deadline}
entry: {{type: {entry}, to: desk}}
output: {output}
"""
    )
    with pytest.raises(ConfigFileError) as refused:
        load_pipeline(path)
    shown = {"-5": "-5.0", "0": "0.0", ".nan": "nan"}[deadline]
    assert str(refused.value) == (
        f"{path}:7: agents.0.params.approval_deadline: {name} 'desk': approval_deadline must "
        f"be a positive number of seconds or None, not {shown}"
    )
