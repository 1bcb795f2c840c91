"""``MultiDict``, ``QueryParams`` and ``Headers``: repeated keys keep every value."""

from __future__ import annotations

import pytest

from hibana import Headers, QueryParams
from hibana.datastructures import MultiDict


def test_get_gives_the_first_value_and_getlist_all_in_order() -> None:
    q = QueryParams([("tag", "a"), ("page", "2"), ("tag", "b"), ("tag", "c")])
    assert q.get("tag") == "a"
    assert q["tag"] == "a"
    assert q.getlist("tag") == ["a", "b", "c"]
    assert q.getlist("page") == ["2"]


def test_missing_key() -> None:
    q = QueryParams([("a", "1")])
    assert q.get("b") is None
    assert q.get("b", "fallback") == "fallback"
    assert q.getlist("b") == []
    assert "b" not in q
    with pytest.raises(KeyError) as info:
        q["b"]
    # one made by code of its own is not the request's: no 400 that blames a client
    assert type(info.value) is KeyError


def test_mapping_view_has_one_entry_per_key() -> None:
    q = QueryParams([("a", "1"), ("b", "2"), ("a", "3")])
    assert len(q) == 2
    assert list(q) == ["a", "b"]
    assert dict(q) == {"a": "1", "b": "2"}
    assert list(q.items()) == [("a", "1"), ("b", "2")]
    assert q.multi_items() == [("a", "1"), ("b", "2"), ("a", "3")]


def test_blank_values_are_kept() -> None:
    q = QueryParams([("a", ""), ("a", "x")])
    assert q.get("a") == ""
    assert q.getlist("a") == ["", "x"]
    assert "a" in q


def test_query_keys_are_case_sensitive() -> None:
    q = QueryParams([("Name", "A"), ("name", "b")])
    assert q.get("Name") == "A"
    assert q.get("name") == "b"
    assert q.get("NAME") is None


def test_empty() -> None:
    q = QueryParams()
    assert len(q) == 0
    assert list(q) == []
    assert q.multi_items() == []


def test_equality_and_repr() -> None:
    items = [("a", "1"), ("a", "2")]
    assert QueryParams(items) == QueryParams(items)
    assert QueryParams(items) != QueryParams([("a", "2"), ("a", "1")])
    assert QueryParams([("a", "1")]) == {"a": "1"}
    assert repr(QueryParams(items)) == "QueryParams([('a', '1'), ('a', '2')])"


def test_not_hashable() -> None:
    with pytest.raises(TypeError):
        hash(MultiDict())


def test_contains_rejects_non_strings() -> None:
    number: object = 1
    nothing: object = None
    assert number not in QueryParams([("1", "x")])
    assert nothing not in Headers([("a", "b")])


def test_header_names_are_case_insensitive() -> None:
    h = Headers([("Content-Type", "text/plain"), ("X-Tag", "a"), ("x-tag", "b"), ("X-TAG", "c")])
    assert h.get("content-type") == "text/plain"
    assert h["CONTENT-TYPE"] == "text/plain"
    assert "Content-type" in h
    assert h.getlist("x-Tag") == ["a", "b", "c"]
    assert h.get("X-Tag") == "a"
    assert len(h) == 2
    assert list(h) == ["content-type", "x-tag"]
    assert h.get("missing") is None


def test_headers_keep_the_names_they_arrived_with() -> None:
    h = Headers([("X-Request-Id", "1")])
    assert h.multi_items() == [("X-Request-Id", "1")]
