from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hosts import Host, started


@pytest.fixture(scope="module")
def basic_host() -> Iterator[Host]:
    """One host on tests/apps/basic shared by a module's read-only tests (one worker)."""
    yield from started("basic", "--workers", "1", "--concurrency-wait", "0.2")
