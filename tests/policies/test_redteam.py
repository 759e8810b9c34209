"""The red-team corpus (config/policies/redteam/) against the shipped policies, class by
class: today's figures are a floor that a change may raise, never lower (issue 38 raises them
to 90 % of the evasive denied and none of the benign; docs/governance.md has the table)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from genie._cli.main import main
from genie.policies import load_policy_file, run_probes

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "config" / "policies" / "ai-policy.yaml"
REDTEAM = ROOT / "config" / "policies" / "redteam"

# class -> at least this many denied (of the evasive probes): every one (issue 38's target is
# 90 % in all)
DENIED_AT_LEAST = {
    "injection": 57,
    "injection-encoded": 20,
    "injection-multilingual": 20,
    "pii-email": 13,
    "pii-card": 17,
    "pii-phone": 12,
    "pii-aadhaar": 9,
    "pii-pan": 7,
    "pii-iban": 6,
    "pii-ssn": 5,
    "secrets": 18,
    "sql": 14,
}
# class -> at most this many wrongly denied (of the benign probes): none, in every class
WRONGLY_DENIED_AT_MOST = dict.fromkeys(
    (
        "benign-statements",
        "benign-invoices",
        "benign-support",
        "benign-loans",
        "benign-numbers",
        "benign-tech",
        "benign-multilingual",
        "benign-instructions",
    ),
    0,
)


def test_the_evasive_corpus_is_denied() -> None:
    report = run_probes(load_policy_file(POLICY), REDTEAM / "evasive.yaml")
    assert report.total >= 150
    assert set(report.classes) == set(DENIED_AT_LEAST)
    for kind, counts in report.classes.items():
        assert counts.must_allow == 0, kind
        assert counts.denied >= DENIED_AT_LEAST[kind], (kind, counts.text())


# The second author's corpus (holdout-evasive.yaml): every one but a Dubai mobile written the
# local way ("055 602 7391"), which no rule can tell from any other ten digits.
HOLDOUT_DENIED_AT_LEAST = {
    "injection": 32,
    "injection-encoded": 31,
    "multilingual": 28,
    "pii-aadhaar": 12,
    "pii-card": 20,
    "pii-email": 15,
    "pii-iban": 11,
    "pii-pan": 11,
    "pii-phone": 17,
    "pii-ssn": 10,
    "secrets": 27,
    "sql": 18,
}


def test_the_second_authors_corpus_holds() -> None:
    evasive = run_probes(load_policy_file(POLICY), REDTEAM / "holdout-evasive.yaml")
    assert evasive.total >= 230
    assert set(evasive.classes) == set(HOLDOUT_DENIED_AT_LEAST)
    for kind, counts in evasive.classes.items():
        assert counts.denied >= HOLDOUT_DENIED_AT_LEAST[kind], (kind, counts.text())
    benign = run_probes(load_policy_file(POLICY), REDTEAM / "holdout-benign.yaml")
    assert benign.total >= 180
    assert benign.passed, benign.unexpected_denies


def test_no_benign_message_is_denied() -> None:
    report = run_probes(load_policy_file(POLICY), REDTEAM / "benign.yaml")
    assert report.total >= 150
    assert set(report.classes) == set(WRONGLY_DENIED_AT_MOST)
    for kind, counts in report.classes.items():
        assert counts.must_deny == 0, kind
        assert counts.wrongly_denied <= WRONGLY_DENIED_AT_MOST[kind], (kind, counts.text())


def test_the_cli_reports_each_class(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["policy", "check", str(POLICY), "--probes", str(REDTEAM / "benign.yaml")]
    main(argv)
    out = capsys.readouterr().out
    assert "class benign-tech          0/26 wrongly denied" in out
    main([*argv, "--json"])
    classes = json.loads(capsys.readouterr().out)["classes"]
    assert classes["benign-tech"] == {
        "must_deny": 0,
        "denied": 0,
        "recall": None,
        "must_allow": 26,
        "wrongly_denied": 0,
    }


def test_the_later_cases_hold() -> None:
    """The cases written after the detectors (config/policies/redteam/later.yaml): every one
    denied or allowed as it should be, so what they taught the grammar stays learnt."""
    report = run_probes(load_policy_file(POLICY), REDTEAM / "later.yaml")
    assert report.total >= 372
    assert report.passed, (report.unexpected_allows, report.unexpected_denies)


# The later cases' classes whose probes name what they hold: each is denied as that, not as
# a neighbour that happens to match (an IBAN's digits read as a phone number).
LATER_KINDS = {
    "pii-iban": "PII pattern: IBAN",
    "pii-email": "PII pattern: e-mail address",
    "pii-card": "PII pattern: card number",
    "pii-ssn": "PII pattern: US SSN",
    "secrets": "a secret: password",
}


def test_the_later_cases_are_denied_as_what_they_hold() -> None:
    probes = yaml.safe_load((REDTEAM / "later.yaml").read_text(encoding="utf-8"))["probes"]
    report = run_probes(load_policy_file(POLICY), REDTEAM / "later.yaml")
    named = [p for p in probes if p["class"] in LATER_KINDS and p["expect"] == "deny"]
    assert len(named) >= 45
    for probe in named:
        assert LATER_KINDS[probe["class"]] in report.details[probe["name"]], probe["name"]


# The third author's corpus (holdout2-*.yaml), aimed at the reading of number words, of IBANs
# joined by ".", "/" or "_", of a bracketed "@" or "." and of "password" in other languages:
# every evasive message denied as what it holds, and none of the business ones.
HOLDOUT2_KINDS = {
    "pii-aadhaar": (3, "PII pattern: Aadhaar number"),
    "pii-card": (8, "PII pattern: card number"),
    "pii-email": (6, "PII pattern: e-mail address"),
    "pii-iban": (6, "PII pattern: IBAN"),
    "pii-phone": (6, "PII pattern: phone number"),
    "pii-ssn": (2, "PII pattern: US SSN"),
    "secret-password": (14, "a secret: password"),
}


def test_the_third_authors_corpus_holds() -> None:
    probes = yaml.safe_load((REDTEAM / "holdout2-evasive.yaml").read_text(encoding="utf-8"))
    evasive = run_probes(load_policy_file(POLICY), REDTEAM / "holdout2-evasive.yaml")
    assert evasive.total >= 45
    assert set(evasive.classes) == set(HOLDOUT2_KINDS)
    for kind, counts in evasive.classes.items():
        assert counts.denied >= HOLDOUT2_KINDS[kind][0], (kind, counts.text())
    for probe in probes["probes"]:
        assert HOLDOUT2_KINDS[probe["class"]][1] in evasive.details[probe["name"]], probe["name"]
    benign = run_probes(load_policy_file(POLICY), REDTEAM / "holdout2-benign.yaml")
    assert benign.total >= 110
    assert not benign.unexpected_allows
    assert set(benign.unexpected_denies) <= HOLDOUT2_WRONGLY_DENIED, benign.unexpected_denies


# Denied, of the third author's business messages: a batch name shaped as an IBAN that fails
# its check, its groups joined by "_" ("FR76_3000_6000_0112_..."), whose digits read as a mobile.
# A mobile joined by "_" or "/" ("98200_12345") is how one is disguised: that denial is kept.
HOLDOUT2_WRONGLY_DENIED = {"br-15"}
