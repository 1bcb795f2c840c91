"""Where the host's processes write: their fd 1 and 2 (``ProcessOutput``), and the
descriptor their JSON log lines go to, which is a duplicate of the host's stdout or, with
``--log-format console``, a pipe rendered for a terminal.

Apart from the supervisor because it is opened from two settings, closed once at the end,
and needs nothing else of the host.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from hibana.host.config import HostConfig
from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.process_output import ProcessOutput

if TYPE_CHECKING:
    from hibana.telemetry.console import ConsoleLog


class LogOutput:
    """The processes' output and log descriptor, opened for ``config``."""

    def __init__(self, config: HostConfig) -> None:
        #: Renders the processes' JSON lines for a terminal (``--log-format console``).
        self.console: ConsoleLog | None = None
        #: Where the processes' log lines go (``HostConfig.log_fd`` of what we start).
        self.fd: int
        if config.log_format == "console":
            from hibana.telemetry.console import ConsoleLog

            self.console = ConsoleLog(1, color=os.isatty(1))
            self.fd = self.console.write_fd
        else:
            try:
                self.fd = os.dup(1)
            except OSError:  # stdout closed: the lines have nowhere to go
                self.fd = os.open(os.devnull, os.O_WRONLY)
        #: fd 1 and 2 of the processes we start.
        self.output = ProcessOutput(LogSink(self.fd, config.log_level))

    def close(self) -> None:
        self.output.close()  # what the processes wrote last goes out first
        if self.console is not None:
            self.console.close()
        else:
            os.close(self.fd)
