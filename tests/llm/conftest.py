from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import ProviderServer


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Both backends for the adapters and the socket tests; the modules on virtual time
    override this with trio and its ``MockClock``."""
    return str(request.param)


@pytest.fixture
def server() -> Iterator[ProviderServer]:
    with ProviderServer() as running:
        yield running
