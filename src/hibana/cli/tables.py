"""The tables commands print (``hibana status``, ``hibana queue stats``), and the console
they print on."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def new_console() -> Console:
    """Where tables go: piped (a file, `| less`, a CI log), as wide as they need rather
    than a terminal's 80 columns."""
    from rich.console import Console

    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=200 if wide else None)


def new_table(*names: str) -> Table:
    """A table whose cells, in a narrow terminal, fold onto more lines, never cut."""
    from rich.table import Table

    made = Table(*names)
    for column in made.columns:
        column.overflow = "fold"
    return made


def queues_table(queues: list[dict[str, Any]]) -> Table:
    """The queues' figures (``QueueStats`` as dicts), for ``status`` and ``queue stats``."""
    table = new_table("queue", "ready", "delayed", "in flight", "dead letters", "oldest age s")
    for q in queues:
        age = "-" if q["oldest_age"] is None else f"{q['oldest_age']:.1f}"
        table.add_row(
            q["queue"], str(q["ready"]), str(q["delayed"]), str(q["in_flight"]), str(q["dead"]), age
        )
    return table
