"""The catalogue: registration, lookup, parameters, and the installed entry point."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genie import (
    AgentSpec,
    BaseAgent,
    Catalogue,
    ConfigurationError,
    Context,
    Message,
    Payload,
    handler,
)
from genie._agent.catalogue import import_object, spec_for
from genie._cli.catalogue_page import catalogue_markdown

from ..conftest import Ping, Pong


class Tunable(BaseAgent):
    """Answers pings, scaled.

    More text that the summary leaves out."""

    produces = (Pong,)

    def __init__(self, id: str, *, factor: int = 1, label: str) -> None:
        super().__init__(id)
        if factor < 1:
            raise ValueError("factor must be at least 1")
        self.factor = factor
        self.label = label

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.n * self.factor))


def test_installed_catalogue_has_the_finance_flow() -> None:
    catalogue = Catalogue.installed()
    for name in ("financial_supervisor", "ingestor", "analyzer", "reporter", "fallback"):
        assert name in catalogue
    assert catalogue.get("forecaster").domain == "finance"


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"'forcaster' is not in the catalogue \(did you mean 'forecaster'\?\)",
    ):
        Catalogue.installed().get("forcaster")


def test_spec_reads_the_class() -> None:
    spec = spec_for(Tunable, name="tunable", domain="test")
    assert isinstance(spec, AgentSpec)
    assert spec.summary == "Answers pings, scaled."
    assert spec.consumes == (Ping,)
    assert spec.produces == (Pong,)
    assert spec.describe()["params"] == {
        "factor": {"type": "int", "required": False, "default": 1},
        "label": {"type": "str", "required": True, "default": None},
    }


def test_params_are_validated_then_passed() -> None:
    spec = spec_for(Tunable)
    agent = spec.create("t", {"factor": "3", "label": "x"})
    assert isinstance(agent, Tunable)
    assert (agent.factor, agent.label) == (3, "x")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        spec.create("t", {"label": "x", "factr": 2})
    with pytest.raises(ValidationError, match="label"):
        spec.create("t", {})
    with pytest.raises(ConfigurationError, match="factor must be at least 1"):
        spec.create("t", {"label": "x", "factor": 0})


def test_a_name_is_taken_once() -> None:
    catalogue = Catalogue()
    catalogue.add(Tunable, name="t")
    catalogue.add(Tunable, name="t")  # the same class again is harmless
    with pytest.raises(ConfigurationError, match="catalogue name 't' is taken"):
        catalogue.add(BaseAgent, name="t")
    assert len(catalogue) == 1


def test_an_agent_added_by_reference_is_imported_when_first_asked_for() -> None:
    here = f"{__name__}:Tunable"
    catalogue = Catalogue()
    catalogue.add(here, name="t", domain="tests")
    catalogue.add(here, name="t", domain="tests")  # the same reference again is harmless
    assert "t" in catalogue
    assert len(catalogue) == 1
    assert catalogue.suggest("tt") == " (did you mean 't'?)"
    spec = catalogue.get("t")
    assert spec.factory is Tunable
    assert spec.domain == "tests"
    assert catalogue.get("t") is spec
    catalogue.add(Tunable, name="t")  # the class the reference named: still the same agent
    with pytest.raises(ConfigurationError, match="catalogue name 't' is taken"):
        catalogue.add(f"{__name__}:Other", name="t")
    with pytest.raises(ConfigurationError, match="needs a name"):
        catalogue.add(here)


def test_a_broken_reference_fails_when_used_naming_it() -> None:
    catalogue = Catalogue()
    catalogue.add("no_such_module_here:Agent", name="ghost")
    catalogue.add(f"{__name__}:Ping", name="not_agent")
    assert len(catalogue) == 2  # nothing imported yet
    with pytest.raises(ConfigurationError, match="no_such_module_here"):
        catalogue.get("ghost")
    with pytest.raises(ConfigurationError, match="is not an agent class"):
        catalogue.get("not_agent")


def test_the_installed_catalogue_imports_agents_only_when_listed() -> None:
    catalogue = Catalogue.installed()
    names = {spec.name for spec in catalogue}  # listing imports and checks every agent
    assert len(names) == len(catalogue) >= 72
    for spec in catalogue:
        assert spec.source.startswith(f"genie_agents.{spec.domain}."), spec.source


def test_not_an_agent_class() -> None:
    with pytest.raises(ConfigurationError, match="is not an agent class"):
        spec_for(int)  # type: ignore[arg-type]


def test_import_object_errors() -> None:
    assert import_object("tests.agent.test_catalogue:Tunable") is Tunable
    with pytest.raises(ConfigurationError, match="not of the form module:Class"):
        import_object("tests.agent.test_catalogue")
    with pytest.raises(ConfigurationError, match="cannot import module 'no_such_mod'"):
        import_object("no_such_mod:X")
    with pytest.raises(ConfigurationError, match="has no attribute 'Nope'"):
        import_object("tests.agent.test_catalogue:Nope")


class Order(Payload):
    """A payload with every shape the page renders."""

    message_type = "order"
    item: str
    quantity: int = 1
    side: Literal["buy", "sell"] = "buy"
    lines: tuple[Line, ...] = ()
    tags: dict[str, float] = Field(default_factory=dict)
    span: tuple[int, str] | None = None
    note: str = Field("", description="free text | shown to the desk")


class Line(BaseModel):
    model_config = ConfigDict(frozen=True)
    sku: str


class OrderDesk(BaseAgent):
    """Takes orders."""

    produces = (Pong,)

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.quantity))


Order.model_rebuild()


def test_describe_carries_each_payload_schema() -> None:
    schemas = spec_for(OrderDesk).describe()["schemas"]
    assert schemas == {"order": Order.model_json_schema(), "pong": Pong.model_json_schema()}
    assert schemas["order"]["required"] == ["item"]


def test_the_page_shows_each_payloads_fields() -> None:
    catalogue = Catalogue()
    catalogue.add(OrderDesk, name="order_desk", domain="shop")
    page = catalogue_markdown(catalogue)
    assert "| `order_desk` | low | [order](#order) | [pong](#pong) |  | Takes orders. |" in page
    order = page.split("### order\n")[1].split("###")[0]
    assert order.splitlines()[1:] == [
        "| field | type | default | notes |",
        "| --- | --- | --- | --- |",
        "| `item` | string | required |  |",
        "| `quantity` | integer | `1` |  |",
        '| `side` | one of `"buy"`, `"sell"` | `"buy"` |  |',
        "| `lines` | list of [Line](#line) | `[]` |  |",
        "| `tags` | map of string to number | optional |  |",
        "| `span` | [integer, string] or null | `null` |  |",
        '| `note` | string | `""` | free text / shown to the desk |',
        "",
    ]
    assert "### Line\n\n| field | type | default | notes |\n| --- | --- | --- | --- |\n" in page
    assert "| `sku` | string | required |  |" in page


def test_every_shipped_schema_requires_what_the_model_requires() -> None:
    """The schemas a caller reads are the ones the runtime enforces: an empty payload is refused
    for exactly the fields the schema calls required."""
    models = {p.message_type: p for spec in Catalogue.installed() for p in spec.consumes}
    described = [spec.describe() for spec in Catalogue.installed()]
    schemas = {t: s for d in described for t, s in d["schemas"].items()}
    assert set(models) <= set(schemas)
    for message_type, model in models.items():
        required = set(schemas[message_type].get("required", ()))
        try:
            model.model_validate({})
        except ValidationError as exc:
            missing = {e["loc"][0] for e in exc.errors() if e["type"] == "missing"}
        else:
            missing = set()
        assert missing == required, message_type


def test_a_parameter_with_choices_names_them() -> None:
    described = Catalogue.installed().get("reporter").describe()["params"]
    assert described == {
        "format": {"type": "Literal['text', 'go']", "required": False, "default": "text"}
    }


class Either(BaseAgent):
    """Answers pings and pongs alike."""

    produces = (Pong,)

    @handler
    async def on_either(self, payload: Ping | Pong, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.n))


def test_a_union_handler_consumes_each_member() -> None:
    spec = spec_for(Either, name="either", domain="test")
    assert spec.consumes == (Ping, Pong)
    described = spec.describe()
    assert described["consumes"] == ["ping", "pong"]
    assert set(described["schemas"]) == {"ping", "pong"}
