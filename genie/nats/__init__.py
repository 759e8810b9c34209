"""Scale-out on NATS JetStream (docs/scale-out.md): the transport, its names, the consent
ledger and the memory bucket every process shares, a local server for trying it, and the
payload of the dead letter of a delivery no worker could read. Needs the ``nats`` extra
(``pip install 'genie-bus[nats]'``).

Each name is imported when first asked for: every ``genie`` command reads ``genie.nats._cli``
for its ``--nats`` options, and a run without ``--nats`` does not pay for the transport."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._base.lazy import lazy_names as _lazy_names

if TYPE_CHECKING:
    from ._consent import NatsConsentLedger
    from ._memory import NatsMemory
    from ._replay import Undecodable
    from ._server import LocalNatsServer
    from ._transport import NatsNames, NatsTransport

_LAZY = {
    "LocalNatsServer": "._server",
    "NatsConsentLedger": "._consent",
    "NatsMemory": "._memory",
    "NatsNames": "._transport",
    "NatsTransport": "._transport",
    "Undecodable": "._replay",
}


__getattr__ = _lazy_names(__name__, _LAZY)


__all__ = [
    "LocalNatsServer",
    "NatsConsentLedger",
    "NatsMemory",
    "NatsNames",
    "NatsTransport",
    "Undecodable",
]
