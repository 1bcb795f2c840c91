"""A store whose disk is full says so: which store, which folder (SQLite: and how much is
free there), and what to do; not a driver's bare error. The disks are real and small: a
tmpfs in a mount namespace of the test's own (SQLite: the CLI's; PostgreSQL: the
server's), so the machine's disks are never filled."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hibana.errors import StoreError
from hibana.store.base import NewMessage, Store
from hibana.store.postgres import PostgresEngine
from tests.pg import Cluster, own_cluster, with_schema


def test_a_sqlite_store_on_a_full_disk_names_its_folder_what_is_free_and_the_fix(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "small"
    folder.mkdir()
    store = f"sqlite:///{folder}/state.db"
    # 160 KiB: the store is made, and the first secret of 60 KB (with the WAL's copy of
    # its pages) finds the disk full
    script = (
        f"mount -t tmpfs -o size=160k tmpfs {folder} || exit 99\n"
        f'head -c 60000 /dev/zero | tr "\\0" x | "{sys.executable}" -m hibana secrets set '
        f"token --store {store}\n"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HIBANA_SECRET_KEY_FILE": str(tmp_path / "key")},
    )
    assert result.returncode == 1, result.stderr
    said = re.fullmatch(
        rf"error: the store {re.escape(store)} cannot write: the disk that holds "
        rf"{re.escape(str(folder))} is full \((.+) free\); free space on it, or move the "
        r"store to a disk with room \(--store sqlite:///PATH, with the host stopped\)\. "
        r"Nothing was written; what was stored before is kept",
        result.stderr.strip(),
    )
    assert said is not None, result.stderr
    assert re.fullmatch(r"\d+ bytes|[\d.]+ KiB", said.group(1))


def _filled(store: Store, body: Callable[[], bytes]) -> str:
    """What the store says once messages of ``body`` have filled it (20 at most)."""
    for _ in range(20):
        try:
            asyncio.run(store.enqueue(NewMessage("work", body())))
        except StoreError as exc:
            return str(exc)
    raise AssertionError("20 messages did not fill the store")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with own_cluster() as made:
        yield made


def test_a_postgresql_store_whose_server_disk_is_full_says_so(cluster: Cluster) -> None:
    """hibana's tables in a tablespace on a disk of 1 MiB, which messages fill: the
    server's DiskFull is named with what to do, not shown as a driver's error."""
    import psycopg

    folder = cluster.small_disk(1024)
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLESPACE small LOCATION '{folder}'")
    url, _ = with_schema(cluster.dsn)
    url += "&options=-c%20default_tablespace%3Dsmall"
    engine = PostgresEngine(url)
    store = Store(engine)
    store.open()
    try:
        # a few fill it: incompressible bodies of 200 KB
        said = _filled(store, lambda: os.urandom(200_000))
    finally:
        store.close()
    assert said.startswith(
        f"the store {engine.display} cannot write: the PostgreSQL server's disk is full "
        '(it says: could not extend file "pg_tblspc/'
    )
    assert said.endswith(
        "No space left on device); free space on the server's disk that holds its data "
        "folder (or the tablespace of hibana's tables), or give it more. Nothing was "
        "written; what was stored before is kept"
    )
