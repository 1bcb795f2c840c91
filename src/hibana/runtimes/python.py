"""The in-process Python runtime: async functions run on the worker's event loop, sync
ones on its bounded thread pool."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any

from hibana.context import Context, Invocation


def start(invocation: Invocation, ctx: Context, pool: Executor) -> asyncio.Future[Any]:
    """Start the invocation's function; the returned future resolves to what it returns."""
    spec = invocation.function
    loop = asyncio.get_running_loop()
    if spec.is_async:
        return loop.create_task(spec.handler(invocation.payload, ctx))
    return loop.run_in_executor(pool, spec.handler, invocation.payload, ctx)
