"""hibana: self-hosted serverless functions for Python.

The public surface is what this module exports; everything else is private to hibana."""

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
