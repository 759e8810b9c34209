"""What a process declares to the other processes of its namespace: the fingerprint of the
pipeline it runs (docs/scale-out.md, "One pipeline, one wire")."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from .._agent.agent import agent_risk
from .._errors import ConfigurationError
from .._runtime.policy import DeclaredPolicy

if TYPE_CHECKING:
    from .._runtime.policy import Policy
    from .._runtime.runtime import Runtime

__all__ = ["fingerprint"]


def _named(obj: object) -> str:
    # The class's name without its module: a module run as a script is ``__main__`` in
    # that process and its own name in the others, for the very same class.
    return type(obj).__qualname__


def _policy(policy: Policy) -> list[object]:
    # A policy that declares its settings is compared by them too; one that does not (a
    # user's) by its name and class alone.
    if not isinstance(policy, DeclaredPolicy):
        return [policy.name, _named(policy), None]
    try:  # as JSON data, and only so: a value's str() may differ from process to process
        settings = json.dumps(policy.settings, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"policy {policy.name!r} ({_named(policy)}): its settings are not JSON data "
            f"({exc}), so the processes of a namespace cannot compare them: give `settings` "
            "as JSON data, sets as sorted lists (docs/governance.md)"
        ) from None
    return [policy.name, _named(policy), settings]


def fingerprint(rt: Runtime) -> str:
    """A short hash of what routing, admission and decoding depend on, as the loaded runtime
    has it (not the file's text: a comment or a description changes nothing of how a
    message goes, and a process built in Python has no file): its agents with their classes
    and risks, its routes, its policies in order (by name, class and the settings they
    declare), its limits, and each message type of the pipeline with its JSON schema."""
    declared = {
        "agents": {agent.id: [_named(agent), agent_risk(agent).value] for agent in rt.agents()},
        "routes": {k: sorted(v) for k, v in rt.subscriptions().items()},
        "policies": [_policy(policy) for policy in rt.policies],
        "limits": repr(rt.limits),
        "types": {
            name: rt.types.get(name).model_json_schema(mode="validation")
            for name in sorted(rt.types.names())
            # genie's own types (loss notices, approvals) are the wire's, and a runtime
            # registers some only once it needs them.
            if not name.startswith("genie.")
        },
    }
    text = json.dumps(declared, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
