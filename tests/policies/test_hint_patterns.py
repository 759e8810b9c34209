"""The PII hints are written so that ``re`` can skip to where a match can begin; each must find a
match exactly where the plain form of its pattern does, or the content screen would clear a
message the detector denies."""

from __future__ import annotations

import random
import re

from genie.policies import _credentials, _personal

_PLAIN_NUMBER = re.compile(
    r"[0-9](?:[ .\-/_()+]{0,4}[0-9]){8}"
    r"|[0-9]{3,}(?: ?,? (?:then|and|finally|next|followed by))+ [0-9]"
)
_PLAIN_PAN_NEEDS = re.compile(r"[0-9](?:[ .\-_/]?[0-9]){3}")
_PLAIN_PAN = re.compile(
    r"[pcfhatblgj][ .\-_/]?[a-z][ .\-_/]?[0-9](?:[ .\-_/]?[0-9]){3}|(?:[a-z0-9] ){9}"
)

# Pieces that make each pattern's edge cases likely: digits, separators, PAN letters, fillers.
_PIECES = [
    *"0123456789",
    *" .-/_()+,:|~*",
    *"abcpfhtlgjxz",
    " then ",
    " and ",
    " followed by ",
    "abcpe",
    "abcpe ",
    "abcpe-",
    "abcpe.",
]


def _texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(_PIECES, k=rng.randint(0, 40))) for _ in range(count)]


def test_the_number_hint_finds_what_its_plain_form_finds() -> None:
    found = 0
    for text in _texts(20_000, 1):
        plain = _PLAIN_NUMBER.search(text) is not None
        assert (_personal._NUMBER_HINT_ALONE.search(text) is not None) == plain, text
        found += plain
    assert found > 100  # the corpus reaches the pattern both ways


def test_the_pan_hints_find_what_their_plain_forms_find() -> None:
    needs = hints = 0
    for text in _texts(20_000, 2):
        plain_needs = _PLAIN_PAN_NEEDS.search(text) is not None
        assert (_personal._PAN_NEEDS.search(text) is not None) == plain_needs, text
        plain = _PLAIN_PAN.search(text) is not None
        fast = (
            _personal._PAN_HINT_AT_DIGITS.search(text) or _personal._PAN_HINT_SPACED.search(text)
        ) is not None
        assert fast == plain, text
        needs += plain_needs
        hints += plain
    assert needs > 500
    assert hints > 100


def test_a_pan_written_apart_or_glued_is_hinted() -> None:
    for text in (
        "pan abcpe1234f",
        "pan abcpe 1234f",
        "pan a b c p e 1 2 3 4 f",
        "abcpe-1234f",
        "a-b-c-p-e-1-2-3-4-f",
        "a.b.c.p.e.1.2.3.4.f",
        "abc-pe-1234-f",
        "abc pe1234f",  # split across two fields
        "abcp e1234f",
        "abcpe12 34f",
    ):
        assert _personal._hinted(text), text
        assert _personal.find_pii(text) == "PAN", text


def test_an_aadhaar_number_in_groups_is_hinted() -> None:
    for text in ("2341:2341:2346", "2341 , 2341 , 2346", "2341|2341|2346", "2341~~2341~~2346"):
        assert _personal._hinted(text), text
        assert _personal.find_pii(f"aadhaar {text}") == "Aadhaar number", text


def test_a_card_number_in_groups_joined_by_a_mark_is_hinted() -> None:
    for text in (
        "4539|1488|0343|6467",
        "5555:5555:5555:4444",
        "4539\u00b71488\u00b70343\u00b76467",
    ):
        assert _personal._hinted(text), text
        assert _personal.find_pii(text) == "card number", text


def test_three_groups_of_four_inside_four_are_no_aadhaar_number() -> None:
    # 233224538323 and 852064279287 pass Verhoeff; the 16 digits fail Luhn (a loan account)
    for sep in (" ", "-", ".", "/", ":", "|", "*"):
        for number in ("2332 2453 8323 6405", "8520 6427 9287 7574"):
            text = f"loan account {number.replace(' ', sep)}"
            assert _personal.find_pii(text) is None, text
    assert _personal.find_pii("aadhaar 2332 2453 8323") == "Aadhaar number"


def test_a_key_prefix_cut_or_spaced_out_is_hinted() -> None:
    """Wherever the search for a key's prefix, spaced or not, finds one, the hint that lets
    ``_key_in_pieces`` skip it holds."""
    prefixes = sorted(_credentials._KEY_PIECES)
    pieces = [*"akisgbcphuorxz_-013", " ", "  ", "ask", "desk"]
    rng = random.Random(3)
    found = 0
    for _ in range(30_000):
        prefix = "".join(c + " " * (rng.random() < 0.3) for c in rng.choice(prefixes))
        junk = ["".join(rng.choices(pieces, k=rng.randint(0, 8))) for _ in range(2)]
        for text in (junk[0] + prefix + junk[1], junk[0] + junk[1]):
            if _credentials._PIECES_START.search(text) is not None:
                assert _credentials._may_hold_pieces(text), text
                found += 1
    assert found > 5_000
