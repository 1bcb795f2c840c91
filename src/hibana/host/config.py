"""``HostConfig``: every knob of a running host, validated when built; and
``HostStartError``, what a host that cannot start with them raises."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Literal

from hibana.errors import ConfigError

LogLevel = Literal["debug", "info", "warning", "error"]


class HostStartError(ConfigError):
    """The host could not start (the port is taken, say)."""


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


@dataclass(frozen=True, slots=True)
class HostConfig:
    app_dir: str
    host: str = "127.0.0.1"
    #: 0 picks a free port; the host prints the one it bound.
    port: int = 7071
    #: Scaling overrides from the command line; None: the App's setting or the default.
    min_instances: int | None = None
    max_instances: int | None = None
    idle_timeout: float | None = None
    prewarm: Literal["app", "runtime", "none"] | None = None
    memory_limit_mb: int | None = None
    #: Loopback port of the admin endpoint (``hibana status``); 0 picks a free one.
    admin_port: int = 0
    #: Seconds in-flight invocations get to finish after SIGTERM before they are killed.
    shutdown_timeout: float = 10.0
    #: Seconds a timed-out function gets to return before its worker is replaced.
    cancel_grace: float = 5.0
    #: Seconds a request waits for a max_concurrency slot before it gets 429.
    concurrency_wait: float = 5.0
    max_body_bytes: int = 10 * 1024 * 1024
    max_header_bytes: int = 32 * 1024
    #: Seconds a client has to send a request's headers (slowloris protection).
    header_timeout: float = 10.0
    #: Seconds a client may pause while sending a request body.
    body_timeout: float = 30.0
    #: Bytes a second a body still arriving after ``body_timeout`` must have averaged
    #: (a client trickling a byte a pause would hold its connection for ever); 0: any.
    min_body_rate: int = 240
    keep_alive_timeout: float = 5.0
    #: Threads per worker for sync functions; None: the App's ``threads``, or 40. The
    #: zygote sets the one it resolved before it starts a worker.
    threads: int | None = None
    log_level: LogLevel = "info"
    #: Where the host's processes write their JSON log lines: the host's stdout. The
    #: supervisor hands its zygote a duplicate of it, and makes their fd 1 a pipe whose
    #: lines it turns into JSON lines (see ``telemetry.process_output.ProcessOutput``).
    log_fd: int = 1
    #: "json" (one object a line, for machines) or "console" (for a person at a terminal:
    #: the supervisor renders the workers' JSON lines, see ``telemetry.console``).
    log_format: Literal["json", "console"] = "json"
    reload: bool = False
    #: The store URL (``--store`` / ``$HIBANA_STORE``); None: APP_DIR/.hibana/state.db.
    store: str | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 0 <= self.port <= 65535
        ):
            raise ConfigError(f"port {self.port} is not in 0..65535")
        rate = self.min_body_rate
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
            raise ConfigError(
                f"min_body_rate={rate!r} must be a whole number of bytes/s, 0 or more"
            )
        for name in ("threads", "max_body_bytes", "max_header_bytes"):
            value = getattr(self, name)
            if name == "threads" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a whole number of at least 1")
        for name in (
            "shutdown_timeout",
            "cancel_grace",
            "concurrency_wait",
            "header_timeout",
            "body_timeout",
            "keep_alive_timeout",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(f"{name}={value!r} must be a number of seconds, 0 or more")
            if not math.isfinite(value):  # the CLI says so first, naming the option
                raise ConfigError(f"{name}={value!r} must be a finite number of seconds")
        for name in ("min_instances", "max_instances", "memory_limit_mb"):
            value = getattr(self, name)
            floor = 0 if name == "min_instances" else 1
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < floor
            ):
                raise ConfigError(f"{name}={value!r} must be a whole number of at least {floor}")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise ConfigError(
                f"idle_timeout={self.idle_timeout!r} must be a positive number of seconds"
            )
        if self.store is not None:
            from hibana.errors import StoreError
            from hibana.store import engine_for

            try:
                engine_for(self.store)
            except StoreError as exc:
                raise ConfigError(str(exc)) from None
        if self.log_format not in ("json", "console"):
            raise ConfigError(f"log_format={self.log_format!r} is not one of json, console")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"log_level={self.log_level!r} is not one of debug, info, warning, error"
            )

    @property
    def store_url(self) -> str:
        from hibana.store import resolve_url

        return resolve_url(self.store, self.app_dir)

    def scaling_overrides(self) -> dict[str, Any]:
        return {
            "min_instances": self.min_instances,
            "max_instances": self.max_instances,
            "idle_timeout": self.idle_timeout,
            "prewarm": self.prewarm,
            "memory_limit_mb": self.memory_limit_mb,
            "threads": self.threads,
        }

    def scaling_defaults(self) -> dict[str, Any]:
        """``serve`` scales to zero; ``dev`` keeps one worker warm."""
        return {
            "min_instances": 1 if self.reload else 0,
            "max_instances": default_workers(),
            "idle_timeout": 60.0,
            "prewarm": "app",
        }

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> HostConfig:
        return cls(**json.loads(text))
