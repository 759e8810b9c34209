"""The LLM building blocks of the Go agents: the auditor's judge and the MoA panel."""

from __future__ import annotations

import pytest
from genie_agents.advisory.moa import PanelError, ask_panel
from genie_agents.support.judge import Verdict, critique, parse_verdict

from genie.llm import ChatMessage, ProviderUnavailableError, Request, ScriptedProvider


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("SCORE: 9\nREASONING: aligned with sutras", Verdict(9, "aligned with sutras")),
        ("SCORE: 14\nREASONING: generous", Verdict(10, "generous")),
        ("SCORE: -3\nREASONING: harsh", Verdict(0, "harsh")),
        ("I think it is fine.", Verdict(0, "I think it is fine.")),
        ("  SCORE: 7  \n", Verdict(7, "SCORE: 7")),
    ],
)
def test_verdicts_parse_as_go_parses_them(answer: str, verdict: Verdict) -> None:
    assert parse_verdict(answer) == verdict


async def test_the_judge_sends_the_go_prompt() -> None:
    judge = ScriptedProvider(["SCORE: 4\nREASONING: vague"])
    verdict = await critique(judge, "Be honest.", "Buy everything now.")
    assert verdict == Verdict(4, "vague")
    (request,) = judge.requests
    assert request.system == "Be honest."
    assert (request.max_tokens, request.temperature) == (128, 0)
    assert request.messages[0].text.endswith(
        "--- BEGIN OUTPUT ---\nBuy everything now.\n--- END OUTPUT ---"
    )


def busy(name: str) -> ProviderUnavailableError:
    return ProviderUnavailableError(provider=name, status=503, request_id=None, excerpt="busy")


async def test_the_panel_votes_and_failures_do_not_vote() -> None:
    panel = [
        ScriptedProvider(["index fund"], name="a"),
        ScriptedProvider([busy("b")], name="b"),
        ScriptedProvider(["gold "], name="c"),
        ScriptedProvider(["index fund"], name="d"),
    ]
    result = await ask_panel(panel, Request(messages=(ChatMessage.user("Where to invest?"),)))
    assert (result.text, result.votes) == ("index fund", 2)
    assert result.answers == {"a": "index fund", "c": "gold", "d": "index fund"}
    assert list(result.errors) == ["b"]


async def test_a_tie_goes_to_the_first_answer_in_panel_order() -> None:
    panel = [ScriptedProvider(["x"], name="a"), ScriptedProvider(["y"], name="b")]
    result = await ask_panel(panel, Request(messages=(ChatMessage.user("?"),)))
    assert result.text == "x"


async def test_an_empty_or_failed_panel_is_an_error_saying_so() -> None:
    request = Request(messages=(ChatMessage.user("?"),))
    with pytest.raises(PanelError, match=r"^empty panel$"):
        await ask_panel([], request)
    with pytest.raises(PanelError, match=r"^all panellists failed: .*HTTP 503"):
        await ask_panel([ScriptedProvider([busy("a")], name="a")], request)
