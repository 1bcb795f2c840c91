"""Multi-valued mappings for query strings, headers and forms: repeated keys keep every
value."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from hibana.errors import MissingField

_T = TypeVar("_T")
_V = TypeVar("_V")
_M = TypeVar("_M", bound="MultiDict[Any]")


class MultiDict(Mapping[str, _V], Generic[_V]):
    """An immutable mapping whose keys may repeat: ``get`` gives the first value,
    ``getlist`` all of them, in the order they arrived."""

    __slots__ = ("_items", "_first", "_missing")

    def __init__(self, items: Iterable[tuple[str, _V]] = ()) -> None:
        self._items: list[tuple[str, _V]] = list(items)
        first: dict[str, _V] = {}
        for key, value in self._items:
            first.setdefault(self._norm(key), value)
        self._first = first
        #: What ``[key]`` says of a key that is not here, for a request's own (see
        #: ``of_request``); None: a plain KeyError.
        self._missing: str | None = None

    @staticmethod
    def _norm(key: str) -> str:
        return key

    def __getitem__(self, key: str) -> _V:
        try:
            return self._first[self._norm(key)]
        except KeyError:
            if self._missing is None:
                raise
            raise MissingField(self._missing.format(key=key), key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._norm(key) in self._first

    @overload
    def get(self, key: str, /) -> _V | None: ...
    @overload
    def get(self, key: str, default: _V, /) -> _V: ...
    @overload
    def get(self, key: str, default: _T, /) -> _V | _T: ...
    def get(self, key: str, default: object = None, /) -> object:
        """The first value of ``key``, or ``default`` when it is absent."""
        return self._first.get(self._norm(key), default)

    def getlist(self, key: str) -> list[_V]:
        """Every value of ``key``, in arrival order; an empty list when it is absent."""
        k = self._norm(key)
        return [v for name, v in self._items if self._norm(name) == k]

    def multi_items(self) -> list[tuple[str, _V]]:
        """All (key, value) pairs, repeats included, in arrival order."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MultiDict):
            return self._items == other._items
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]


def of_request(kind: type[_M], items: Iterable[tuple[str, Any]], missing: str) -> _M:
    """A ``kind`` of the request's (``req.query``, ``req.headers``, a form's fields or
    files), whose ``[key]`` for a key the client did not send answers 400 with
    ``missing`` (``{key}`` in it: the key), not a 500: the client left it out."""
    made = kind(items)
    made._missing = missing
    return made


class QueryParams(MultiDict[str]):
    """The query string, decoded once; blank values are kept (``?a=&b`` gives ``a=""``)."""

    __slots__ = ()


class Headers(MultiDict[str]):
    """Request headers; names are case-insensitive."""

    __slots__ = ()

    @staticmethod
    def _norm(key: str) -> str:
        return key.lower()


class FormData(MultiDict[str]):
    """The fields of a form body (``req.form()``); a file field is in ``req.files()``."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file sent in a ``multipart/form-data`` body (``req.files()``)."""

    #: The name the client gave it (not a path to trust: it may hold "../" or be empty).
    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"UploadedFile({self.filename!r}, {self.content_type!r}, {self.size} bytes)"


class Files(MultiDict[UploadedFile]):
    """The files of a ``multipart/form-data`` body, by field name (``req.files()``)."""

    __slots__ = ()
