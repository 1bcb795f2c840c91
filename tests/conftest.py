from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hosts import Host, started
from tests.pg import drop_schema, postgres_server, with_schema


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str | None]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture
def pg_store_url(postgres_dsn: str | None) -> Iterator[str]:
    """A store URL on PostgreSQL with a schema of its own, dropped afterwards.

    The one place PostgreSQL tests skip: only when no server can be had at all. CI never
    gets here: .ci/run sets HIBANA_TEST_POSTGRES_DSN, and with it a server that is down
    fails the tests instead of skipping them."""
    if postgres_dsn is None:
        pytest.skip(
            "NO POSTGRESQL: set HIBANA_TEST_POSTGRES_DSN or install initdb/pg_ctl; "
            "this PostgreSQL test did not run"
        )
    url, schema = with_schema(postgres_dsn)
    yield url
    drop_schema(postgres_dsn, schema)


@pytest.fixture(scope="module")
def basic_host() -> Iterator[Host]:
    """One host on tests/apps/basic shared by a module's read-only tests (one worker)."""
    yield from started("basic", "--workers", "1", "--concurrency-wait", "0.2")
