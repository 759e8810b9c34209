"""Fixtures for testing genie apps with pytest (docs/testing.md). Opt in from a conftest.py::

    pytest_plugins = ["genie.testing.pytest_plugin"]

Every ``async def`` test marked ``@pytest.mark.anyio`` (or in a module with ``pytestmark``)
then runs on asyncio and on trio (when trio is installed): the runtime behaves the same on
both, and a test that passes on one only has found a bug. ``virtual_time`` runs a test on the
simulation's clock instead: sleeps and timeouts take no real time.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from . import VIRTUAL_TIME

__all__ = ["anyio_backend", "virtual_time"]

_BACKENDS = ["asyncio"] + (["trio"] if importlib.util.find_spec("trio") else [])


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Each anyio test on every backend installed."""
    return request.param


@pytest.fixture
def virtual_time() -> tuple[str, dict[str, Any]]:
    """The anyio backend of virtual time, for ``@pytest.mark.parametrize("anyio_backend",
    ...)`` or an ``anyio_backend`` fixture of a module's own."""
    return VIRTUAL_TIME
