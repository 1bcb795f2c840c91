"""hibana: self-hosted serverless functions for Python.

The public surface is what this module exports; everything else is private to hibana."""

from importlib.metadata import PackageNotFoundError, version

from hibana.app import App, Blueprint, FunctionSpec
from hibana.context import Context, Invocation
from hibana.datastructures import Headers, QueryParams
from hibana.errors import (
    AppError,
    AppLoadError,
    BadRequest,
    Cancelled,
    ConfigError,
    HibanaError,
    HTTPError,
    RouteError,
)
from hibana.requests import Request
from hibana.responses import Response

try:
    __version__ = version("hibana")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "App",
    "AppError",
    "AppLoadError",
    "BadRequest",
    "Blueprint",
    "Cancelled",
    "ConfigError",
    "Context",
    "FunctionSpec",
    "HTTPError",
    "Headers",
    "HibanaError",
    "Invocation",
    "QueryParams",
    "Request",
    "Response",
    "RouteError",
    "__version__",
]
