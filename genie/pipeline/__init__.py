"""YAML pipelines: agents from the catalogue wired by routes, gathers, workflows, governance
and limits.

pipeline = load_pipeline("finance")  # a shipped pipeline by name, or a file's path
result = anyio.run(pipeline.run)
print(result.output.payload.text)
"""

from ._gather import Gathered as Gathered
from ._gather import GatherTimeoutError as GatherTimeoutError
from ._graph import Edge as Edge
from ._graph import Graph as Graph
from ._load import load_pipeline as load_pipeline
from ._run import InputError as InputError
from ._run import Pipeline as Pipeline
from ._run import RunResult as RunResult
from ._tally import Denial as Denial
from ._tally import RunStatistics as RunStatistics
from ._workflow import WorkflowEvent as WorkflowEvent
from ._workflow import WorkflowOutcome as WorkflowOutcome

__all__ = [
    "Denial",
    "Edge",
    "GatherTimeoutError",
    "Gathered",
    "Graph",
    "InputError",
    "Pipeline",
    "RunResult",
    "RunStatistics",
    "WorkflowEvent",
    "WorkflowOutcome",
    "load_pipeline",
]
