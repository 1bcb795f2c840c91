"""A log line too long for the readers of the host's stdout, cut to fit: its longest
values shortened, each with a marker that says how much of it was cut, and the line
still JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hibana.telemetry.log_fields import OWN_FIELDS, encode, loggable

#: The most bytes one log line holds, its newline aside. Log stores and shippers take
#: a line of about 256 KB whole and refuse or split a longer one: Loki's max_line_size
#: is 256,000 bytes by default (it drops a longer line), a Google Cloud Logging entry
#: holds 256 KiB with its metadata, a CloudWatch Logs event held 256 KiB until 2025; a
#: few KB under those is left for what a shipper adds (its labels, the container's).
LONGEST_LINE = 250_000

#: Bytes a cut value keeps free for its marker (``…[cut by hibana: N of M bytes]``).
_MARKER_ROOM = 64

#: Cuts tried before a line keeps only its own fields.
_TRIES = 8


def cut_to_fit(
    record: dict[str, Any],
    longest: int,
    scrub: Callable[[str], str],
    begun: Callable[[str], int],
) -> bytes:
    """``record`` as a JSON line of at most ``longest`` bytes: its longest string (a
    message, a field, a string inside one) cut, with ``…[cut by hibana: N of M bytes]``
    at its end, until the line fits; a field too large for that without a long string in
    it (a list of many numbers) written as a marker that says what it was. A cut value
    has its secrets replaced first (``scrub``) and keeps no start of one at its end
    (``begun``): the part left could no longer be told for a secret. The caller's
    dicts and lists are not changed."""
    try:
        tree = loggable(record)  # a copy made of JSON's values, which may be cut in place
        line = encode(tree)
        for _ in range(_TRIES):
            over = len(line) - longest
            if over <= 0:
                return line
            path, text = _longest_text(tree)
            size = len(encode(text))
            if size > over + _MARKER_ROOM:
                _put(tree, path, _cut(text, size - over - _MARKER_ROOM, scrub, begun))
            elif not _cut_largest_field(tree):
                break
            line = encode(tree)
        if len(line) <= longest:
            return line
    except Exception:  # a dict that holds itself: told as any line that cannot be written
        pass
    return _own_only(record, scrub)


def _longest_text(tree: dict[str, Any]) -> tuple[list[Any], str]:
    """The longest string in ``tree`` (by characters) and where it is: the keys and
    indexes that lead to it ("" and no path, if it holds none)."""
    best: tuple[list[Any], str] = ([], "")
    stack: list[tuple[list[Any], Any]] = [([], tree)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if len(value) > len(best[1]):
                best = (path, value)
        elif isinstance(value, dict):
            stack.extend(([*path, k], v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(([*path, i], v) for i, v in enumerate(value))
    return best


def _cut(text: str, keep: int, scrub: Callable[[str], str], begun: Callable[[str], int]) -> str:
    """``text`` cut to about ``keep`` bytes as JSON, with the marker of what was cut."""
    text = scrub(text)
    size = len(encode(text))
    kept = text[: max(0, len(text) * keep // size)]
    kept = kept[: len(kept) - begun(kept)]
    total = len(text.encode())
    return f"{kept}…[cut by hibana: {total - len(kept.encode())} of {total} bytes]"


def _put(tree: dict[str, Any], path: list[Any], value: str) -> None:
    at: Any = tree
    for step in path[:-1]:
        at = at[step]
    at[path[-1]] = value


def _cut_largest_field(tree: dict[str, Any]) -> bool:
    """Write the largest field that is not one of the line's own as a marker of what it
    was; False if there is none to write so."""
    sizes = {k: len(encode(v)) for k, v in tree.items() if k not in OWN_FIELDS}
    if not sizes:
        return False
    name = max(sizes, key=sizes.__getitem__)
    value = tree[name]
    what = (
        f"a {type(value).__name__} of {len(value)} items"
        if isinstance(value, list | dict)
        else type(value).__name__
    )
    tree[name] = f"…[cut by hibana: {what}, {sizes[name]} bytes as JSON]"
    return True


def _own_only(record: dict[str, Any], scrub: Callable[[str], str]) -> bytes:
    """The line's own fields (its message's first thousand characters) and why the rest
    is not written."""
    kept: dict[str, Any] = {
        k: loggable(scrub(v)[:1000])
        for k, v in record.items()
        if k in OWN_FIELDS and type(v) is str
    }
    kept["log_error"] = (
        "the fields of this line could not be cut to the most a log line holds "
        f"({LONGEST_LINE} bytes); log less in one line"
    )
    return encode(kept)
