"""Subscription filters: the dialects of the CloudEvents Subscriptions API (exact, prefix,
suffix, all, any, not). A filter is plain data with a JSON form, so the store can keep the
app's subscriptions and the CLI can route an event without importing the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from hibana.events.cloudevent import CloudEvent, is_attribute_name

Dialect = Literal["exact", "prefix", "suffix", "all", "any", "not"]


@dataclass(frozen=True, slots=True)
class Filter:
    dialect: Dialect
    #: exact/prefix/suffix: attribute -> value (every pair must hold)
    attributes: tuple[tuple[str, str], ...] = ()
    #: all/any: the filters combined; not: the one negated
    filters: tuple[Filter, ...] = ()

    # -- the dialects -------------------------------------------------------------------
    @staticmethod
    def exact(**attributes: str) -> Filter:
        """Every named attribute equals its value: ``Filter.exact(type="com.github.push")``."""
        return Filter("exact", _pairs("exact", attributes))

    @staticmethod
    def prefix(**attributes: str) -> Filter:
        return Filter("prefix", _pairs("prefix", attributes))

    @staticmethod
    def suffix(**attributes: str) -> Filter:
        return Filter("suffix", _pairs("suffix", attributes))

    @staticmethod
    def all(*filters: Filter) -> Filter:
        return Filter("all", filters=_filters("all", filters))

    @staticmethod
    def any(*filters: Filter) -> Filter:
        return Filter("any", filters=_filters("any", filters))

    @staticmethod
    def not_(inner: Filter) -> Filter:
        return Filter("not", filters=_filters("not", (inner,)))

    # -- evaluation ----------------------------------------------------------------------
    def matches(self, event: CloudEvent) -> bool:
        d = self.dialect
        if d == "exact":
            return all(event.get(k) == v for k, v in self.attributes)
        if d == "prefix":
            return all(
                (value := event.get(k)) is not None and value.startswith(v)
                for k, v in self.attributes
            )
        if d == "suffix":
            return all(
                (value := event.get(k)) is not None and value.endswith(v)
                for k, v in self.attributes
            )
        if d == "all":
            return all(f.matches(event) for f in self.filters)
        if d == "any":
            return any(f.matches(event) for f in self.filters)
        return not self.filters[0].matches(event)

    # -- the JSON form of the Subscriptions API --------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        if self.dialect in ("exact", "prefix", "suffix"):
            return {self.dialect: dict(self.attributes)}
        if self.dialect == "not":
            return {"not": self.filters[0].to_dict()}
        return {self.dialect: [f.to_dict() for f in self.filters]}

    @staticmethod
    def from_dict(obj: dict[str, Any]) -> Filter:
        if not isinstance(obj, dict) or len(obj) != 1:
            raise ValueError(f"a filter is an object with one dialect key, not {obj!r}")
        ((dialect, value),) = obj.items()
        if dialect in ("exact", "prefix", "suffix"):
            # as stored by the app when it started, and checked then
            return Filter(dialect, _pairs(dialect, value, stored=True))  # type: ignore[arg-type]
        if dialect in ("all", "any"):
            return Filter(dialect, filters=tuple(Filter.from_dict(v) for v in value))  # type: ignore[arg-type]
        if dialect == "not":
            return Filter("not", filters=(Filter.from_dict(value),))
        raise ValueError(
            f"unknown filter dialect {dialect!r}; use exact, prefix, suffix, all, any, not"
        )


def _pairs(
    dialect: str, attributes: dict[str, Any], stored: bool = False
) -> tuple[tuple[str, str], ...]:
    if not attributes:
        raise ValueError(f"Filter.{dialect}() needs at least one attribute=value")
    for k, v in attributes.items():
        if not isinstance(v, str):
            raise ValueError(f"Filter.{dialect}({k}={v!r}): the value must be a string")
        if not stored:
            _check_attribute(dialect, k, v)
    return tuple(sorted((k.lower(), v) for k, v in attributes.items()))


def _check_attribute(dialect: str, name: str, value: str) -> None:
    """``name`` can be an event's attribute: a filter on one that cannot never matches
    (``event_type=``, a keyword argument's natural spelling, or ``data``), and the
    subscription it guards would be quiet for ever."""
    lower = name.lower()
    if lower == "data":
        raise ValueError(
            f"Filter.{dialect}({name}={value!r}): data is the event's payload, not an "
            "attribute; a filter matches context attributes (type, source, subject...) "
            "and extensions: test the data in the function"
        )
    if not is_attribute_name(lower):
        spelled = "".join(c for c in lower if c.isascii() and c.isalnum()) or "myext"
        raise ValueError(
            f"Filter.{dialect}({name}={value!r}): no event has an attribute named {name!r} "
            "(CloudEvents attribute names are lower-case letters a-z and digits only), so "
            "this filter would match none; name one that events carry: type, source, "
            f"subject, or an extension as they spell it ({spelled})"
        )


def _filters(dialect: str, filters: tuple[Any, ...]) -> tuple[Filter, ...]:
    if not filters:
        raise ValueError(f"Filter.{dialect}() needs at least one filter")
    for f in filters:
        if not isinstance(f, Filter):
            raise ValueError(f"Filter.{dialect}() takes filters, not {f!r}")
    return tuple(filters)
