"""Scale-out on NATS JetStream (docs/scale-out.md): the transport, its names, the consent
ledger every process shares, a local server for trying it, and the payload of the dead letter
of a delivery no worker could read. Needs the ``nats`` extra
(``pip install 'genie-bus[nats]'``)."""

from ._nats import NatsNames, NatsTransport
from ._nats_consent import NatsConsentLedger
from ._nats_replay import Undecodable
from ._nats_server import LocalNatsServer

__all__ = ["LocalNatsServer", "NatsConsentLedger", "NatsNames", "NatsTransport", "Undecodable"]
