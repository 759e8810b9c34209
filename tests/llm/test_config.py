"""The ``llm:`` YAML section: mistakes named by file, line and key; keys only from the
environment, checked at build time; the stacks it builds work."""

from __future__ import annotations

from pathlib import Path

import pytest

from genie import ConfigurationError
from genie._base.yamlconf import ConfigFileError
from genie.llm import BudgetExceededError, CallContext, Deadline, ProviderResponseError
from genie.llm._config import LLMConfig, build_stacks, load_llm_config

from .helpers import API_KEY, HTTPX_HALF_READ, simple_request
from .server import ProviderServer

PIPELINE = """\
name: research
llm:
  providers:
    offline:
      kind: scripted
      answers: ["SCORE: 9\\nREASONING: aligned"]
    local:
      kind: openai
      base_url: http://127.0.0.1:8080
      region: on-prem
    claude:
      kind: anthropic
      api_key_env: ANTHROPIC_API_KEY
  prices:
    scripted-model: {input: 1.0, output: 2.0}
  budgets:
    daily_tokens_per_principal: 2000
  stacks:
    judge:
      providers: [offline]
      deadline: 10
      cache: {ttl: 60}
    research:
      providers: [claude, local]
      retry: {attempts: 2, seed: 7}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


async def test_a_pipeline_file_builds_working_stacks(tmp_path: Path) -> None:
    config = load_llm_config(write(tmp_path, PIPELINE))
    assert config is not None
    built = build_stacks(config, {"ANTHROPIC_API_KEY": API_KEY})
    try:
        judge = built["judge"]
        assert isinstance(judge, Deadline)
        request = simple_request(max_tokens=500, context=CallContext(correlation_id="c1"))
        response = await judge.complete(request)
        assert response.text.startswith("SCORE: 9")
        assert built["research"].name == "claude->local"
        big = simple_request(max_tokens=5000, context=CallContext(correlation_id="c2"))
        with pytest.raises(BudgetExceededError, match="daily_tokens"):
            await judge.complete(big)
        with pytest.raises(
            ConfigurationError, match=r"no llm stack named 'judgee' \(did you mean 'judge'\?\)"
        ):
            built["judgee"]
    finally:
        await built.aclose()


def test_a_missing_key_is_an_error_at_build_time_naming_the_variable(tmp_path: Path) -> None:
    config = load_llm_config(write(tmp_path, PIPELINE))
    assert config is not None
    with pytest.raises(
        ConfigurationError, match="'claude': environment variable ANTHROPIC_API_KEY"
    ):
        build_stacks(config, {})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("      api_key_env: ANTHROPIC_API_KEY", f"      api_key: {API_KEY}"),
            "pipeline.yaml:13: llm.providers.claude.api_key: unknown key",
        ),
        (
            ("providers: [claude, local]", "providers: [claude, locale]"),
            "stack 'research' names provider 'locale', not declared (did you mean 'local'?)",
        ),
        (
            (
                "      kind: anthropic\n      api_key_env: ANTHROPIC_API_KEY\n",
                "      kind: anthropic\n",
            ),
            "pipeline.yaml:11: llm.providers.claude: kind 'anthropic' needs api_key_env",
        ),
        (
            ("    daily_tokens_per_principal: 2000", "    correlation_tokens: 2000"),
            "pipeline.yaml:17: llm.budgets.correlation_tokens: a limit of the runtime now: "
            "write it under the pipeline's limits: (correlation_tokens: 2000)",
        ),
        (
            ("      deadline: 10", "      deadline: -1"),
            "pipeline.yaml:21: llm.stacks.judge.deadline: Input should be greater than 0",
        ),
        (
            ("      region: on-prem", "      region: on-prem\n      max_response_bytes: 0"),
            "pipeline.yaml:11: llm.providers.local.max_response_bytes: "
            "Input should be greater than or equal to 1",
        ),
        (
            ("      region: on-prem", "      region: on-prem\n      max_response_bytes: 32MiB"),
            "pipeline.yaml:11: llm.providers.local.max_response_bytes: "
            "Input should be a valid integer",
        ),
        (
            ("      region: on-prem", "      region: on-prem\n      max_response_bytes: true"),
            "pipeline.yaml:11: llm.providers.local.max_response_bytes:",
        ),
        (
            ("      kind: scripted", "      kind: scripted\n      max_response_bytes: 1024"),
            "pipeline.yaml:4: llm.providers.offline: max_response_bytes is for an HTTP provider",
        ),
    ],
)
def test_mistakes_name_the_file_line_and_key_and_never_echo_a_key(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    assert old in PIPELINE
    with pytest.raises(ConfigFileError) as caught:
        load_llm_config(write(tmp_path, PIPELINE.replace(old, new)))
    assert expected in str(caught.value)
    assert API_KEY not in str(caught.value)


def test_a_file_without_an_llm_section_has_none(tmp_path: Path) -> None:
    assert load_llm_config(write(tmp_path, "name: plain\n")) is None


async def test_an_openai_compatible_server_needs_no_key() -> None:
    config = LLMConfig.model_validate(
        {
            "providers": {"local": {"kind": "openai", "base_url": "http://127.0.0.1:1"}},
            "stacks": {"default": {"providers": ["local"]}},
        }
    )
    built = build_stacks(config, {})
    try:
        assert built["default"].name == "local"
        assert built["default"].region == "us"  # say region: on-prem for a server of your own
    finally:
        await built.aclose()


@HTTPX_HALF_READ
async def test_max_response_bytes_from_the_file_limits_the_adapter(
    tmp_path: Path, server: ProviderServer
) -> None:
    """The size limit an adapter takes in Python is a provider's key in the file too: the
    file's limit refuses an answer the default would have read."""
    text = f"""\
llm:
  providers:
    local: {{kind: openai, base_url: "{server.url}", region: in, max_response_bytes: 64}}
    roomy: {{kind: openai, base_url: "{server.url}", region: in}}
  stacks:
    small: {{providers: [local], retry: null}}
    default: {{providers: [roomy], retry: null}}
"""
    config = load_llm_config(write(tmp_path, text))
    assert config is not None
    built = build_stacks(config, {})
    try:
        assert (await built["default"].complete(simple_request())).text
        with pytest.raises(ProviderResponseError, match="larger than 64 bytes"):
            await built["small"].complete(simple_request())
    finally:
        await built.aclose()
