"""The stix2 library's TAXII data store (TAXIICollectionSink / TAXIICollectionSource) against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import stix2
from stix2 import Filter, TAXIICollectionSink, TAXIICollectionSource
from stix2.datastore import DataSourceError
from taxii2client.v21 import Collection

from .support import TLP, Broker, Party

pytestmark = pytest.mark.integration


@contextmanager
def collection(broker: Broker, party: Party, title: str) -> Iterator[Collection]:
    url = f"{broker.root}collections/{broker.collection_ids(party)[title]}/"
    with Collection(url, user=party.name, password=party.token) as c:
        yield c


def test_sink_and_source(broker: Broker) -> None:
    provider, consumer = broker.pair("Datastore")
    green = TLP["green"]
    malware = stix2.v21.Malware(name="Grain Moth", is_family=True, object_marking_refs=[green])
    ind = stix2.v21.Indicator(
        name="Grain Moth C2",
        pattern="[domain-name:value = 'c2.grain-moth.example']",
        pattern_type="stix",
        valid_from="2026-01-02T03:04:05.678Z",
        object_marking_refs=[green],
    )
    rel = stix2.v21.Relationship(ind, "indicates", malware, object_marking_refs=[green])
    old_tlp = stix2.v21.Indicator(  # a TLP 1.0 marking is understood too
        name="Old marking",
        pattern="[ipv4-addr:value = '192.0.2.1']",
        pattern_type="stix",
        valid_from="2026-01-02T03:04:05Z",
        object_marking_refs=[stix2.TLP_GREEN],
    )

    with collection(broker, provider, "outbox") as outbox:
        sink = TAXIICollectionSink(outbox)
        sink.add(stix2.v21.Bundle(malware, ind, rel))  # a bundle in one POST
        sink.add([old_tlp])  # one object per POST

    with collection(broker, consumer, "inbox") as inbox:
        with pytest.raises(DataSourceError):
            TAXIICollectionSink(inbox)  # the inbox is read-only, and says so
        source = TAXIICollectionSource(inbox)

        indicators = source.query([Filter("type", "=", "indicator")])
        assert sorted(i.name for i in indicators) == ["Grain Moth C2", "Old marking"]
        ind_copy = next(i for i in indicators if i.name == "Grain Moth C2")
        assert ind_copy.id != ind.id and ind_copy.pattern == ind.pattern
        assert ind_copy.created_by_ref == broker.identity["id"]
        assert ind_copy.object_marking_refs == [green]
        old_copy = next(i for i in indicators if i.name == "Old marking")
        assert old_copy.object_marking_refs == [green]  # re-issued as TLP 2.0

        (mal_copy,) = source.query([Filter("type", "=", "malware")])
        (rel_copy,) = source.query([Filter("type", "=", "relationship")])
        assert (rel_copy.source_ref, rel_copy.target_ref) == (ind_copy.id, mal_copy.id)
        assert rel_copy.relationship_type == "indicates"

        got = source.get(ind_copy.id)
        assert got == ind_copy
        assert source.get(ind.id) is None  # the provider's id means nothing here
        # local filters on top of TAXII filters
        assert source.query([Filter("type", "=", "indicator"), Filter("name", "=", "Old marking")]) == [old_copy]
        assert len(source.query()) == 4

    # the provider revises the indicator; the consumer's copy gets a new version of the same id
    revised = ind.new_version(name="Grain Moth C2 (revised)")
    with collection(broker, provider, "outbox") as outbox:
        TAXIICollectionSink(outbox).add(revised)

    with collection(broker, consumer, "inbox") as inbox:
        source = TAXIICollectionSource(inbox)
        latest = source.get(ind_copy.id)
        assert latest.name == "Grain Moth C2 (revised)"
        assert latest.created == ind_copy.created and latest.modified > ind_copy.modified
        versions = source.all_versions(ind_copy.id)
        assert sorted(v.name for v in versions) == ["Grain Moth C2", "Grain Moth C2 (revised)"]
        assert {v.id for v in versions} == {ind_copy.id}
        assert len(source.query([Filter("type", "=", "indicator")])) == 2
