from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hibana.store import Store, open_store

T = TypeVar("T")

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store of each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    yield request.getfixturevalue("pg_store_url")  # skips, loudly, with no PostgreSQL


@pytest.fixture
def open_stores(store_url: str) -> Iterator[Callable[[], Store]]:
    """Opens stores on the same URL (separate connections, like separate processes)."""
    opened: list[Store] = []

    def make() -> Store:
        store = open_store(store_url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_stores: Callable[[], Store]) -> Store:
    return open_stores()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
