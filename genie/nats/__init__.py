"""Scale-out on NATS JetStream (docs/scale-out.md): the transport, its names, the consent
ledger and the memory bucket every process shares, a local server for trying it, and the
payload of the dead letter of a delivery no worker could read. Needs the ``nats`` extra
(``pip install 'genie-bus[nats]'``)."""

from ._consent import NatsConsentLedger
from ._memory import NatsMemory
from ._replay import Undecodable
from ._server import LocalNatsServer
from ._transport import NatsNames, NatsTransport

__all__ = [
    "LocalNatsServer",
    "NatsConsentLedger",
    "NatsMemory",
    "NatsNames",
    "NatsTransport",
    "Undecodable",
]
