"""Property-based canary tests of the channel back (hypothesis): requests for information, answers and outcomes.

Two providers and two consumers on a fresh broker per example (SQLite in a temporary folder, or the PostgreSQL
test database), served in process. The requesting consumer's agreements: the first provider covers
everything; the second covers its requests or not (drawn: everything, or only another area, or only a type
the requests do not ask for). The other consumer has broad agreements with both providers. Both providers
send plain intel first, so the requester has copies to report outcomes on.

The requester then posts ``x-cutout-request`` objects (and perhaps a newer version of one) and outcomes, with
its canaries (the generators and the search of ``tests/api/test_canaries.py``) planted in:

* every id it sends, ``created_by_ref`` (its signing identity, sent first when it is also a provider so the
  exchange learns the name), statement marking ids, ``object_marking_refs`` and ``granular_markings``
  (selectors naming its custom properties, granular ``lang``);
* the exact ``created``/``modified``, ``expires``, ``window_start``/``window_end`` (odd seconds and
  milliseconds: the coarsened values never contain them);
* the question (its party name and signing identity's name in odd spellings, e-mail addresses, phone
  numbers, beside content markers that may pass), ``labels``, ``lang``, an odd ``confidence``;
* ``external_references`` of private sources, custom ``x_`` properties (names and values, nested, lists,
  references), property extensions of its own beside the request extension;
* outcomes: an opinion with the outcome extension for each of the five outcomes, sightings with it, and
  plain feedback, each with the same canaries (authors, where_sighted_refs, exact counts, ...);
* the HTTP request headers of every post (User-Agent, X-Forwarded-For, Forwarded, Via, Cookie, a custom
  header, ...).

After the feedback batch falls due, each provider and the other consumer call every read endpoint they have
(``walk``) and no requester canary may appear in any byte they receive. The request reaches exactly the
covering providers, as the exchange's copy (its identity, its extension alone, nothing custom); the other
consumer receives nothing new. Outcomes reach the provider whose object they name with exactly the documented
opinion value and extension (docs/extensions.md).

Then the first provider answers: a note (or opinion, or report) referencing its copy of the request and
intel of the same envelope, with its own canaries everywhere (identities, markings, extension definitions,
ids, timestamps, custom properties, names and contacts in free text, request headers). No provider canary
may reach either consumer; the requester finds the answer naming its own request id; the other consumer
never sees the id of any request (the requester's, or either provider's copy).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from cutout.api import create_app
from cutout.extensions import OUTCOME_EXT, OUTCOMES, PRIORITIES, REQUEST_EXT, REQUEST_TYPE
from cutout.model.timestamps import now_us
from cutout.service import Exchange
from cutout.settings import load_settings
from tests.api.test_canaries import (
    ODD_CONFIDENCE,
    RELEASED,
    SETTINGS,
    Author,
    Gen,
    Party,
    feedback_object,
    request_headers,
    seed_intel,
    walk,
)
from tests.conftest import POSTGRES_URL, reset_postgres

#: the mapping docs/extensions.md promises (written out here, not imported: the test holds the docs to it)
DOCUMENTED_OPINION = {
    "confirmed-hit": "strongly-agree",
    "acted-unconfirmed": "agree",
    "stale": "neutral",
    "not-found": "disagree",
    "false-positive": "strongly-disagree",
}
#: examples per route: every route is tried on every backend (drawn, three routes were sometimes not all covered)
EXAMPLES = {"sqlite": 3, "postgres": 1}
ROUTES = ("covers", "area", "types")
ELSEWHERE = "100,-10,110,0"
VALLEY_AREA = [32.0, 45.0, 34.0, 47.0]  # what requests ask about when the area decides the route
#: what a provider's copy of a request may hold: nothing else
REQUEST_COPY_KEYS = {
    "type", "spec_version", "id", "created_by_ref", "created", "modified", "extensions", "object_marking_refs",
    "question", "priority", "expires", "area", "window_start", "window_end", "object_types", "confidence",
    "revoked",
}  # fmt: skip


# -- the requester's objects -------------------------------------------------------------------------------------


def future_stamp(g: Gen, where: str, lo_days: float, hi_days: float) -> str:
    """An exact future timestamp with odd seconds and milliseconds (a canary, and its seconds prefix)."""
    base = datetime.fromtimestamp(now_us() / 1e6, UTC)
    while True:
        t = base + timedelta(milliseconds=g.rng.randrange(int(lo_days * 86_400_000), int(hi_days * 86_400_000)))
        t = t.replace(microsecond=g.rng.randrange(1, 1000, 2) * 1000)
        if t.second:
            break
    text = t.strftime("%Y-%m-%dT%H:%M:%S") + f".{t.microsecond // 1000:03d}Z"
    g.plant(text, where)
    g.plant(text[:19], where)
    return text


def custom_x(a: Author, obj: dict[str, Any], where: str) -> None:
    """Custom ``x_`` properties (a request may carry only these): names and values are canaries."""
    g = a.g
    for _ in range(g.count(1, 3)):
        kind = g.pick(("value", "nested", "list", "ref"))
        name = f"x_{g.token(where + ' custom property name')}"
        if kind == "value":
            obj[name] = g.token(where + " custom property value")
        elif kind == "nested":
            obj[name] = {g.token(where + " custom nested key"): [g.token(where + " custom nested value"), 7]}
        elif kind == "list":
            obj[name] = [g.token(where + " custom list value"), g.token(where + " custom list value")]
        else:
            obj[name + "_ref"] = g.pick(a.signers)


def request_object(a: Author, route: str) -> dict[str, Any]:
    """An ``x-cutout-request`` with the requester's canaries everywhere it can carry them."""
    g = a.g
    obj = a.sdo(REQUEST_TYPE)
    w = obj.pop("_where")
    obj["question"] = a.text(w + " question")
    obj["priority"] = g.pick(PRIORITIES)
    obj["expires"] = future_stamp(g, w + " expires", 2, 40)
    if g.flag():
        obj["window_start"], obj["window_end"] = g.stamps(w + " window", 2, digits=3)
    if route == "area" or g.flag():
        obj["area"] = VALLEY_AREA
    if route == "types" or g.flag():
        wanted = [t for t in RELEASED if t != "indicator"]
        obj["object_types"] = g.subset(wanted, 1, 4)
    if "confidence" not in obj and g.flag():
        obj["confidence"] = g.pick(ODD_CONFIDENCE)
        g.plant(f'"confidence":{obj["confidence"]}', w + " confidence")
    custom_x(a, obj, w)
    ext: dict[str, Any] = {REQUEST_EXT: {"extension_type": "new-sdo"}}
    if g.flag():
        ext[a.ext_prop] = {
            "extension_type": "property-extension",
            g.token(w + " extension property name"): g.token(w + " extension property value"),
            "case": {"number": g.token(w + " extension nested value")},
        }
    obj["extensions"] = ext
    a.markings(obj, w)
    return a.register(obj)


def revised(a: Author, req: dict[str, Any]) -> dict[str, Any]:
    """A newer version of a request: a new exact modified, a new question."""
    g = a.g
    out = dict(req)
    out["modified"] = g.stamp(f"{REQUEST_TYPE} new version modified", datetime.fromisoformat(req["modified"]))[0]
    out["question"] = a.text(f"{REQUEST_TYPE} new version question")
    return out


def outcome_object(a: Author, copies: list[dict[str, Any]], obj_type: str, outcome: str | None) -> dict[str, Any]:
    """Feedback with canaries (test_canaries' generator), carrying ``outcome`` in the outcome extension."""
    obj = feedback_object(a, obj_type, copies)
    if outcome is not None:
        obj.setdefault("extensions", {})[OUTCOME_EXT] = {"extension_type": "property-extension", "outcome": outcome}
        if obj_type == "opinion":
            obj["opinion"] = DOCUMENTED_OPINION[outcome]
    return obj


def expected_outcome(obj: dict[str, Any]) -> str | None:
    """What the provider must be told, by docs/extensions.md."""
    ext = (obj.get("extensions") or {}).get(OUTCOME_EXT)
    if ext is not None:
        return str(ext["outcome"])
    if obj["type"] == "opinion":
        return {v: k for k, v in DOCUMENTED_OPINION.items()}[obj["opinion"]]
    if obj["type"] == "sighting":
        return "confirmed-hit"
    return None


@dataclass(repr=False)
class Case:
    requester: Author
    provides: bool  # the requester is also a provider: it sends its identity first and the exchange learns it
    route: str  # how the second provider stands towards the requests: "covers", "area" or "types"
    n_requests: int
    revise: bool
    answer_type: str
    requester_headers: dict[str, str]

    def __repr__(self) -> str:
        return (
            f"Case(route={self.route!r}, provides={self.provides}, requests={self.n_requests}, "
            f"revise={self.revise}, answer={self.answer_type!r})"
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


@st.composite
def cases(draw: st.DrawFn, route: str) -> Case:
    g = Gen(draw)
    a = Author(g, "consumer")
    provides = g.flag()
    return Case(
        requester=a,
        provides=provides,
        route=route,
        n_requests=g.count(1, 2),
        revise=g.flag(),
        answer_type=g.pick(("note", "opinion", "report")),
        requester_headers=request_headers(g, "consumer"),
    )


# -- the rig --------------------------------------------------------------------------------------------------------


@dataclass
class Four:
    exchange: Exchange
    p1: Party  # covers the requests
    p2: Party  # covers them or not
    c1: Party  # the requester
    c2: Party  # the other consumer


P2, C2 = "Provider Saltmarsh", "Consumer Fernhill"


@contextlib.contextmanager
def four(backend: str, requester: str, route: str, requester_provides: bool, p1_name: str) -> Iterator[Four]:
    with tempfile.TemporaryDirectory() as tmp:
        overrides: dict[str, Any] = {"sqlite_synchronous": "NORMAL"}
        if backend == "postgres":
            reset_postgres(POSTGRES_URL)
            overrides = {"database_url": POSTGRES_URL}
        cfg = load_settings(Path(tmp) / "broker", overrides, environ={})
        Exchange.init(cfg, "Canary Exchange")
        ex = Exchange.open(cfg)
        try:
            tokens = {
                p1_name: ex.add_party(p1_name, provider=True, consumer=False)[1],
                P2: ex.add_party(P2, provider=True, consumer=False)[1],
                requester: ex.add_party(requester, provider=requester_provides, consumer=True)[1],
                C2: ex.add_party(C2, provider=False, consumer=True)[1],
            }
            ex.add_agreement(p1_name, requester, tlp_max="red")
            if route == "covers":
                ex.add_agreement(P2, requester, tlp_max="red")
            elif route == "area":
                ex.add_agreement(P2, requester, tlp_max="red", area=ELSEWHERE)
            else:
                ex.add_agreement(P2, requester, tlp_max="red", types=["indicator"])
            ex.add_agreement(p1_name, C2, tlp_max="red")
            ex.add_agreement(P2, C2, tlp_max="red")
            with TestClient(create_app(cfg, ex, run_scheduler=False)) as client:
                parties = [Party(client, name, token) for name, token in tokens.items()]
                yield Four(ex, *parties)
        finally:
            ex.close()


def backends() -> list[Any]:
    return ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _skip_without_postgres(backend: str) -> None:
    if backend == "postgres" and not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need CUTOUT_TEST_POSTGRES=postgresql://… (CI sets it)")


def _leaks(party: Party, canaries: dict[str, str], who: str) -> None:
    found = party.transcript.leaks(canaries)
    assert not found, f"{len(found)} {who} canaries reached {party.name}:\n" + "\n".join(found[:20])


def _by_type(objs: list[dict[str, Any]], obj_type: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["type"] == obj_type]


def _origins(ex: Exchange, reader: str, out_id: str) -> set[tuple[str, str]]:
    """The operator's view: who sent the originals of a reader's copy, and their ids (an observable two
    providers sent has one id: it comes from its content)."""
    with ex.store.read() as tx:
        names = {p.id: p.name for p in tx.parties()}
        reader_id = next(pid for pid, name in names.items() if name == reader)
        return {(names[r.sender_id], str(r.orig_id)) for r in tx.copies_by_out(reader_id, [out_id])}


def _origin(ex: Exchange, reader: str, out_id: str) -> tuple[str, str]:
    (origin,) = _origins(ex, reader, out_id)
    return origin


# -- the test ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("backend", backends())
def test_no_party_identity_crosses_the_channel_back(backend: str, route: str) -> None:
    _skip_without_postgres(backend)
    outcomes_seen: Counter[str] = Counter()
    answered = 0

    @settings(max_examples=EXAMPLES[backend], **SETTINGS)
    @given(case=cases(route), data=st.data())
    def run(case: Case, data: st.DataObject) -> None:
        nonlocal answered
        a = case.requester
        g = a.g
        g.draw = data.draw
        # the answering provider's canaries: a generator of its own, drawn from the same example
        pg = Gen(data.draw)
        pg.rng.seed(f"provider {pg.rng.getrandbits(64)}")  # never the requester's values, even for equal seeds
        p = Author(pg, "provider")
        with four(backend, a.name, case.route, case.provides, p.name) as w:
            ex = w.exchange
            status: dict[str, list[str]] = {w.p1.name: [], P2: [], a.name: [], C2: []}
            for prov in (w.p1, w.p2):
                status[prov.name].append(prov.post(seed_intel())["id"])
            copies = w.c1.ok(f"/collections/{w.c1.collections()['inbox']}/objects/")["objects"]
            assert len(copies) >= 7  # all of the first provider's; the second's as its agreement allows
            c2_before = sorted(
                o["id"] for o in w.c2.ok(f"/collections/{w.c2.collections()['inbox']}/objects/")["objects"]
            )

            # -- the requester: its identity (if it may send one), requests, outcomes
            own = [a.identity("signer")]
            if case.provides:
                a.terms.names.append(a.signer_names[0])
                own.append(a.marking())
                own.extend(a.extension_definitions())
                status[a.name].append(w.c1.post(own, case.requester_headers)["id"])
            else:
                a.marks.append(g.oid("marking-definition", "consumer statement marking id"))
            requests = [request_object(a, case.route) for _ in range(case.n_requests)]
            status[a.name].append(w.c1.post(requests, case.requester_headers)["id"])
            if case.revise:
                requests[0] = revised(a, requests[0])
                status[a.name].append(w.c1.post([requests[0]], case.requester_headers)["id"])
            feedback = [outcome_object(a, copies, "opinion", o) for o in OUTCOMES]
            feedback += [outcome_object(a, copies, "sighting", g.pick(OUTCOMES)) for _ in range(g.count(1, 2))]
            feedback += [outcome_object(a, copies, g.pick(("opinion", "note", "sighting")), None)]
            status[a.name].append(w.c1.post(feedback, case.requester_headers)["id"])
            # nothing crosses before the batch
            for prov in (w.p1, w.p2):
                assert prov.ok(f"/collections/{prov.collections()['inbox']}/objects/")["objects"] == []
            ex.release_due(now_us() + (ex.settings.feedback_epoch + 1) * 1_000_000)

            # -- what the providers and the other consumer receive: nothing of the requester
            got = {prov.name: walk(prov, status[prov.name]) for prov in (w.p1, w.p2)}
            got_c2 = walk(w.c2, status[C2])
            for party in (w.p1, w.p2, w.c2):
                _leaks(party, g.canaries, "requester")
            assert sorted(o["id"] for o in got_c2["inbox"]) == c2_before, "the other consumer heard of it"

            # routing: each covering provider gets the exchange's copy of each request, and nothing more
            covering = [w.p1.name] + ([P2] if case.route == "covers" else [])
            copy_ids: list[str] = []
            for name in (w.p1.name, P2):
                mine = _by_type(got[name]["inbox"], REQUEST_TYPE)
                assert len({c["id"] for c in mine}) == (len(requests) if name in covering else 0), (name, mine)
                for c in mine:
                    assert c["created_by_ref"] == ex.identity["id"]
                    assert c["extensions"] == {REQUEST_EXT: {"extension_type": "new-sdo"}}
                    assert set(c) <= REQUEST_COPY_KEYS, sorted(set(c) - REQUEST_COPY_KEYS)
                    assert c["created"] == c["modified"] and c["modified"].endswith(":00.000Z")
                    assert _origin(ex, name, c["id"])[0] == a.name
                    copy_ids.append(c["id"])

            # outcomes: to the provider whose object is named, with exactly the documented values
            sent = {o["id"]: o for o in feedback}
            for name in (w.p1.name, P2):
                for back in got[name]["inbox"]:
                    if back["type"] == REQUEST_TYPE:
                        continue
                    sender, orig = _origin(ex, name, back["id"])
                    assert sender == a.name
                    src = sent[orig]
                    want = expected_outcome(src)
                    if want is None:
                        assert "extensions" not in back
                        continue
                    assert back["extensions"] == {
                        OUTCOME_EXT: {"extension_type": "property-extension", "outcome": want}
                    }, back
                    if back["type"] == "opinion":
                        assert back["opinion"] == DOCUMENTED_OPINION[want]
                    outcomes_seen[want] += 1
            # every opinion carrying an outcome reached every provider it names
            for o in feedback:
                if o["type"] == "opinion":
                    named = {sender for r in o["object_refs"] for sender, _ in _origins(ex, a.name, r)}
                    for name in named:
                        back_ids = [_origin(ex, name, b["id"])[1] for b in got[name]["inbox"]]
                        assert o["id"] in back_ids, (name, o["id"])

            # -- the first provider answers its copy of a request, with its canaries everywhere
            meta = [p.identity("signer")]
            p.terms.names.append(p.signer_names[0])
            meta.append(p.marking())
            meta.extend(p.extension_definitions())
            intel = [p.location(), p.indicator(), p.threat_actor()]
            target = next(c for c in _by_type(got[w.p1.name]["inbox"], REQUEST_TYPE))
            answer = p.sdo(case.answer_type)
            wa = answer["_where"]
            refs = [target["id"], *pg.subset([o["id"] for o in intel], 0, 3)]
            if case.answer_type == "note":
                answer["content"] = p.text(wa + " content")
            elif case.answer_type == "opinion":
                answer["opinion"] = pg.pick(tuple(DOCUMENTED_OPINION.values()))
                answer["explanation"] = p.text(wa + " explanation")
            else:
                answer["name"] = p.text(wa + " name", short=True)
                answer["published"] = pg.stamp(wa + " published")[0]
            answer["object_refs"] = refs
            p.authored(answer)
            answer = p.finish(answer)
            w.p1.post(meta + intel + [answer], request_headers(pg, "provider"))
            ex.release_due(now_us() + 10 * 1_000_000)
            mine = walk(w.c1, status[a.name])
            theirs = walk(w.c2, status[C2])
            # a short canary (``"lang":"cy"``, ``"confidence":67``) may also be in what the requester itself sent
            # and reads back from its outbox: that is its own, not a leak
            own_text = orjson.dumps([*own, *requests, *feedback]).decode().casefold()
            p_canaries = {k: v for k, v in pg.canaries.items() if k.casefold() not in own_text}
            for party in (w.c1, w.c2):
                _leaks(party, p_canaries, "answering provider")
            # the requester finds an answer naming its own request; the other consumer never a request id
            target_orig = _origin(ex, w.p1.name, target["id"])[1]
            answers = [o for o in mine["inbox"] if target_orig in o.get("object_refs", [])]
            assert answers, "the answer did not reach the requester naming its request"
            answered += 1
            found = w.c1.transcript.leaks({i: "a provider's copy of a request" for i in copy_ids})
            assert not found, found
            request_ids = [*copy_ids, *(r["id"] for r in requests)]
            found = w.c2.transcript.leaks({i: "a request id" for i in request_ids})
            assert not found, found
            assert not _by_type(theirs["inbox"], REQUEST_TYPE)

    run()
    assert set(outcomes_seen) == set(OUTCOMES), outcomes_seen
    assert answered == EXAMPLES[backend]
