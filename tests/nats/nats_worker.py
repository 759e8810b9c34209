"""``genie worker`` that kills itself (SIGKILL, as a crash) at a chosen point: the NTH
delivery of AGENT reaching STEP (handled: after the handler's side effects; charged: after
its outputs are charged to the correlation budget; outcome: after the outcome record;
published: after the outputs, before the ack; sending: a send from outside a handler, such
as a person's answer to the desk, before it goes out). ``-`` for STEP never dies.

    python tests/nats/nats_worker.py STEP AGENT NTH <genie worker arguments>
"""

from __future__ import annotations

import os
import signal
import sys

from genie._cli.main import build_parser
from genie._runtime.transport import Delivery
from genie.nats._cli import _worker


def main() -> int:
    step, agent, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    args = build_parser().parse_args(["worker", *sys.argv[4:]])
    seen = 0

    def die_at(at: str, delivery: Delivery) -> None:
        nonlocal seen
        if at == step and delivery.recipient == agent:
            seen += 1
            if seen == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    return _worker(args, die_at)


if __name__ == "__main__":
    raise SystemExit(main())
