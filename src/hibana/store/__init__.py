"""Durable state: one ``Store`` interface, two engines (SQLite embedded, PostgreSQL shared)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from hibana.errors import StoreError
from hibana.store.base import (
    DeadLetter,
    Delivery,
    Engine,
    Enqueued,
    NewMessage,
    QueueInfo,
    QueueStats,
    Settle,
    Store,
    SubscriptionInfo,
)

#: The environment variable that names the store when ``--store`` is not given.
STORE_ENV = "HIBANA_STORE"
#: Where a store URL comes from, for the errors that say a URL is wrong.
_GIVEN = f"fix the URL given to --store (or ${STORE_ENV})"

__all__ = [
    "STORE_ENV",
    "DeadLetter",
    "Delivery",
    "Engine",
    "Enqueued",
    "NewMessage",
    "QueueInfo",
    "QueueStats",
    "Settle",
    "Store",
    "SubscriptionInfo",
    "engine_for",
    "open_store",
    "resolve_url",
]


def resolve_url(url: str | None, app_dir: str | os.PathLike[str]) -> str:
    """The store URL: ``url`` if given, else ``$HIBANA_STORE``, else the app's SQLite file."""
    chosen = url or os.environ.get(STORE_ENV) or None
    if chosen is None:
        from hibana.store.sqlite import default_path

        return f"sqlite:///{default_path(Path(app_dir).resolve())}"
    return chosen


def engine_for(url: str, create: bool = True) -> Engine:
    """The engine a store URL names; StoreError naming the accepted forms otherwise.
    ``create``: a store not there yet is made (else its absence is the error)."""
    if url.startswith(("postgresql://", "postgres://")):
        from hibana.store.postgres import PostgresEngine

        return PostgresEngine(url, create=create)
    if url.startswith("sqlite:///"):
        from hibana.store.sqlite import SqliteEngine

        path = url.removeprefix("sqlite:///")
        if not path:
            raise StoreError(f"the store URL {url!r} names no file: {_GIVEN}, as sqlite:///PATH")
        return SqliteEngine(path if path.startswith("/") else Path(path).resolve(), create)
    raise StoreError(
        f"unknown store URL {url!r}: {_GIVEN}, as sqlite:///PATH (the default is "
        "APP_DIR/.hibana/state.db) or postgresql://USER@HOST:PORT/DATABASE"
    )


def open_store(
    url: str | None = None,
    app_dir: str | os.PathLike[str] = ".",
    *,
    create: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> Store:
    """An opened store (schema created or migrated); StoreError if it cannot be, or if it
    is not there yet and not ``create``. ``on_wait``: see ``Engine.on_wait``."""
    engine = engine_for(resolve_url(url, app_dir), create)
    engine.on_wait = on_wait
    store = Store(engine)
    store.open()
    return store
