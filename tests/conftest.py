from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.hosts import Host, started
from tests.pg import drop_schema, postgres_server, with_schema


@pytest.fixture(scope="session", autouse=True)
def tests_secrets_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tests' secrets key is never the user's (~/.config/hibana/key, or the one their
    shell names): a key left there by one test, or by the user, changed what another
    test's host was told. Tests that need a key of their own still point the variable at
    one."""
    before = os.environ.get("HIBANA_SECRET_KEY_FILE")
    os.environ["HIBANA_SECRET_KEY_FILE"] = str(tmp_path_factory.mktemp("secrets") / "key")
    yield
    if before is None:
        os.environ.pop("HIBANA_SECRET_KEY_FILE", None)
    else:
        os.environ["HIBANA_SECRET_KEY_FILE"] = before


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
