"""hibana: self-hosted serverless functions for Python.

The public surface is what this module exports; everything else is private to hibana.

Each name is imported when first asked for (``hibana.App``, ``from hibana import App``):
``import hibana`` alone stays cheap, so ``hibana --version`` and the first moments of
``hibana serve`` (before it takes over SIGTERM and SIGHUP) do not wait on the app model."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hibana.app import App, FunctionSpec
    from hibana.blueprint import Blueprint
    from hibana.context import Context, Invocation
    from hibana.datastructures import Files, FormData, Headers, QueryParams, UploadedFile
    from hibana.errors import (
        AppError,
        AppLoadError,
        BadRequest,
        Cancelled,
        ConfigError,
        HibanaError,
        HTTPError,
        QueueError,
        RouteError,
        StoreError,
    )
    from hibana.events.cloudevent import CloudEvent, EventError
    from hibana.events.filters import Filter
    from hibana.messages import BatchFailed, Exponential, Fixed, Message, RetryPolicy
    from hibana.requests import Request
    from hibana.responses import Response, StreamingResponse
    from hibana.secrets import SecretError
    from hibana.store.base import Enqueued
    from hibana.timers import TimerInfo

__version__ = "0.1.0"

#: Where each exported name lives.
_HOMES = {
    "App": "hibana.app",
    "Blueprint": "hibana.blueprint",
    "FunctionSpec": "hibana.app",
    "Context": "hibana.context",
    "Invocation": "hibana.context",
    "Files": "hibana.datastructures",
    "FormData": "hibana.datastructures",
    "Headers": "hibana.datastructures",
    "QueryParams": "hibana.datastructures",
    "UploadedFile": "hibana.datastructures",
    "AppError": "hibana.errors",
    "AppLoadError": "hibana.errors",
    "BadRequest": "hibana.errors",
    "Cancelled": "hibana.errors",
    "ConfigError": "hibana.errors",
    "HibanaError": "hibana.errors",
    "HTTPError": "hibana.errors",
    "QueueError": "hibana.errors",
    "RouteError": "hibana.errors",
    "StoreError": "hibana.errors",
    "CloudEvent": "hibana.events.cloudevent",
    "EventError": "hibana.events.cloudevent",
    "Filter": "hibana.events.filters",
    "BatchFailed": "hibana.messages",
    "Exponential": "hibana.messages",
    "Fixed": "hibana.messages",
    "Message": "hibana.messages",
    "RetryPolicy": "hibana.messages",
    "Request": "hibana.requests",
    "Response": "hibana.responses",
    "StreamingResponse": "hibana.responses",
    "SecretError": "hibana.secrets",
    "Enqueued": "hibana.store.base",
    "TimerInfo": "hibana.timers",
}

__all__ = [
    "App",
    "AppError",
    "AppLoadError",
    "BadRequest",
    "BatchFailed",
    "Blueprint",
    "Cancelled",
    "CloudEvent",
    "ConfigError",
    "Context",
    "Enqueued",
    "EventError",
    "Exponential",
    "Files",
    "Filter",
    "Fixed",
    "FormData",
    "FunctionSpec",
    "HTTPError",
    "Headers",
    "HibanaError",
    "Invocation",
    "Message",
    "QueryParams",
    "QueueError",
    "Request",
    "Response",
    "RetryPolicy",
    "RouteError",
    "SecretError",
    "StoreError",
    "StreamingResponse",
    "TimerInfo",
    "UploadedFile",
    "__version__",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'hibana' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # asked for once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
