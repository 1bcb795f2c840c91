"""``hibana``: the command line. The only place that prints for the user and picks exit codes.

``main`` is the entry point; commands.py has the app (``hibana``) and the commands that run
or ask a host: serve, dev, new, status, reload; store.py has those that work on an app's
store (queue, events, secrets). This module imports nothing else: its first step comes
before the commands' imports (typer, the host's modules)."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command ``sys.argv`` names."""
    if sys.argv[1:2] in (["serve"], ["dev"]):
        # first, before the imports of the host (a few hundred ms): a SIGHUP or SIGTERM
        # meanwhile (a terminal that hangs up, `systemctl stop` right after start) is
        # noted for the supervisor, not the default action that killed the process
        from hibana.host.early_signals import hold

        hold()
    from hibana.cli.commands import cli

    cli()
