"""``Literals``: the automaton (the fast extra) and the regular expression find the same words,
in the word lists the detectors and the content screen search."""

from __future__ import annotations

import random

import pytest

from genie.policies import _credentials, _injection, _sql_attack
from genie.policies._normalise import Literals, compact_words, fold

WORD_LISTS = {
    "injection": _injection.HINT_WORDS,
    "credentials": _credentials.HINT_WORDS,
    "sql": _sql_attack.HINT_WORDS,
    "all": _injection.HINT_WORDS + _credentials.HINT_WORDS + _sql_attack.HINT_WORDS,
}


def _texts(words: tuple[str, ...], seed: int) -> list[str]:
    """Text near the words: pieces of them (a word cut short or run into the next), whole words,
    letters of the scripts they are written in, and ordinary business text."""
    rng = random.Random(seed)
    business = compact_words(fold("Statement for April: paid Rs 12,400 to the landlord; UTR 4411"))
    letters = "".join(sorted({c for w in words for c in w})) + "abcdefghijklmnopqrstuvwxyz0123"
    out = []
    for _ in range(4000):
        parts = []
        for _ in range(rng.randint(1, 6)):
            word = rng.choice(words)
            roll = rng.random()
            if roll < 0.5:
                cut = rng.randint(0, len(word))
                parts.append(word[:cut] if rng.random() < 0.5 else word[cut:])
            elif roll < 0.6:
                parts.append(word)
            elif roll < 0.8:
                parts.append("".join(rng.choices(letters, k=rng.randint(1, 8))))
            else:
                at = rng.randint(0, len(business))
                parts.append(business[at : at + rng.randint(1, 20)])
        out.append("".join(parts))
    return out


@pytest.mark.parametrize("name", sorted(WORD_LISTS))
def test_the_automaton_and_the_expression_find_the_same(name: str) -> None:
    words = WORD_LISTS[name]
    automaton, expression = Literals(words), Literals(words, automaton=False)
    assert automaton.engine == "automaton"  # the fast extra is installed
    assert expression.engine == "expression"
    found = 0
    for text in _texts(words, seed=len(name)):
        expected = any(w in text for w in words)
        assert automaton.found_in(text) is expected, text
        assert expression.found_in(text) is expected, text
        found += expected
    assert 500 < found < 3500  # both ways, often


def test_an_empty_word_is_refused() -> None:
    with pytest.raises(ValueError, match="empty literal"):
        Literals(["ignore", ""])
    with pytest.raises(ValueError, match="empty literal"):
        Literals([])
