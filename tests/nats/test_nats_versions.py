"""Processes of one namespace must run one pipeline and one wire protocol: a process that
joins a namespace used by another pipeline, or by a genie whose wire differs, is refused at
connect with one line naming both (docs/scale-out.md, "One pipeline, one wire")."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import nats
import pytest
from nats.js.api import StreamConfig

import genie.policies
from genie import (
    BaseAgent,
    Context,
    Decision,
    DeclaredPolicy,
    Limits,
    Message,
    Policy,
    Risk,
    Runtime,
    handler,
)
from genie._errors import ConfigurationError
from genie.llm import ScriptedProvider
from genie.nats._declared import fingerprint
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport
from genie.nats._wire import WIRE_VERSION

from ..conftest import Ping, Pong
from .test_nats import server as server

ROOT = Path(__file__).parents[2]
VOLLEY = Path(__file__).parent / "nats_volley.yaml"
GENIE = Path(sys.executable).parent / "genie"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


class Echo(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.n))


def attached(
    url: str,
    ns: str,
    *,
    budget: int = 100,
    replace: bool = False,
    policies: tuple[Policy, ...] = (),
) -> NatsTransport:
    """A process of namespace ``ns`` whose pipeline is an echo agent under ``budget``."""
    transport = NatsTransport(url, NatsNames(ns), replace=replace)
    rt = Runtime(transport=transport, limits=Limits(correlation_budget=budget), policies=policies)
    rt.add(Echo("echo"))
    transport.attach(rt)
    return transport


async def test_a_process_of_another_pipeline_is_refused_naming_both(
    server: LocalNatsServer,
) -> None:
    first, same, other = (attached(server.url, "ver", budget=b) for b in (100, 100, 7))
    await first.connect()
    try:
        await same.connect()  # the same pipeline joins
        with pytest.raises(ConfigurationError) as caught:
            await other.connect()
        text = str(caught.value)
        assert "\n" not in text
        assert str(first.fingerprint) in text
        assert str(other.fingerprint) in text
        assert first.fingerprint != other.fingerprint
        assert "--namespace" in text
        assert "--replace" in text
    finally:
        for t in (first, same, other):
            await t.close()


async def test_a_process_of_another_wire_version_is_refused(server: LocalNatsServer) -> None:
    """A namespace an older genie made (wire 1: it ignores a record's ``ended`` timers, and
    a request would hang) refuses this genie, and names both versions."""
    names = NatsNames("older")
    nc = await nats.connect(server.url)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name=names.work, subjects=[names.agents], metadata={"genie_wire": "1"})
        )
    finally:
        await nc.close()
    transport = attached(server.url, "older")
    with pytest.raises(ConfigurationError) as caught:
        await transport.connect()
    text = str(caught.value)
    assert f"wire {WIRE_VERSION}" in text, text
    assert "wire 1" in text, text
    assert WIRE_VERSION >= 2  # the outcome record's ``ended`` list changed the wire


async def test_two_pipelines_starting_at_once_one_is_refused(server: LocalNatsServer) -> None:
    """No read-then-write: the stream's creation is the claim, so of two processes of
    different pipelines that connect at once on a new namespace exactly one joins."""
    for attempt in range(5):
        one, two = (attached(server.url, f"race{attempt}", budget=b) for b in (10, 20))
        refused: list[str] = []

        async def join(t: NatsTransport, refused: list[str] = refused) -> None:
            try:
                await t.connect()
            except ConfigurationError as exc:
                refused.append(str(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(join, one)
            tg.start_soon(join, two)
        assert len(refused) == 1, refused
        for t in (one, two):
            await t.close()


async def test_replace_takes_a_namespace_over_only_when_nothing_waits_in_it(
    server: LocalNatsServer,
) -> None:
    old = attached(server.url, "moved", budget=10)
    await old.connect()
    await old.js.publish(NatsNames("moved").agent("echo"), b"{}")  # a delivery of the old one
    await old.close()
    new = attached(server.url, "moved", budget=20, replace=True)
    with pytest.raises(ConfigurationError) as caught:
        await new.connect()
    assert "1 delivery" in str(caught.value), caught.value
    await new.close()

    nc = await nats.connect(server.url)
    try:
        await nc.jetstream().purge_stream(NatsNames("moved").work)
    finally:
        await nc.close()
    new = attached(server.url, "moved", budget=20, replace=True)
    await new.connect()  # nothing of the old version waits: the new one takes over
    again = attached(server.url, "moved", budget=10)
    try:
        with pytest.raises(ConfigurationError):
            await again.connect()  # the old version is now the other one
    finally:
        await again.close()
        await new.close()


def test_genie_worker_of_an_edited_file_is_refused_with_one_line(
    server: LocalNatsServer, tmp_path: Path
) -> None:
    edited = tmp_path / VOLLEY.name  # the same name: the same namespace
    edited.write_text(VOLLEY.read_text().replace("correlation_budget: 7", "correlation_budget: 8"))
    env = {**os.environ, "PYTHONPATH": os.fspath(ROOT)}
    first = subprocess.Popen(
        [os.fspath(GENIE), "worker", os.fspath(VOLLEY), "--nats", server.url],
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        assert first.stderr is not None
        assert b"genie worker: hosting" in first.stderr.readline()
        second = subprocess.run(
            [os.fspath(GENIE), "worker", os.fspath(edited), "--nats", server.url],
            capture_output=True,
            cwd=ROOT,
            env=env,
            timeout=60,
        )
    finally:
        first.kill()
        first.wait()
        assert first.stderr is not None
        first.stderr.close()
    err = second.stderr.decode()
    assert second.returncode == 2, err
    assert err.count("\n") == 1, err
    assert err.startswith("genie worker: "), err
    assert "nats_volley" in err, err
    assert "runs pipeline" in err, err


async def test_a_process_whose_policy_settings_differ_is_refused(server: LocalNatsServer) -> None:
    """Same agents, same policy names and classes: a worker whose role map differs would
    admit what the others deny, so it does not join."""
    roles = {"ping": ["teller"]}
    first, same, other = (
        attached(server.url, "settings", policies=(genie.policies.RBAC(r),))
        for r in (roles, roles, {"ping": ["teller", "guest"]})
    )
    await first.connect()
    try:
        await same.connect()
        with pytest.raises(ConfigurationError) as caught:
            await other.connect()
        assert str(other.fingerprint) in str(caught.value)
    finally:
        for t in (first, same, other):
            await t.close()


class Judge:
    name = "judge"

    async def classify(self, text: str) -> bool:
        return False


P = genie.policies
# Each shipped policy built twice alike, then with one setting that decides otherwise.
SETTINGS: dict[str, tuple[Callable[[], Policy], Callable[[], Policy]]] = {
    "MaxContentLength": (lambda: P.MaxContentLength(100), lambda: P.MaxContentLength(200)),
    "RequiredMetadata": (
        lambda: P.RequiredMetadata(["user_id"]),
        lambda: P.RequiredMetadata(["tenant_id"]),
    ),
    "RBAC": (
        lambda: P.RBAC({"ping": ["a", "b", "c", "d"]}),
        lambda: P.RBAC({"ping": ["a", "b", "c"]}),
    ),
    "Tenant": (lambda: P.Tenant(["ping"]), lambda: P.Tenant(["ping"], admin_bypass=True)),
    "RiskGate": (lambda: P.RiskGate(["ops", "cfo"]), lambda: P.RiskGate(["ops"])),
    "Consent": (
        lambda: P.Consent(P.InMemoryConsentLedger(), {"ping": "marketing"}),
        lambda: P.Consent(P.InMemoryConsentLedger(), {"ping": "analytics"}),
    ),
    "Explainability": (
        lambda: P.Explainability(["pong"]),
        lambda: P.Explainability(["pong"], rationale_field="why"),
    ),
    "JsonSchema": (
        lambda: P.JsonSchema({"ping": {"type": "object"}}),
        lambda: P.JsonSchema({"ping": {"type": "object", "required": ["n"]}}),
    ),
    "ClassificationCeiling": (
        lambda: P.ClassificationCeiling({"echo": "public"}),
        lambda: P.ClassificationCeiling({"echo": "secret"}),
    ),
    "DataResidency": (lambda: P.DataResidency("in"), lambda: P.DataResidency("eu")),
    "PromptInjection": (
        lambda: P.PromptInjection(["open sesame"]),
        lambda: P.PromptInjection(["abracadabra"]),
    ),
    "ClassifierPolicy": (
        lambda: P.ClassifierPolicy(Judge()),
        lambda: P.ClassifierPolicy(Judge(), fail="open"),
    ),
    "ClassifierPolicy, its model's instructions": (
        lambda: P.ClassifierPolicy(P.ModelClassifier(ScriptedProvider())),
        lambda: P.ClassifierPolicy(P.ModelClassifier(ScriptedProvider(), instructions="Judge.")),
    ),
    "ClassifierPolicy, its model": (
        lambda: P.ClassifierPolicy(P.ModelClassifier(ScriptedProvider(), model="small")),
        lambda: P.ClassifierPolicy(P.ModelClassifier(ScriptedProvider(), model="large")),
    ),
    "Rule": (
        lambda: P.Rule("big", "payload.n > 5"),
        lambda: P.Rule("big", "payload.n > 50"),
    ),
}


def runtime_of(*policies: Policy, risk: Risk = Risk.LOW) -> Runtime:
    rt = Runtime(policies=policies)
    echo = Echo("echo")
    echo.risk = risk
    rt.add(echo)
    return rt


def test_every_shipped_policy_declares_its_settings() -> None:
    """A policy class genie ships is compared by its settings: none left to name alone."""
    shipped = [
        cls
        for name in P.__all__
        if inspect.isclass(cls := getattr(P, name)) and callable(getattr(cls, "evaluate", None))
    ]
    detectors = (P.PIIBlock(), P.SecretsBlock(), P.SqlBlock())
    declared = {name.split(",")[0] for name in SETTINGS}
    assert {c.__name__ for c in shipped} == {type(d).__name__ for d in detectors} | declared
    for policy in (*detectors, *(alike() for alike, _ in SETTINGS.values())):
        assert isinstance(policy, DeclaredPolicy), policy


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_setting_that_decides_otherwise_changes_the_fingerprint(name: str) -> None:
    alike, other = SETTINGS[name]
    assert fingerprint(runtime_of(alike())) == fingerprint(runtime_of(alike()))
    assert fingerprint(runtime_of(alike())) != fingerprint(runtime_of(other()))


def test_an_agents_risk_changes_the_fingerprint() -> None:
    """The risk gate reads the agents' risks, which a pipeline file may set per agent."""
    gate = P.RiskGate(["ops"])
    assert fingerprint(runtime_of(gate)) != fingerprint(runtime_of(gate, risk=Risk.HIGH))


def test_the_fingerprint_is_the_same_in_every_process() -> None:
    """Sets in the settings are hashed in an order no process's string hashing decides."""
    script = (
        "from genie.policies import load_policy_file; "
        "from tests.nats.test_nats_versions import SETTINGS, fingerprint, runtime_of; "
        "shipped = load_policy_file('config/policies/ai-policy.yaml').policies; "
        "print(fingerprint(runtime_of(*shipped, *(a() for a, _ in SETTINGS.values()))))"
    )
    printed = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": os.fspath(ROOT)},
            check=True,
            timeout=60,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(printed) == 1, printed


class SettingsOfItsOwn:
    """A user's policy whose ``settings`` attribute holds a set: its order in JSON would
    be each process's own."""

    name = "own"

    def __init__(self) -> None:
        self.settings = {"roles": {"teller", "guest"}}

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        return Decision.ALLOW


def test_settings_that_are_not_json_data_are_refused_naming_the_policy() -> None:
    with pytest.raises(ConfigurationError) as caught:
        fingerprint(runtime_of(SettingsOfItsOwn()))
    assert "policy 'own' (SettingsOfItsOwn): its settings are not JSON data" in str(caught.value)
