"""Simulations: many seeded sessions of a pipeline, with injected faults, on virtual time.

report = simulate("config/pipelines/finance.yaml", sessions=1000, concurrency=8, seed=7,
                  faults=["latency:*=lognormal,mean=200ms"])
print(report.text())

Importing this package does not load matplotlib: only a plot does (``pip install
'genie-bus[sim]'``). Virtual time is an asyncio loop of its own (``_virtual``). See
docs/simulation.md.
"""

from typing import TYPE_CHECKING

from .._base.lazy import lazy_names as _lazy_names

if TYPE_CHECKING:
    from ._faults import Fault as Fault
    from ._faults import FaultError as FaultError
    from ._faults import InjectedFailure as InjectedFailure
    from ._faults import Latency as Latency
    from ._faults import LatencyDistribution as LatencyDistribution
    from ._faults import parse_fault as parse_fault
    from ._report import AgentFigures as AgentFigures
    from ._report import Distribution as Distribution
    from ._report import Outcomes as Outcomes
    from ._report import Report as Report
    from ._run import OUTCOMES as OUTCOMES
    from ._run import Progress as Progress
    from ._run import simulate as simulate
    from ._settings import Settings as Settings
    from ._settings import SimulationError as SimulationError

# Each name from its module when first asked for: ``genie``'s command line reads this package
# for ``genie simulate``'s options, and a ``genie run`` should not load a simulation.
_LAZY = {
    "LatencyDistribution": "._faults",
    "Fault": "._faults",
    "FaultError": "._faults",
    "InjectedFailure": "._faults",
    "Latency": "._faults",
    "parse_fault": "._faults",
    "AgentFigures": "._report",
    "Distribution": "._report",
    "Outcomes": "._report",
    "Report": "._report",
    "OUTCOMES": "._run",
    "Progress": "._run",
    "simulate": "._run",
    "Settings": "._settings",
    "SimulationError": "._settings",
}
__getattr__ = _lazy_names(__name__, _LAZY)

__all__ = [
    "OUTCOMES",
    "AgentFigures",
    "Distribution",
    "Fault",
    "FaultError",
    "InjectedFailure",
    "Latency",
    "LatencyDistribution",
    "Outcomes",
    "Progress",
    "Report",
    "Settings",
    "SimulationError",
    "parse_fault",
    "simulate",
]
