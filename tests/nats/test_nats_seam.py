"""The seam between the runtime and the NATS transport (issue 34): ``genie.nats`` reaches the
runtime only through the host the runtime binds it to (``genie/_runtime/host.py``), and
``NatsTransport`` is a peer of ``LocalTransport``, not its subclass."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from genie import Runtime
from genie._errors import ConfigurationError
from genie._runtime.host import RuntimeHost, TransportHost
from genie._runtime.local.transport import LocalTransport
from genie._runtime.transport import Transport
from genie.nats._transport import NatsNames, NatsTransport

from ..conftest import Echo

NATS = Path(__file__).parents[2] / "genie" / "nats"
# Names the NATS package gives the runtime, or anything it holds of it.
RUNTIME_NAMES = {"rt", "runtime", "_rt", "host", "_host"}


def private_reads(source: str) -> list[str]:
    """Each ``<runtime>._name`` the source reads, where ``<runtime>`` is a name (or an
    attribute) the package gives the runtime or its host."""
    found = re.findall(r"\b(?:rt|runtime)\._\w+|\._rt\._\w+", source)
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__"):
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
        if name in RUNTIME_NAMES:
            found.append(ast.unparse(node))
    return found


def test_no_module_of_the_nats_package_reads_the_runtimes_privates() -> None:
    modules = sorted(NATS.glob("*.py"))
    assert len(modules) > 10  # the package is where this test looks
    reads = {m.name: private_reads(m.read_text()) for m in modules}
    assert {name: found for name, found in reads.items() if found} == {}


def test_a_correlation_is_a_handle_the_package_only_passes_back() -> None:
    """What a correlation holds (its waiters, its counts) is the runtime's to read and write."""
    for module in sorted(NATS.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert node.value.id != "corr", f"{module.name}: {ast.unparse(node)}"


def test_the_check_sees_a_private_read() -> None:
    assert private_reads("rt._ledger.closed(corr)\n") != []
    assert private_reads("self._rt._correlator.get(cid)\n") != []
    assert private_reads("self._host._ledger\n") != []
    assert private_reads("rt.add_observer(x)\nhost.left(corr)\n") == []


def test_nats_transport_is_a_peer_of_local_transport() -> None:
    assert not issubclass(NatsTransport, LocalTransport)
    assert not issubclass(LocalTransport, NatsTransport)
    # Every call of the Transport protocol is its own, not inherited.
    calls = [name for name in vars(Transport) if not name.startswith("_")]
    assert "put" in calls
    assert [name for name in calls if name not in vars(NatsTransport)] == []


def test_the_runtime_binds_its_host_to_a_transport_between_processes() -> None:
    transport = NatsTransport("nats://127.0.0.1:1", NatsNames("seam"), hosted=["echo"])
    rt = Runtime([Echo("echo")], transport=transport)  # never connected
    host: TransportHost = transport._served()
    assert isinstance(host, RuntimeHost)
    transport.attach(rt)  # hosts "echo": the runtime attached its agents


def test_the_runtime_hands_its_agents_to_the_transport() -> None:
    """The registry is the runtime's (``attach_agents``): an agent added later is there too,
    and a hosted id that is no agent is refused when attached."""
    transport = NatsTransport("nats://127.0.0.1:1", NatsNames("seam"), hosted=["late"])
    rt = Runtime([Echo("echo")], transport=transport)
    with pytest.raises(ConfigurationError, match=r"cannot host agent 'late'.*\(it has echo\)"):
        transport.attach(rt)
    rt.add(Echo("late"))
    transport.attach(rt)


def test_a_transport_no_runtime_was_given_cannot_be_attached() -> None:
    transport = NatsTransport("nats://127.0.0.1:1", NatsNames("seam"), hosted=["echo"])
    with pytest.raises(ConfigurationError, match=r"Runtime\(transport=\.\.\.\)"):
        transport.attach(Runtime([Echo("echo")]))
