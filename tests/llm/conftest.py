from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import ProviderServer


@pytest.fixture
def server() -> Iterator[ProviderServer]:
    with ProviderServer() as running:
        yield running
