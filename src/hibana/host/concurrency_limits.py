"""The host's share of each function's ``max_concurrency``: which column of the permit
table a function has (by name, so that a reload's old and new workers share its limit),
which row a new worker gets, and the limits in force.

The permit table itself (``board.PermitTable``) is shared memory and knows nothing of
functions; this is the supervisor's bookkeeping over it, and needs nothing else of the
supervisor than its report line.
"""

from __future__ import annotations

from collections.abc import Callable

from hibana.host.board import PermitTable
from hibana.host.zygote_handle import Zygote


class ConcurrencyLimits:
    """The columns and rows of ``table`` as the host deals them out."""

    def __init__(self, table: PermitTable, report: Callable[[str], None]) -> None:
        self.table = table
        self.report = report
        #: One column per function with a limit, by name (-1: the table had none left).
        self._columns: dict[str, int] = {}

    def free_row(self, used: set[int]) -> int:
        """A row of the table for a new worker, not one of ``used`` (-1: none is free)."""
        row = next((i for i in range(self.table.rows) if i not in used), -1)
        if row >= 0:
            self.table.empty(row)  # a worker's that went without a word (its zygote died)
        else:
            self.report(
                f"warning: more than {self.table.rows} workers at once: the new one's "
                "max_concurrency limits are its own, not the host's"
            )
        return row

    def columns_of(self, zygote: Zygote) -> tuple[int, ...]:
        """The permit table's column of each of ``zygote``'s functions, by name (-1: it
        has no max_concurrency, or the table has no column left)."""
        columns = self._columns
        for fn in zygote.functions:
            name = fn["name"]
            if fn.get("max_concurrency") and name not in columns:
                if len(columns) < self.table.columns:
                    columns[name] = len(columns)
                else:
                    columns[name] = -1  # said once
                    self.report(
                        f"warning: more than {self.table.columns} functions with a "
                        f"max_concurrency: {name}'s limit is each worker's, not the host's"
                    )
        return tuple(
            columns.get(fn["name"], -1) if fn.get("max_concurrency") else -1
            for fn in zygote.functions
        )

    def enforce(self, zygote: Zygote) -> None:
        """``zygote``'s version serves: its functions' ``max_concurrency`` are the limits
        every version's workers keep to (by function name); one it runs without a limit
        has none for an older version's workers either."""
        self.columns_of(zygote)  # a column for each of its functions with a limit
        for fn in zygote.functions:
            column = self._columns.get(fn["name"], -1)
            if column >= 0:
                limit = fn.get("max_concurrency")
                self.table.enforce(column, None if limit is None else int(limit))

    def column(self, function: str) -> int | None:
        """``function``'s column in the permit table (None: it has none)."""
        column = self._columns.get(function, -1)
        return column if column >= 0 else None

    def waits(self, rows: list[int], column: int) -> list[float]:
        """When the oldest invocation waiting for a permit of ``column`` arrived
        (time.monotonic()) in each of the workers' ``rows`` that has one waiting."""
        return [w for row in rows if (w := self.table.waiting_since(row, column))]
