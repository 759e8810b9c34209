"""Shipped files, mutated at random (seeded, so every run tries the same files): `genie
validate` and `genie policy check` either accept a mutant or refuse it with exit 2 and
``file:line`` problems, never a traceback. Mutating the shipped files found a route to a gather
that was a KeyError."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from genie._cli.main import main

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = sorted((ROOT / "config" / "pipelines").glob("*.yaml"))
POLICY = ROOT / "config" / "policies" / "ai-policy.yaml"
PROBES = ROOT / "config" / "policies" / "probes.yaml"
SNIPPETS = [b"&a ", b"*a", b"<<: ", b"[", b"{", b"- ", b"\n  ", b":", b"\t", b"'", b"\x00"]
VALUES: list[Any] = [None, 0, -1, 10**30, 1.5, "", "x", "*", "forecaster", "1ms", [], {}, [1]]


def byte_mutant(rng: random.Random, text: bytes) -> bytes:
    data = bytearray(text)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(data))
        op = rng.random()
        if op < 0.3:
            data[i] = rng.randrange(256)
        elif op < 0.5:
            del data[i : i + rng.randint(1, 20)]
        elif op < 0.7:
            data[i:i] = rng.choice(SNIPPETS)
        else:
            j = rng.randrange(len(data))
            data[i:i] = data[j : j + rng.randint(1, 80)]
    return bytes(data)


def locations(data: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if at:
        yield at
    items = (
        data.items()
        if isinstance(data, dict)
        else enumerate(data)
        if isinstance(data, list)
        else ()
    )
    for key, value in items:
        yield from locations(value, (*at, key))


def value_mutant(rng: random.Random, text: str) -> str:
    data = yaml.safe_load(text)
    for _ in range(rng.randint(1, 3)):
        *parents, last = rng.choice(list(locations(data)))
        holder = data
        for key in parents:
            holder = holder[key]
        if isinstance(holder, dict) and rng.random() < 0.2:
            del holder[last]
        else:
            holder[last] = copy.deepcopy(rng.choice(VALUES))
    return yaml.safe_dump(data)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_pipelines_are_accepted_or_refused_cleanly(
    seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The shipped layout, so relative paths (the policy file, default inputs) still resolve.
    for folder in ("policies", "data"):
        (tmp_path / folder).symlink_to(ROOT / "config" / folder)
    (tmp_path / "pipelines").mkdir()
    rng = random.Random(seed)
    for n in range(40):
        source = rng.choice(PIPELINES)
        mutant = tmp_path / "pipelines" / source.name
        if n % 2:
            mutant.write_bytes(byte_mutant(rng, source.read_bytes()))
        else:
            mutant.write_text(value_mutant(rng, source.read_text()))
        code = main(["validate", str(mutant)])
        err = capsys.readouterr().err
        assert code in (0, 2), err
        assert "Traceback" not in err
        assert code == 0 or err.startswith(f"{mutant}")


@pytest.mark.parametrize("seed", range(2))
def test_mutated_board_files_are_accepted_or_refused_cleanly(
    seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(seed)
    mutant = tmp_path / "ai-policy.yaml"
    for n in range(40):
        if n % 2:
            mutant.write_bytes(byte_mutant(rng, POLICY.read_bytes()))
        else:
            mutant.write_text(value_mutant(rng, POLICY.read_text()))
        code = main(["policy", "check", str(mutant), "--probes", str(PROBES)])
        err = capsys.readouterr().err
        assert code in (0, 1, 2), err
        assert "Traceback" not in err
        assert code != 2 or err.startswith(f"{mutant}")
