"""How the service turns objects into collection rows."""

from __future__ import annotations

import random
from typing import Any

import pytest
from bench.workload import Workload

from cutout.model.timestamps import format_ms
from cutout.model.tlp import TLP2_IDS, object_tlp
from cutout.service import _all_refs, _Facts, _stored, _stored_copy
from cutout.store.sql import id_hash, id_hash_once


def test_a_copy_s_row_is_the_row_parsed_from_its_text() -> None:
    rng = random.Random(7)
    for _ in range(500):
        created = rng.randrange(0, 4_000_000_000_000_000)
        modified = created + rng.choice((0, 1000, rng.randrange(0, 10**9)))
        out = {"type": "indicator", "spec_version": "2.1", "id": "indicator--x", "created": format_ms(created)}
        if rng.random() < 0.8:
            out["modified"] = format_ms(modified)
        assert _stored_copy(out, 5, created, modified) == _stored(out, origin=5)
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr--x", "value": "198.51.100.7"}
    assert _stored_copy(sco, 5, 1, 2) == _stored(sco, origin=5)
    assert _stored(sco).id_hash == id_hash(sco["id"])  # what the store would work out without it
    assert _stored_copy(sco, 5, 1, 2).id_hash == id_hash_once(sco["id"]) == id_hash(sco["id"])


def test_what_is_worked_out_before_the_write_lock_is_what_the_release_would_work_out() -> None:
    """``_Facts``: each object's references and TLP level, as ``_all_refs`` and ``object_tlp`` give them, for
    the submission's own objects (by identity) and for any other object asked about; an object they cannot be
    worked out for is left to raise where it is asked about, as it did before."""
    objects: list[Any] = [dict(o) for o in Workload().objects(500)]
    for i, obj in enumerate(objects):  # the workload's are all green: four levels, and unmarked
        if i % 5:
            obj["object_marking_refs"] = [TLP2_IDS[i % 5 - 1]]
        else:
            obj.pop("object_marking_refs", None)
    assert any(_all_refs(o) for o in objects) and len({object_tlp(o, 9) for o in objects}) == 5
    facts = _Facts(objects, 9)
    for obj in objects:
        assert facts.refs(obj) == tuple(_all_refs(obj))
        assert facts.tlp(obj) == object_tlp(obj, 9)
    other = {**objects[0], "object_marking_refs": [TLP2_IDS[3]]}  # equal but for its marking: not the same
    assert facts.tlp(other) == 3
    assert "identity--x" in facts.refs({**objects[0], "created_by_ref": "identity--x"})
    odd: Any = ["not", "an", "object"]
    facts = _Facts([*objects[:3], odd], 1)  # no error here
    with pytest.raises(AttributeError):
        facts.tlp(odd)
    with pytest.raises(AttributeError):
        facts.refs(odd)
