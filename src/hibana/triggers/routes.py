"""Route patterns (``/items/{id:int}``) and the table that matches a path to a function."""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hibana.errors import RouteError

if TYPE_CHECKING:
    from hibana.app import FunctionSpec

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _finite(value: float) -> float:
    """A float route parameter: digits too many for a float (they give inf) match no route."""
    if value in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    return value


#: converter name -> (regex, convert)
CONVERTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": (r"[^/]+", str),
    "int": (r"-?[0-9]+", int),
    "float": (r"-?[0-9]+(?:\.[0-9]+)?", lambda text: _finite(float(text))),
    "uuid": (
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        uuid.UUID,
    ),
    # not one that starts with "/" (what "//" in a path puts there): joined onto a folder,
    # os.path.join and pathlib would take it for a path from the root (/etc/passwd)
    # (?s): a newline (%0A) is a character like any other, as it is to a plain {name}
    "path": (r"[^/](?s:.*)", str),
}


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    pattern: str
    #: None for a route with no parameters (matched by a dict lookup).
    regex: re.Pattern[str] | None
    converters: tuple[tuple[str, Callable[[str], Any]], ...]
    #: The pattern with parameter names erased: two routes of one shape clash.
    shape: str
    #: Every parameter is a plain string: the regex's groups are the parameters.
    plain: bool = False

    def match(self, path: str) -> dict[str, Any] | None:
        """The converted parameters if ``path`` matches, else None."""
        if self.regex is None:
            return {} if path == self.pattern else None
        m = self.regex.match(path)
        if m is None:
            return None
        if self.plain:
            return m.groupdict()
        try:
            return {name: conv(m.group(name)) for name, conv in self.converters}
        except ValueError:
            return None


def compile_route(pattern: str, where: str) -> CompiledRoute:
    """Parse ``pattern``; ``where`` ("function_app.py:12 (create)") names it in errors."""
    if not isinstance(pattern, str):
        raise RouteError(
            f"Route {pattern!r} in {where} is not a string; write a path like '/items'"
        )
    if not pattern.startswith("/"):
        raise RouteError(
            f'Route "{pattern}" in {where} does not start with "/"; write "/{pattern}"'
        )
    _check_matchable(pattern, where)
    regex_parts: list[str] = []
    shape_parts: list[str] = []
    converters: list[tuple[str, Callable[[str], Any]]] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "}":
            raise RouteError(
                f'Route "{pattern}" in {where} has a "}}" at position {i} with no "{{" before it'
            )
        if ch != "{":
            j = i
            while j < len(pattern) and pattern[j] not in "{}":
                j += 1
            regex_parts.append(re.escape(pattern[i:j]))
            shape_parts.append(pattern[i:j])
            i = j
            continue
        end = pattern.find("}", i)
        nested = pattern.find("{", i + 1)
        if end == -1 or (nested != -1 and nested < end):
            raise RouteError(f'Route "{pattern}" in {where} has an unclosed "{{"')
        name, _, conv = pattern[i + 1 : end].partition(":")
        conv = conv or "str"
        if not _NAME.match(name):
            raise RouteError(
                f'Route "{pattern}" in {where} has a parameter "{{{pattern[i + 1 : end]}}}" '
                f"whose name is not an identifier; write {{name}} or {{name:int}}"
            )
        if conv not in CONVERTERS:
            raise RouteError(
                f'Route "{pattern}" in {where} has parameter "{name}" of unknown type "{conv}"; '
                f"use one of: {', '.join(CONVERTERS)}"
            )
        if any(name == n for n, _ in converters):
            raise RouteError(f'Route "{pattern}" in {where} uses parameter "{name}" twice')
        regex, func = CONVERTERS[conv]
        regex_parts.append(f"(?P<{name}>{regex})")
        shape_parts.append("{" + conv + "}")
        converters.append((name, func))
        i = end + 1
    if not converters:
        return CompiledRoute(pattern, None, (), pattern)
    return CompiledRoute(
        pattern,
        re.compile("".join(regex_parts) + r"\Z"),
        tuple(converters),
        "".join(shape_parts),
        plain=all(conv is str for _, conv in converters),
    )


#: A percent-escape (``%C3``): routes match the path as decoded, which holds none.
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}").search


def unreachable(path: str) -> tuple[str, str, str] | None:
    """Why no request reaches ``path`` as it is written, as (what it holds, what requests
    are matched on, the path to write instead); None if one may. One with a query or a
    fragment in it (a request is routed on its path alone), one percent-encoded (on its
    path as decoded), or one with a ``.`` or ``..`` segment (on its path with those
    resolved): each was a 404 for every request, with nothing to say why."""
    for mark, what in (("?", "a query"), ("#", "a fragment")):
        if mark in path:
            return f'has {what} ("{mark}")', "the path alone", path.partition(mark)[0]
    escape = _ESCAPE(path)
    if escape is not None:
        held = f'is percent-encoded ("{escape.group()}")'
        return held, "the path as decoded", urllib.parse.unquote(path)
    if "/." in path:
        resolved = remove_dot_segments(path)
        if resolved != path:
            dots = next(s for s in path.split("/") if s in (".", ".."))
            if resolved is None:  # one that climbs above the root: the path without them
                resolved = "/" + "/".join(s for s in path.split("/")[1:] if s not in (".", ".."))
            resolved_as = 'the path with its "." and ".." segments resolved (as a browser does)'
            return f'has a "{dots}" segment', resolved_as, resolved
    return None


def _check_matchable(pattern: str, where: str) -> None:
    """Refuse a route no request can reach (``unreachable``)."""
    problem = unreachable(pattern)
    if problem is not None:
        held, against, instead = problem
        read = " and read the query string from req.query" if "?" in pattern else ""
        raise RouteError(
            f'Route "{pattern}" in {where} {held}, but a route matches {against}; '
            f'write "{instead}"{read}'
        )


def compile_mount(base: str, where: str) -> CompiledRoute:
    """``{base}/{path:path}`` for a mounted app (ASGI, WSGI, Lambda): any path below
    ``base``, one with a slash after it (``/api//x``) too. The app reads the path itself:
    no parameter of it is joined onto a folder."""
    route = compile_route(base + "/{path:path}", where)
    return dataclasses.replace(
        route, regex=re.compile(re.escape(base + "/") + r"(?P<path>(?s:.+))\Z")
    )


def remove_dot_segments(path: str) -> str | None:
    """``path`` (percent-decoded, so ``%2e%2e`` is ``..`` here) with its ``.`` and ``..``
    segments resolved (RFC 3986 5.2.4), or None if a ``..`` climbs above the root. A
    request reaches a function by the path it resolves to, so a ``{rest:path}``
    parameter never holds a ``..`` to join onto a folder."""
    out: list[str] = []
    segments = path.split("/")
    for segment in segments[1:]:
        if segment == "..":
            if not out:
                return None
            out.pop()
        elif segment != ".":
            out.append(segment)
    if segments[-1] in (".", ".."):
        out.append("")  # "/a/b/.." is "/a/": it names a folder
    return "/" + "/".join(out)


def precedence(shape: str) -> tuple[int, ...]:
    """How specific a route of this shape is, segment by segment (smaller goes first): a
    literal segment beats one that mixes text and parameters or holds a typed one
    (``{id:int}``), which beats a plain ``{name}``, which beats a ``{rest:path}``; a
    ``{x:float}`` goes after the other typed ones, as every ``{x:int}`` is one too (the int
    route declared after it was never reached). The end of a route ranks last, so
    ``/a/{rest:path}/edit`` goes before ``/a/{rest:path}``."""
    ranks = []
    for segment in shape.split("/")[1:]:
        if "{" not in segment:
            ranks.append(0)
        elif "{path}" in segment:
            ranks.append(4)
        elif segment == "{str}":
            ranks.append(3)
        elif segment == "{float}":
            ranks.append(2)
        else:
            ranks.append(1)
    ranks.append(5)
    return tuple(ranks)


# Not frozen: one is made for each request, and a frozen one costs twice as much to make.
@dataclass(slots=True)
class Match:
    spec: FunctionSpec
    params: dict[str, Any]


class RouteTable:
    """Finds the function for (method, path); says which methods a path allows when none match.

    Routes without parameters are one dict lookup; the rest are tried most specific first
    (``precedence``), so ``/items/{id:int}`` answers ``/items/5`` whichever of it and
    ``/items/{slug}`` is declared first. Routes equally specific go in declaration order."""

    def __init__(self, routes: Iterable[tuple[CompiledRoute, tuple[str, ...], FunctionSpec]]):
        self._static: dict[str, dict[str, FunctionSpec]] = {}
        #: (route, its table, the own routes of the functions that share its shape): routes
        #: of one shape share a table; each function keeps its own parameter names.
        self._dynamic: list[
            tuple[CompiledRoute, dict[str, FunctionSpec], dict[str, CompiledRoute]]
        ] = []
        by_shape: dict[str, tuple[CompiledRoute, dict[str, FunctionSpec], dict[str, CompiledRoute]]]
        by_shape = {}
        for route, methods, spec in routes:
            entry = by_shape.get(route.shape)
            if entry is None:
                entry = by_shape[route.shape] = (route, {}, {})
                if route.regex is None:
                    self._static[route.pattern] = entry[1]
                else:
                    self._dynamic.append(entry)
            elif entry[0] is not route:
                entry[2][spec.name] = route
            table = entry[1]
            for method in methods:
                table[method] = spec
                if method == "GET":
                    table.setdefault("HEAD", spec)
        self._dynamic.sort(key=lambda entry: precedence(entry[0].shape))

    def methods(self) -> list[str]:
        """Every method some route accepts (what ``OPTIONS *`` answers)."""
        tables = [*self._static.values(), *(table for _, table, _ in self._dynamic)]
        return sorted({method for table in tables for method in table})

    def lookup(self, method: str, path: str) -> Match | list[str] | None:
        """A ``Match``; or the allowed methods when the path exists but not for ``method``;
        or None when no route has this path."""
        allowed: list[str] = []  # a list, cheaper to make than a set (one per request)
        table = self._static.get(path)
        if table is not None:
            spec = table.get(method)
            if spec is not None:
                return Match(spec, {})
            allowed.extend(table)
        for route, table, owns in self._dynamic:
            params = route.match(path)
            if params is None:
                continue
            spec = table.get(method)
            if spec is not None:
                if owns:
                    own = owns.get(spec.name)
                    if own is not None:
                        params = own.match(path) or params
                return Match(spec, params)
            allowed.extend(table)
        return sorted(set(allowed)) if allowed else None
