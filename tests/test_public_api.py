"""The public surface is what ``hibana`` exports: a change to it is a decision, not an accident."""

from __future__ import annotations

import hibana


def test_exported_names() -> None:
    assert sorted(hibana.__all__) == [
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
    for name in hibana.__all__:
        assert hasattr(hibana, name), name


def test_exception_tree_has_one_base() -> None:
    for error in (
        hibana.AppError,
        hibana.AppLoadError,
        hibana.RouteError,
        hibana.ConfigError,
        hibana.HTTPError,
        hibana.BadRequest,
        hibana.QueueError,
        hibana.StoreError,
    ):
        assert issubclass(error, hibana.HibanaError)
    # a control signal: `except Exception` in user code must not swallow it
    assert not issubclass(hibana.Cancelled, Exception)
    assert issubclass(hibana.Cancelled, BaseException)


def test_aws_exported_names() -> None:
    import hibana.aws

    assert sorted(hibana.aws.__all__) == [
        "LambdaContext",
        "LambdaHandler",
        "TEXT_TYPES",
        "UnknownEvent",
        "handler",
    ]
    for name in hibana.aws.__all__:
        assert hasattr(hibana.aws, name), name
