"""API keys: the file and the environment, and every mistake named with file, line and key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from genie import ConfigurationError
from genie._base.yamlconf import ConfigFileError
from genie.serve import load_keys


def test_file_keys_by_digest_or_in_clear(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"a-long-enough-secret").hexdigest()
    path = tmp_path / "keys.yaml"
    path.write_text(
        "keys:\n"
        f"  - {{principal: ops, key_sha256: {digest}, roles: [admin], tenant: t1}}\n"
        "  - {principal: ci, key: another-long-secret, grants: [pii_acknowledged]}\n"
    )
    ring = load_keys(path, {})
    ops = ring.find("a-long-enough-secret")
    assert ops is not None
    assert (ops.principal, ops.roles, ops.tenant) == ("ops", ("admin",), "t1")
    assert ring.find("a-long-enough-secreT") is None
    ci = ring.find("another-long-secret")
    assert ci is not None
    asserted = {"user_roles": "admin", "pii_acknowledged": "true", "tenant_id": "x", "q": 1}
    assert ci.stamp(asserted) == {
        "pii_acknowledged": "true",  # granted to this key
        "q": 1,
        "user_id": "ci",
        "user_roles": "",
    }
    assert ops.stamp(asserted) == {
        "q": 1,
        "user_id": "ops",
        "user_roles": "admin",
        "tenant_id": "t1",
    }
    assert ops.dropped(asserted) == ["pii_acknowledged", "tenant_id", "user_roles"]
    # The runtime's own keys (a partial bundle's missing parts) are no caller's to write.
    forged = {"genie.missing_parts": ["{}"], "genie.other": 1, "genie_x": 2}
    assert ci.stamp(forged) == {"genie_x": 2, "user_id": "ci", "user_roles": ""}
    assert ci.dropped(forged) == ["genie.missing_parts", "genie.other"]


def test_environment_keys() -> None:
    ring = load_keys(None, {"GENIE_API_KEYS": "{keys: [{principal: me, key: 0123456789abcdef}]}"})
    assert ring.principals() == ["me"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("keys:\n  - {principal: a}\n", "keys.yaml:2: keys.0: give exactly one of 'key' and"),
        ("keys:\n  - {principal: a, key: short}\n", "keys.yaml:2: keys.0.key"),
        (
            "keys:\n  - principal: a\n    key: 0123456789abcdef\n    grants: [user_roles]\n",
            "are not grantable",
        ),
        ("keys:\n  - {principal: a, key: 0123456789abcdef, rol: [x]}\n", "keys.0.rol"),
        ("keys: []\n", "keys.yaml:1: keys"),
        # an endless rate passed `gt=0` and then failed every request of the key
        (
            "keys:\n  - {principal: a, key: 0123456789abcdef, rate: .inf}\n",
            "keys.yaml:2: keys.0.rate: Input should be a finite number",
        ),
        (
            "keys:\n  - {principal: a, key: 0123456789abcdef, rate: 1e999}\n",
            "keys.yaml:2: keys.0.rate: Input should be a finite number",
        ),
        (
            "keys:\n  - {principal: a, key: 0123456789abcdef, rate: .nan}\n",
            "keys.yaml:2: keys.0.rate: Input should be a finite number",
        ),
        # the roles reach the policies joined by commas: this was the roles user and admin
        (
            "keys:\n  - {principal: a, key: 0123456789abcdef, roles: [user, 'user,admin']}\n",
            "keys.yaml:2: keys.0.roles.1: String should match pattern",
        ),
        (
            "keys:\n  - {principal: a, key: 0123456789abcdef, roles: ['']}\n",
            "keys.yaml:2: keys.0.roles.0: String should have at least 1 character",
        ),
    ],
)
def test_mistakes_name_file_line_and_key(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as info:
        load_keys(path, {})
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_two_principals_sharing_a_key_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(
        "keys:\n  - {principal: a, key: 0123456789abcdef}\n"
        "  - {principal: b, key: 0123456789abcdef}\n"
    )
    with pytest.raises(ConfigurationError, match="principals 'a' and 'b' share a key"):
        load_keys(path, {})


def test_no_keys_at_all_refuses_to_serve() -> None:
    with pytest.raises(ConfigurationError, match="genie serve needs API keys"):
        load_keys(None, {})


def test_a_caller_cannot_choose_where_its_data_goes(tmp_path: Path) -> None:
    """``region`` is what data residency reads as the target: a client's is dropped (it could
    claim "in" for data bound abroad, or send data abroad), unless its key grants it."""
    path = tmp_path / "keys.yaml"
    path.write_text(
        "keys:\n"
        "  - {principal: app, key: an-app-long-secret}\n"
        "  - {principal: desk, key: a-desk-long-secret, grants: [region]}\n"
    )
    ring = load_keys(path, {})
    app, desk = ring.find("an-app-long-secret"), ring.find("a-desk-long-secret")
    assert app is not None
    assert desk is not None
    assert "region" not in app.stamp({"region": "us"})
    assert app.dropped({"region": "us", "q": 1}) == ["region"]
    assert desk.stamp({"region": "us"})["region"] == "us"
