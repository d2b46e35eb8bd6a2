"""How ``cutout send`` cuts a file into envelopes (``cutout.client.envelopes``): every object once, no envelope
over the exchange's size limit or ``--per``, each object after what it refers to, a refusal said of the file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cutout.client import Envelope, _in_envelope, envelopes, references
from cutout.errors import InvalidContent, Problem, TooLarge, Unreachable


def _obj(n: int, refs: Sequence[int] = (), text: str = "") -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "note", "id": f"note--{n:08d}-0000-4000-8000-000000000000", "content": text}
    if refs:
        obj["object_refs"] = [_obj(r)["id"] for r in refs]
    return obj


def _where(posts: list[Envelope]) -> dict[int, int]:
    return {i: k for k, post in enumerate(posts) for i in post.indexes}


def test_a_file_that_fits_is_one_envelope_in_its_own_order() -> None:
    objs = [_obj(0, [1]), _obj(1), _obj(2, [0])]
    (post,) = envelopes(objs, 10_000)
    assert post.indexes == (0, 1, 2)
    assert post.body == orjson.dumps({"objects": objs})  # byte for byte what one POST of the file sends


def test_what_is_referred_to_goes_first() -> None:
    # a sighting listed before the indicator and the location it names: both reach the exchange before it
    sighting = {
        "type": "sighting",
        "id": "sighting--1",
        "sighting_of_ref": "indicator--1",
        "where_sighted_refs": ["location--1"],
    }
    objs = [sighting, {"type": "indicator", "id": "indicator--1"}, {"type": "location", "id": "location--1"}]
    posts = envelopes(objs, None, per=1)
    assert [post.indexes for post in posts] == [(1,), (2,), (0,)]
    assert [orjson.loads(post.body)["objects"] for post in posts] == [[objs[1]], [objs[2]], [sighting]]


def test_each_version_of_a_referred_object_goes_first() -> None:
    old = {"type": "indicator", "id": "indicator--1", "modified": "2026-01-01T00:00:00.000Z"}
    new = {"type": "indicator", "id": "indicator--1", "modified": "2026-02-01T00:00:00.000Z"}
    note = {"type": "note", "id": "note--1", "object_refs": ["indicator--1"]}
    posts = envelopes([note, old, new], None, per=1)
    assert [post.indexes for post in posts] == [(1,), (2,), (0,)]


def test_a_cycle_stays_in_one_envelope_where_it_fits() -> None:
    objs = [_obj(0), _obj(1, [2]), _obj(2, [1]), _obj(3)]
    posts = envelopes(objs, None, per=2)
    assert [post.indexes for post in posts] == [(0,), (1, 2), (3,)]


def test_references_at_any_depth() -> None:
    obj = {
        "type": "x",
        "created_by_ref": "identity--1",
        "object_marking_refs": ["marking-definition--1"],
        "granular_markings": [{"marking_ref": "marking-definition--2", "selectors": ["name"]}],
        "extensions": {"x-ext": {"nested": {"target_ref": "indicator--1", "other_refs": ["a", 7]}}},
        "name_ref": 5,  # not an id: ignored
    }
    assert references(obj) == {"identity--1", "marking-definition--1", "marking-definition--2", "indicator--1", "a"}


def test_an_object_too_large_alone_is_refused_before_anything_is_sent() -> None:
    objs = [_obj(0, text="a"), _obj(1, text="b" * 500)]
    with pytest.raises(TooLarge, match=r"object 1 \(note--00000001-.*\) is 5\d\d bytes.*max_content_length \(300"):
        envelopes(objs, 300)


def test_a_refusal_is_said_of_the_file() -> None:
    posts = [Envelope((3, 0), b""), Envelope((2, 1), b""), Envelope((4,), b"")]
    refused = _in_envelope(InvalidContent("1 of 2 objects are not valid", (Problem(1, "x--1", "bad"),)), 2, posts)
    assert isinstance(refused, InvalidContent)
    assert refused.message == (
        "envelope 2 of 3 (2 objects; the 1 before it, 2 objects, were stored): 1 of 2 objects are not valid"
    )
    assert refused.problems == (Problem(1, "x--1", "bad"),)  # index 1 of the envelope is the file's object 1
    refused = _in_envelope(InvalidContent("bad", (Problem(0, "y--1", "bad"),)), 1, posts)
    assert isinstance(refused, InvalidContent) and refused.problems[0].index == 3
    assert refused.message == "envelope 1 of 3 (2 objects): bad"
    cut = _in_envelope(Unreachable("cannot reach"), 3, posts)
    assert type(cut) is Unreachable and "the 2 before it, 4 objects, were stored" in cut.message


@st.composite
def _files(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 40))
    objs = []
    for i in range(n):
        refs = draw(st.lists(st.integers(0, n - 1), max_size=3))  # cycles and self-references included
        objs.append(_obj(i, refs, draw(st.text(max_size=60))))
    return objs


@settings(max_examples=300, deadline=None)
@given(_files(), st.integers(1, 8), st.integers(400, 2_000))
def test_every_object_once_within_the_limits_and_after_what_it_refers_to(
    objs: list[dict[str, Any]], per: int, max_bytes: int
) -> None:
    try:
        posts = envelopes(objs, max_bytes, per)
    except TooLarge:
        assert any(len(orjson.dumps(o)) > max_bytes - len(b'{"objects":[]}') for o in objs)
        return
    assert sorted(i for post in posts for i in post.indexes) == list(range(len(objs)))
    for post in posts:
        assert len(post.body) <= max_bytes
        assert orjson.loads(post.body) == {"objects": [objs[i] for i in post.indexes]}
        assert len(post.indexes) <= per
    where = _where(posts)
    by_id = {o["id"]: i for i, o in enumerate(objs)}
    for i, obj in enumerate(objs):
        for ref in obj.get("object_refs", ()):
            j = by_id[ref]
            # what it refers to is in an earlier envelope or this one, unless the two refer to each other
            # (a cycle) and the cycle does not fit in one envelope
            if where[j] > where[i]:
                assert _reaches(objs, j, i, by_id)
                cycle = [k for k in range(len(objs)) if _reaches(objs, k, i, by_id) and _reaches(objs, i, k, by_id)]
                size = sum(len(orjson.dumps(objs[k])) + 1 for k in cycle) + len(b'{"objects":[]}') - 1
                assert len(cycle) > per or size > max_bytes


def _reaches(objs: list[dict[str, Any]], start: int, goal: int, by_id: dict[str, int]) -> bool:
    seen, todo = {start}, [start]
    while todo:
        k = todo.pop()
        if k == goal:
            return True
        for ref in objs[k].get("object_refs", ()):
            if by_id[ref] not in seen:
                seen.add(by_id[ref])
                todo.append(by_id[ref])
    return False
