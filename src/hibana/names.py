"""The names users give what the store keeps by name (queues, topics, secrets): what they
may hold, and what is wrong with one that holds something else."""

from __future__ import annotations

import string

#: What a name may hold: it goes as it is into a URL, a shell command and a store key.
NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")
MAX_NAME = 200
#: The rule, as errors state it.
NAME_RULE = f"1 to {MAX_NAME} ASCII letters, digits, '-', '_' or '.'"


def name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as a name, said after ``NAME_RULE``; None if nothing."""
    if not isinstance(name, str):
        return f"it is of type {type(name).__name__}, not str"
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME:
        return f"it is {len(name)} characters long"
    bad = next((c for c in name if c not in NAME_CHARS), None)
    if bad is None:
        return None
    return f"{bad!r} (a space) is not one" if bad == " " else f"{bad!r} is not one"
