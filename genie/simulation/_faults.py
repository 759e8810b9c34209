"""Faults a simulation injects: failures, latency, mailbox capacity and policy denials.

A fault is written ``KIND:AGENT=VALUE[,key=value...]`` (``--fault`` on the command line):

- ``error:recommender=0.1``: a tenth of the agent's handler calls raise ``InjectedFailure``;
- ``latency:*=lognormal,mean=200ms,sigma=0.5``: each handler call first waits a drawn latency
  (``fixed``, ``uniform`` with ``low``/``high``, ``exponential`` or ``lognormal``; a bare
  duration such as ``latency:reporter=50ms`` is fixed);
- ``capacity:reporter=4[,overflow=shed]``: the agent's mailbox holds 4 messages;
- ``deny:forecaster=0.05``: a policy denies 5 % of the deliveries to the agent;
- ``answer:claim_adjudicator=exponential,mean=2h,approve=0.9``: a person answers each
  approval the agent asks after a drawn delay (the distributions of ``latency``), approving
  90 % of them and rejecting the rest (``approve`` defaults to 1). Without it nobody answers.

``AGENT`` is an agent id of the pipeline, or ``*`` for every agent that has no fault of the
same kind of its own. Every draw comes from a stream of its own, seeded by the run's seed,
the kind and the agent (``random.Random(f"{seed}:{kind}:{agent}")``): the n-th handler call
of an agent fails exactly when the n-th draw of its error stream is below the rate.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .._base.resilience import at_least
from .._errors import ConfigurationError, did_you_mean

__all__ = [
    "DISTRIBUTIONS",
    "Distribution",
    "LatencyDistribution",
    "Fault",
    "FaultError",
    "InjectedFailure",
    "Latency",
    "parse_fault",
]

Distribution = Literal["fixed", "uniform", "exponential", "lognormal"]
LatencyDistribution = Distribution  # its name in ``genie.simulation``, beside the report's
DISTRIBUTIONS: tuple[Distribution, ...] = ("fixed", "uniform", "exponential", "lognormal")
FaultKind = Literal["error", "latency", "capacity", "deny", "answer"]
KINDS: tuple[FaultKind, ...] = ("error", "latency", "capacity", "deny", "answer")
_FORMS = {
    "error": "error:AGENT=RATE",
    "latency": "latency:AGENT=DISTRIBUTION,mean=DURATION[,sigma=S][,low=D,high=D]",
    "capacity": "capacity:AGENT=N[,overflow=shed|overdraft]",
    "deny": "deny:AGENT=FRACTION",
    "answer": "answer:AGENT=DISTRIBUTION,mean=DURATION[,sigma=S][,low=D,high=D][,approve=P]",
}


class FaultError(ConfigurationError):
    """A fault spec that does not parse, or names an agent the pipeline lacks."""


class InjectedFailure(RuntimeError):
    """The exception an ``error`` fault raises in place of the handler."""


class Latency:
    """Seconds drawn from a distribution with the given ``mean``: ``fixed``; ``uniform`` on
    [low, high] (default [0, 2*mean]); ``exponential``; ``lognormal`` with shape ``sigma``
    (mu chosen so that the mean is ``mean``)."""

    def __init__(
        self,
        distribution: Distribution,
        mean: float,
        rng: random.Random,
        *,
        sigma: float = 0.5,
        low: float | None = None,
        high: float | None = None,
    ) -> None:
        if mean < 0 or sigma <= 0:
            raise ValueError("latency: mean must be >= 0 and sigma > 0")
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"latency: unknown distribution {distribution!r}")
        self.distribution = distribution
        self.mean = mean
        self.sigma = sigma
        self.low = 0.0 if low is None else low
        self.high = 2 * mean if high is None else high
        if not 0 <= self.low <= self.high:
            raise ValueError("latency: need 0 <= low <= high")
        self._rng = rng
        try:
            self._mu = math.log(mean) - sigma**2 / 2 if mean > 0 else 0.0
        except OverflowError:  # its square is past a float: no mu gives the mean
            raise ValueError(f"latency: sigma {sigma} is too large") from None

    def draw(self) -> float:
        if self.distribution == "fixed" or (self.mean == 0 and self.distribution != "uniform"):
            return self.mean
        if self.distribution == "uniform":
            return self._rng.uniform(self.low, self.high)
        if self.distribution == "exponential":
            return self._rng.expovariate(1 / self.mean)
        return self._rng.lognormvariate(self._mu, self.sigma)


@dataclass(frozen=True)
class Fault:
    """One parsed ``--fault``: ``kind`` applied to ``agent`` (``*``: every agent)."""

    spec: str
    kind: FaultKind
    agent: str
    rate: float = 0.0  # error: failure rate; deny: fraction denied; answer: fraction approved
    distribution: Distribution = "fixed"
    mean: float = 0.0
    sigma: float = 0.5
    low: float | None = None
    high: float | None = None
    capacity: int = 0
    overflow: Literal["overdraft", "shed"] | None = None

    def latency(self, rng: random.Random) -> Latency:
        return Latency(
            self.distribution, self.mean, rng, sigma=self.sigma, low=self.low, high=self.high
        )


def parse_fault(spec: str) -> Fault:
    """Parse ``KIND:AGENT=VALUE[,key=value...]``; raises ``FaultError`` naming the problem."""
    kind, colon, rest = spec.partition(":")
    agent, equals, value = rest.partition("=")
    kind, agent = kind.strip(), agent.strip()
    if not colon or not equals or not agent or not value.strip():
        raise FaultError(
            f"fault {spec!r} does not parse: expected KIND:AGENT=VALUE, one of "
            + "; ".join(_FORMS.values())
        )
    if kind not in KINDS:
        raise FaultError(
            f"fault {spec!r}: unknown kind {kind!r}{did_you_mean(kind, KINDS)} "
            f"(kinds: {', '.join(KINDS)})"
        )
    head, *rest_parts = (p.strip() for p in value.split(","))
    options: dict[str, str] = {}
    for part in rest_parts:
        key, sep, val = part.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise FaultError(f"fault {spec!r}: {part!r} is not key=value (form: {_FORMS[kind]})")
        options[key.strip()] = val.strip()
    try:
        return _build(spec, kind, agent, head, options)
    except ValueError as exc:
        raise FaultError(f"fault {spec!r}: {exc} (form: {_FORMS[kind]})") from None


def _build(spec: str, kind: FaultKind, agent: str, head: str, options: dict[str, str]) -> Fault:
    drawn = {"mean", "sigma", "low", "high"}
    allowed = {"latency": drawn, "answer": drawn | {"approve"}, "capacity": {"overflow"}}
    unknown = sorted(set(options) - allowed.get(kind, set()))
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r}{did_you_mean(unknown[0], allowed.get(kind, ()))}"
        )
    if kind in ("error", "deny"):
        return Fault(
            spec, kind, agent, rate=_fraction(head, "rate" if kind == "error" else "fraction")
        )
    if kind == "answer":
        approve = _fraction(options.pop("approve", "1"), "approve", option=True)
        after = _latency(spec, agent, head, options)
        return dataclasses.replace(after, kind="answer", rate=approve)
    if kind == "capacity":
        if not head.isdecimal() or int(head) < 1:  # what int() reads: "²" is a digit, no number
            raise ValueError(f"capacity {head!r} is not a whole number >= 1")
        overflow = options.get("overflow")
        if overflow not in (None, "shed", "overdraft"):
            raise ValueError(f"overflow {overflow!r} is not shed or overdraft")
        return Fault(spec, kind, agent, capacity=int(head), overflow=overflow)  # type: ignore[arg-type]
    return _latency(spec, agent, head, options)


def _latency(spec: str, agent: str, head: str, options: dict[str, str]) -> Fault:
    if head in DISTRIBUTIONS:
        distribution: Distribution = head
    elif head[:1].isdigit():
        if "mean" in options:  # the bare duration is the mean: one of the two was dropped
            raise ValueError(f"the mean is given twice, as {head} and as mean={options['mean']}")
        distribution, options = "fixed", {**options, "mean": head}
    else:
        raise ValueError(
            f"unknown distribution {head!r}{did_you_mean(head, DISTRIBUTIONS)} "
            f"({', '.join(DISTRIBUTIONS)})"
        )
    # An option the distribution does not draw with was silently ignored: a fixed latency
    # "with sigma 2" ran as fixed.
    for name, only in (("sigma", "lognormal"), ("low", "uniform"), ("high", "uniform")):
        if name in options and distribution != only:
            raise ValueError(f"{name} is for {only} latency, not {distribution}")
    low = _duration(options["low"]) if "low" in options else None
    high = _duration(options["high"]) if "high" in options else None
    if "mean" in options:
        mean = _duration(options["mean"])
    elif distribution == "uniform" and low is not None and high is not None:
        mean = (low + high) / 2
    else:
        need = "mean (or low and high)" if distribution == "uniform" else "mean"
        raise ValueError(f"{distribution} latency needs {need}")
    if (
        distribution == "uniform"
        and low is not None
        and high is not None
        and mean * 2 != low + high
    ):
        raise ValueError("give uniform either mean or low and high, not both")
    sigma = _number(options["sigma"], "sigma") if "sigma" in options else 0.5
    fault = Fault(
        spec,
        "latency",
        agent,
        distribution=distribution,
        mean=mean,
        sigma=sigma,
        low=low,
        high=high,
    )
    fault.latency(random.Random(0))  # the checks of Latency: sigma > 0, low <= high
    return fault


def _fraction(text: str, what: str, *, option: bool = False) -> float:
    """A probability, ``what`` by name (an option's value out of range names the option)."""
    value = _number(text, what)
    if not 0 <= value <= 1:
        raise ValueError(f"{what + ' ' if option else ''}{text} is not between 0 and 1")
    return value


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a finite number")
    return value


def _duration(text: str) -> float:
    from ..pipeline._schema import _seconds

    seconds = float(_seconds(text))
    if seconds < 0:
        raise ValueError(f"duration {text!r} is negative")
    return seconds


def checked(fault: Fault) -> Fault:
    """``fault`` when it holds what a spec would parse to; a ``Fault`` built in code is
    refused here, naming the field, rather than ignored (an unknown kind), run as something
    else (a rate of 5) or failing inside the run."""
    problem = _problem(fault)
    if problem is not None:
        raise FaultError(f"fault {fault.spec!r}: {problem}")
    return fault


def _problem(fault: Fault) -> str | None:
    if fault.kind not in KINDS:
        return f"unknown kind {fault.kind!r} (kinds: {', '.join(KINDS)})"
    if not isinstance(fault.agent, str) or not fault.agent:
        return f"agent must be an agent's id or '*', not {fault.agent!r}"
    if fault.kind in ("error", "deny", "answer") and not (
        at_least(fault.rate, 0) and fault.rate <= 1
    ):
        return f"rate must be a number between 0 and 1, not {fault.rate!r}"
    if fault.kind == "capacity":
        if not (isinstance(fault.capacity, int) and at_least(fault.capacity, 1)):
            return f"capacity must be a whole number >= 1, not {fault.capacity!r}"
        if fault.overflow not in (None, "shed", "overdraft"):
            return f"overflow must be 'shed', 'overdraft' or None, not {fault.overflow!r}"
    if fault.kind in ("latency", "answer"):
        for name in ("mean", "sigma", "low", "high"):
            value = getattr(fault, name)
            if (value is not None or name in ("mean", "sigma")) and not (
                at_least(value, 0) and math.isfinite(value)
            ):
                return f"{name} must be a finite number of seconds, 0 or more, not {value!r}"
        try:
            fault.latency(random.Random(0))  # the checks of Latency: sigma > 0, low <= high
        except ValueError as exc:
            return str(exc)
    return None


def resolve(
    faults: Iterable[Fault | str],
    agents: Sequence[str],
    gathers: Iterable[str],
    pipeline: str,
    workflows: Sequence[str] = (),
) -> dict[tuple[FaultKind, str], Fault]:
    """The fault of each kind for each agent: an agent's own fault wins over ``*``. A
    workflow asks for approvals as an agent does: ``answer`` faults apply to it too.

    Raises ``FaultError`` for an agent the pipeline lacks and for the same kind given twice
    for one agent.
    """
    parsed = [checked(f) if isinstance(f, Fault) else parse_fault(f) for f in faults]
    gather_ids = set(gathers)
    askers = [*agents, *workflows]
    given: dict[tuple[FaultKind, str], Fault] = {}
    for fault in parsed:
        targets = askers if fault.kind == "answer" else agents
        if fault.agent != "*" and fault.agent not in targets:
            if fault.agent in gather_ids:
                what = f"{fault.agent!r} is a gather; faults apply to agents"
            elif fault.agent in workflows:
                what = f"{fault.agent!r} is a workflow; of the faults only answer applies to it"
            else:
                what = (
                    f"pipeline {pipeline!r} has no agent {fault.agent!r}"
                    f"{did_you_mean(fault.agent, targets)}"
                )
            raise FaultError(f"fault {fault.spec!r}: {what}")
        taken = given.get((fault.kind, fault.agent))
        if taken is not None:
            raise FaultError(
                f"fault {fault.spec!r}: {fault.kind} for {fault.agent!r} is already given by "
                f"{taken.spec!r}"
            )
        given[fault.kind, fault.agent] = fault
    out: dict[tuple[FaultKind, str], Fault] = {}
    for kind in KINDS:
        for agent in askers if kind == "answer" else agents:
            chosen = given.get((kind, agent)) or given.get((kind, "*"))
            if chosen is not None:
                out[kind, agent] = chosen
    return out


def seed_text(seed: int) -> bool:
    """Whether Python writes ``seed`` as text, as every stream is seeded (``f"{seed}:..."``):
    not past ``sys.get_int_max_str_digits()`` digits."""
    try:
        str(seed)
    except ValueError:
        return False
    return True


def stream(seed: int, kind: str, agent: str) -> random.Random:
    """The random stream of one kind of fault at one agent (documented: tests rely on it)."""
    return random.Random(f"{seed}:{kind}:{agent}")


def by_agent(plan: Mapping[tuple[FaultKind, str], Fault], kind: FaultKind) -> dict[str, Fault]:
    return {agent: fault for (k, agent), fault in plan.items() if k == kind}
