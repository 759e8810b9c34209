"""``genie init DIR``: a starter project that passes its own test out of the box
(docs/writing-agents.md walks through it): an agent module, a pipeline, a policy file, a test
on the test runtime, and a README saying what to run."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from .._errors import ConfigurationError

__all__ = ["add_parser"]

AGENTS = '''"""The agents of {name}: one question in, one answer out."""

from genie import BaseAgent, Context, Message, Payload, handler


class Question(Payload):
    message_type = "question"
    text: str


class Answer(Payload):
    message_type = "answer"
    text: str
    words: int


class Counter(BaseAgent):
    """Answers how many words a question has."""

    produces = (Answer,)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        words = len(payload.text.split())
        return ctx.reply(Answer(text=f"{{words}} words", words=words))
'''

PIPELINE = """# {name}: a question in, its word count out (docs: docs/pipelines.md in genie).
agents:
  - id: counter
    use: agents:Counter           # agents.py beside this file, class Counter

governance:
  file: policy.yaml

entry:
  type: question
  to: counter
  metadata:
    user_id: ${{USER_ID:-developer}}   # who asks: the policy requires it
  input: {{format: text, field: text, default: question.txt}}

output: answer
timeout: 5s
"""

POLICY = """# The board policy file (docs/governance.md in genie): every message is checked
# against it before it is delivered.
version: "0.1.0"
owner: "{name}"
purpose: "A starter project."
data:
  block_pii: true                 # e-mail addresses, card numbers... are denied
  block_prompt_injection: true
limits:
  required_metadata:
    question: ["user_id"]
"""

QUESTION = "How many words does this question have?\n"

TEST = '''"""The pipeline, tested whole on the real runtime (docs/testing.md in genie)."""

from pathlib import Path

import pytest

from genie.testing import TestRuntime

PIPELINE = Path(__file__).parent / "pipeline.yaml"


@pytest.mark.anyio
async def test_a_question_gets_its_word_count() -> None:
    async with TestRuntime(PIPELINE) as app:
        result = await app.run("one two three")
    assert result.status == "ok"
    assert result.output is not None
    assert result.output.payload.words == 3


@pytest.mark.anyio
async def test_personal_data_is_denied_by_the_policy() -> None:
    async with TestRuntime(PIPELINE) as app:
        result = await app.run("mail me at someone@example.com")
    assert result.status == "denied"
    assert app.received("counter") == []
'''

CONFTEST = """# Every async test runs on asyncio and on trio (docs/testing.md in genie).
pytest_plugins = ["genie.testing.pytest_plugin"]
"""

README = """# {name}

A genie pipeline: `pipeline.yaml` routes a question to the agent in `agents.py`, governed by
`policy.yaml`.

    genie validate pipeline.yaml             # check it
    genie run pipeline.yaml                  # ask what question.txt asks
    echo "Is it three?" | genie run pipeline.yaml --input -
    pip install 'genie-bus[test]'            # pytest and trio, for the test
    pytest                                   # test it (test_pipeline.py)
    genie serve pipeline.yaml --keys keys.yaml   # serve it, with API keys you write in keys.yaml
                                                 # (docs/serve.md in genie)
"""

FILES = {
    "agents.py": AGENTS,
    "pipeline.yaml": PIPELINE,
    "policy.yaml": POLICY,
    "question.txt": QUESTION,
    "test_pipeline.py": TEST,
    "conftest.py": CONFTEST,
    "README.md": README,
}


def init(folder: Path) -> list[Path]:
    """Write the starter project into ``folder`` (made if need be); refuses to overwrite, and a
    write refused midway (a full disk) takes back the files written before it."""
    try:
        taken_by_a_file = folder.exists() and not folder.is_dir()
    except OSError as exc:  # a name the system cannot look up (too long): no folder can have it
        raise ConfigurationError(f"cannot make the folder {folder}: {exc.strerror}") from None
    if taken_by_a_file:
        raise ConfigurationError(f"{folder} exists and is not a folder")
    # lexists: a link that leads nowhere is a name taken too (writing it would make its target)
    taken = [name for name in FILES if os.path.lexists(folder / name)]
    if taken:
        raise ConfigurationError(
            f"{folder} already has {', '.join(taken)}: genie init writes its files into a "
            "folder that has none of them (other files may be there), and overwrites nothing"
        )
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name) or "genie-app"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot make the folder {folder}: {exc.strerror}") from exc
    written: list[Path] = []
    for filename, template in FILES.items():
        path = folder / filename
        try:
            # "x": a file (or link) that appeared since the check above is not written over
            with path.open("x", encoding="utf-8") as file:
                written.append(path)
                file.write(template.format(name=name) if "{name}" in template else template)
        except OSError as exc:
            for done in written:
                done.unlink(missing_ok=True)
            raise ConfigurationError(f"cannot write {path}: {exc.strerror}") from exc
    return written


def _init(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    for path in init(folder):
        print(f"wrote {path}")
    print(f"next: cd {folder} && pytest && genie run pipeline.yaml", file=sys.stderr)
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "init",
        help="write a starter project (an agent, a pipeline, a policy, a test)",
        description="Write a starter project into FOLDER (made if missing; one that has none "
        "of its files): an agent module, a pipeline, a policy file, a test on the test "
        "runtime, and a README. It passes its own test (pytest) and runs (genie run "
        "pipeline.yaml) as written.",
    )
    parser.add_argument("folder", metavar="FOLDER", help="where to write it")
    parser.set_defaults(func=_init)
