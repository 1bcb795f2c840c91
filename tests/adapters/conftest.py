"""Fixtures of the adapter tests: the live host on tests/apps/mounts, the mounts app's module
imported here, and hibana.aws.handlers closed after each test."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import hibana.aws
from tests.adapters.payloads import MakeHandler
from tests.hosts import APPS, Host, started


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    yield from started("mounts", "--workers", "1")


@pytest.fixture
def lambda_handler() -> Iterator[MakeHandler]:
    """Makes ``hibana.aws.handler``s, closed after the test (their apps' lifespans end)."""
    made: list[hibana.aws.LambdaHandler] = []

    def make(app: Any) -> hibana.aws.LambdaHandler:
        made.append(hibana.aws.handler(app))
        return made[-1]

    yield make
    for handle in made:
        handle.close()


@pytest.fixture(scope="module")
def mounts() -> ModuleType:
    """The mounts app's module, imported here for the Lambda handler tests."""
    spec = importlib.util.spec_from_file_location("mounts_app", APPS / "mounts" / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mounts_app"] = module
    spec.loader.exec_module(module)
    return module
