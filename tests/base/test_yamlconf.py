"""The bounded YAML loader: hostile and broken files are refused with file and line, quickly,
by the libyaml loader and the pure-Python one alike; every bound holds exactly at its value."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from genie._base import yamlconf as _yamlconf
from genie._base.yamlconf import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    ConfigFileError,
    parse_yaml,
    read_yaml,
    sorted_problems,
)
from genie._cli.main import main

LOADERS = {"default": _yamlconf._Loader, "python": _yamlconf._PyLoader}


@pytest.fixture(params=sorted(LOADERS))
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(_yamlconf, "_Loader", LOADERS[request.param])
    return str(request.param)


def test_the_default_loader_parses_with_libyaml() -> None:
    # The bounds are checked in the Python composer either way; libyaml only makes it faster.
    assert _yamlconf._Loader is not _yamlconf._PyLoader


def refused(path: Path) -> list[str]:
    # CPU time: a hostile file must not make the reader work; a busy machine only waits.
    started = time.process_time()
    with pytest.raises(ConfigFileError) as caught:
        read_yaml(path)
    assert time.process_time() - started < 1.0
    return caught.value.problems


def write(tmp_path: Path, text: str, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def laughs(levels: int, width: int = 9) -> str:
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth + "\n"


@pytest.mark.usefixtures("loader")
def test_billion_laughs_is_refused_at_the_alias_that_crosses_the_bound(tmp_path: Path) -> None:
    [problem] = refused(write(tmp_path, laughs(10)))
    assert problem.startswith(f"{tmp_path / 'f.yaml'}:5: more than {MAX_NODES:,} values")


@pytest.mark.usefixtures("loader")
def test_aliases_are_counted_as_copies_up_to_the_bound(tmp_path: Path) -> None:
    # A list of n aliases to a list of 9 items is 1 + n * 10 values, plus the anchored list (10)
    # and the two keys and the mapping (3): exactly at the bound, then one past it.
    n = (MAX_NODES - 14) // 10
    assert 14 + n * 10 == MAX_NODES - (MAX_NODES - 14) % 10
    base = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\nb: [" + ", ".join(["*a"] * n)
    padding = (MAX_NODES - 14) % 10
    ok = read_yaml(write(tmp_path, base + ", 0" * padding + "]\n"))
    assert len(ok.data["b"]) == n + padding
    [problem] = refused(write(tmp_path, base + ", 0" * (padding + 1) + "]\n", "g.yaml"))
    assert "more than" in problem


@pytest.mark.usefixtures("loader")
def test_depth_is_bounded_exactly(tmp_path: Path) -> None:
    assert read_yaml(write(tmp_path, nested(MAX_DEPTH))).data is not None
    [problem] = refused(write(tmp_path, "x: 1\ny: " + nested(MAX_DEPTH)))  # one more: the mapping
    assert problem == f"{tmp_path / 'f.yaml'}:2: nested more than {MAX_DEPTH} levels deep"


@pytest.mark.usefixtures("loader")
def test_five_thousand_levels_of_block_mappings_are_refused(tmp_path: Path) -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(5000)) + "  " * 5000 + "v\n"
    text = text[: MAX_BYTES - 100] + "\n"  # under the size bound: the depth bound must answer
    [problem] = refused(write(tmp_path, text))
    assert f":{MAX_DEPTH}: nested more than {MAX_DEPTH} levels deep" in problem


@pytest.mark.usefixtures("loader")
def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    [problem] = refused(write(tmp_path, "a: 1\nb: &x {c: [1, *x]}\n"))
    assert problem == f"{tmp_path / 'f.yaml'}:2: alias *x is inside the collection it names"


def test_a_file_over_the_size_bound_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.write(b"agents: [")
        f.truncate(50 * 1024 * 1024)  # 50 MB (sparse: the test writes almost nothing)
    [problem] = refused(path)
    assert problem == (
        f"{path}:1: the file is larger than 256 KiB, the limit for a configuration file"
    )


def test_a_file_at_the_size_bound_loads_in_time_linear_in_its_size(tmp_path: Path) -> None:
    # About as many values as the node bound allows, in as many bytes as the size bound allows,
    # against an eighth of it. CPU time, not wall time, and a ratio measured in the same run,
    # not a number of seconds: the bound guards against work that grows faster than the file,
    # and a busy machine or coverage's tracing slows both files alike.
    row = "k{:05d}: [{}, {}]\n"

    def sample(rows: int, size: int) -> tuple[Path, str]:
        text = "".join(row.format(i, "x" * 14, "y" * 14) for i in range(rows))
        text += "# " + "z" * (size - len(text) - 3) + "\n"
        assert len(text.encode()) == size
        return write(tmp_path, text, f"{rows}.yaml"), text

    def cpu(path: Path) -> float:
        best = float("inf")
        gc.collect()
        gc.disable()  # the collector's passes grow with everything alive, not with the file
        try:
            for _ in range(3):  # the least of three: a preempted run is not the parser's time
                started = time.process_time()
                read_yaml(path)
                best = min(best, time.process_time() - started)
        finally:
            gc.enable()
        return best

    rows = MAX_NODES // 4 - 10
    full, text = sample(rows, MAX_BYTES)
    eighth, _ = sample(rows // 8, MAX_BYTES // 8)
    assert len(read_yaml(full).data) == rows
    ratio = cpu(full) / cpu(eighth)
    assert ratio < 16  # 8 times the file: at most twice linear
    full.write_text(text + " ")
    refused(full)


def test_non_utf8_names_the_byte_its_offset_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("a: 1\nname: café\n".encode("latin-1"))
    assert refused(path) == [
        f"{path}:2: not UTF-8: byte 0xe9 at offset 14 (column 10); save the file as UTF-8"
    ]


def test_utf16_is_named_and_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "u16.yaml"
    path.write_text("a: 1\n", encoding="utf-16")
    assert refused(path) == [f"{path}:1: the file is UTF-16; save it as UTF-8"]
    path.write_text("a: 1\n", encoding="utf-8-sig")
    assert read_yaml(path).data == {"a": 1}


@pytest.mark.usefixtures("loader")
@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("a: 1\nb: x\x07y\n", 2, "character #x0007 is not allowed in YAML"),
        ("a: 1\nb: 2026-13-45\n", 2, "'2026-13-45': month must be in 1..12"),
        # Python's own words advised raising the interpreter's limit: no fix for a file.
        (
            "a: 1\nb: " + "9" * 5000 + "\n",
            2,
            f"number {'9' * 32}... is too long: 5000 digits, at most 4300",
        ),
        ("a: !!python/object:os.system {}\n", 1, "YAML syntax error: could not determine"),
        ("a: 1\n---\nb: 2\n", 2, "expected a single document"),
        ("a: *nowhere\n", 1, "YAML syntax error: found undefined alias"),
    ],
    ids=["control", "date", "digits", "python-tag", "two-documents", "undefined-alias"],
)
def test_unreadable_values_are_refused_with_their_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    [problem] = refused(write(tmp_path, text))
    assert problem.startswith(f"{tmp_path / 'f.yaml'}:{line}: ")
    assert reason in problem


def test_a_directory_cannot_be_read(tmp_path: Path) -> None:
    assert refused(tmp_path) == [f"{tmp_path}: is a directory"]


@pytest.mark.usefixtures("loader")
def test_duplicate_keys_name_both_lines_at_every_level(tmp_path: Path) -> None:
    text = "a: 1\nb:\n  - {x: 1, y: 2, x: 3}\nc: {d: 1}\na: 2\n"
    doc = read_yaml(write(tmp_path, text))
    path = tmp_path / "f.yaml"
    assert doc.problems == [
        f"{path}:3: b.0.x: duplicate key (first on line 3); YAML would keep only the last one",
        f"{path}:5: a: duplicate key (first on line 1); YAML would keep only the last one",
    ]


@pytest.mark.usefixtures("loader")
def test_distinct_keys_are_not_duplicates(tmp_path: Path) -> None:
    # 1 and "1" are different keys; a merge key's keys may be overridden (that is what it is for)
    text = 'base: &b {x: 1, y: 2}\nm: {1: a, "1": b}\nn:\n  <<: *b\n  x: 3\n'
    doc = read_yaml(write(tmp_path, text))
    assert doc.problems == []
    assert doc.data["n"] == {"x": 3, "y": 2}


@pytest.mark.usefixtures("loader")
def test_keys_equal_once_loaded_are_duplicates(tmp_path: Path) -> None:
    # 1, 1.0, 0x1 and true are one key of a Python dict: the mapping would keep only the last.
    doc = read_yaml(write(tmp_path, "m: {1: a, 1.0: b, 0x1: c, true: d}\n"))
    assert [p.split(": ", 1)[1] for p in doc.problems] == [
        "m.1.0: duplicate key (first on line 1); YAML would keep only the last one",
        "m.0x1: duplicate key (first on line 1); YAML would keep only the last one",
        "m.true: duplicate key (first on line 1); YAML would keep only the last one",
    ]


def test_a_duplicate_inside_an_anchor_is_reported_once(tmp_path: Path) -> None:
    doc = read_yaml(write(tmp_path, "a: &a {x: 1, x: 2}\nb: [*a, *a, *a]\n"))
    assert len(doc.problems) == 1


@pytest.mark.usefixtures("loader")
def test_a_key_a_merge_brings_in_is_at_the_line_it_was_written(tmp_path: Path) -> None:
    """Loaded, a key ``<<`` merges in is the mapping's own: a problem with it names the line
    where it was written, not the line the mapping starts on; where a key is merged from two
    places, the line is that of the value loaded (the mapping's own key wins)."""
    text = (
        "base: &b\n"  # 1
        "  x: 1\n"  # 2
        "  y: {z: 2}\n"  # 3
        "more: &m\n"  # 4
        "  <<: *b\n"  # 5
        "  w: 3\n"  # 6
        "  x: 4\n"  # 7
        "n:\n"  # 8
        "  <<: [*m, *b]\n"  # 9
        "  v: 5\n"  # 10
        "o:\n"  # 11
        "  x: 6\n"  # 12
        "  <<: *b\n"  # 13
    )
    doc = read_yaml(write(tmp_path, text))
    assert doc.problems == []
    n = doc.data["n"]
    assert (n["w"], n["y"], n["v"]) == (3, {"z": 2}, 5)
    lines = {key: doc.lines[("n", key)] for key in n}
    # Which x a merge of a merge keeps is PyYAML's to say: the line is the kept one's.
    assert lines == {"w": 6, "x": {1: 2, 4: 7}[n["x"]], "y": 3, "v": 10}
    assert (doc.data["more"]["x"], doc.lines[("more", "x")], doc.lines[("more", "y")]) == (4, 7, 3)
    assert doc.lines[("n", "y", "z")] == 3
    assert (doc.data["o"]["x"], doc.lines[("o", "x")], doc.lines[("o", "y")]) == (6, 12, 3)


def test_lines_of_keys_and_items(tmp_path: Path) -> None:
    doc = read_yaml(write(tmp_path, "a:\n  b: 1\n  c:\n    - 1\n    - 2\n"))
    assert doc.lines[("a", "b")] == 2
    assert doc.lines[("a", "c", 1)] == 5


@pytest.mark.usefixtures("loader")
def test_an_alias_is_placed_on_the_line_it_is_written_on(tmp_path: Path) -> None:
    # An alias composes to the node it names; its own line is where it was written.
    doc = read_yaml(write(tmp_path, "a: &a [1]\nb:\n  - x\n  - *a\nc: *a\nd: {e: *a}\n"))
    assert doc.lines[("b", 1)] == 4
    assert doc.lines[("c",)] == 5
    assert doc.lines[("d", "e")] == 6
    assert doc.lines[("a",)] == 1


@pytest.mark.usefixtures("loader")
def test_an_alias_as_a_key_twice_is_a_duplicate_on_its_lines(tmp_path: Path) -> None:
    doc = read_yaml(write(tmp_path, "k: &k name\n*k : 1\n*k : 2\n"))
    assert doc.problems == [
        f"{tmp_path / 'f.yaml'}:3: name: duplicate key (first on line 2); YAML would keep "
        "only the last one"
    ]


@pytest.mark.usefixtures("loader")
@pytest.mark.parametrize("key", ["*k", "[1, 2]", "{a: 1}"])
def test_a_list_or_mapping_as_a_key_is_refused_on_its_line(tmp_path: Path, key: str) -> None:
    # A key used to be reported at the anchor's line, as YAML's "found unhashable key".
    path = write(tmp_path, f"k: &k [1, 2, 3]\nm:\n  ? {key}\n  : v\n")
    assert refused(path) == [f"{path}:3: m: a key is a list or a mapping here; a key is one value"]


HOSTILE: dict[str, Callable[[Path], object]] = {
    "laughs": lambda p: p.write_text(laughs(10)),
    "deep": lambda p: p.write_text("agents: " + nested(5000)),
    "latin1": lambda p: p.write_bytes("agents: [caf\xe9]\n".encode("latin-1")),
    "big": lambda p: p.write_text("# " + "x" * MAX_BYTES + "\n"),
    "control": lambda p: p.write_text("agents: [\x00]\n"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("command", [["validate"], ["run"], ["graph"], ["policy", "check"]])
def test_every_command_refuses_hostile_files_with_exit_2_in_a_second(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, command: list[str]
) -> None:
    path = tmp_path / f"{kind}.yaml"
    HOSTILE[kind](path)
    extra = ["--probes", str(path)] if command[0] == "policy" else []
    started = time.process_time()  # the work done, not the machine's load
    assert main([*command, str(path), *extra]) == 2
    assert time.process_time() - started < 1.0
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:")
    assert "Traceback" not in err


def test_text_from_elsewhere_is_held_to_the_same_bounds() -> None:
    with pytest.raises(ConfigFileError, match=r"^<stdin>:5: more than 20,000 values"):
        parse_yaml(laughs(10), "<stdin>")
    with pytest.raises(ConfigFileError, match=r"^<stdin>:1: the file is larger than 256 KiB"):
        parse_yaml("#" * (MAX_BYTES + 1), "<stdin>")
    assert parse_yaml("a: [1, 2]\n", "<stdin>").data == {"a": [1, 2]}


def test_problems_sort_by_file_as_first_named_then_by_line() -> None:
    given = [
        "p.yaml:10: b: x",
        "policy.yaml:3: c: y",
        "p.yaml: variable X is set but never used",
        "p.yaml:2: a: z",
    ]
    assert sorted_problems(given) == [
        "p.yaml: variable X is set but never used",
        "p.yaml:2: a: z",
        "p.yaml:10: b: x",
        "policy.yaml:3: c: y",
    ]


def test_the_values_bound_speaks_of_aliases_only_in_a_file_that_has_some(tmp_path: Path) -> None:
    # It said "(counting what each alias repeats)" of a file with no alias.
    path = write(tmp_path, "a: [" + ", ".join(["1"] * MAX_NODES) + "]\n")
    assert refused(path) == [
        f"{path}:1: more than {MAX_NODES:,} values; a configuration this large is a mistake"
    ]
