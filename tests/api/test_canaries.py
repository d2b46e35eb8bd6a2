"""Property-based canary tests (hypothesis): nothing that identifies a party reaches the other side.

A provider posts random but *valid* STIX 2.1 envelopes holding objects of every type the exchange releases
(every SDO, SRO and SCO of ``PROFILES`` with ``released=True``) together with the types it never releases
(identity, marking-definition, extension-definition, language-content, artifact, a custom object type).
Canaries - unique random tokens (``cnry`` + random hex) or exact values the test remembers - are planted in
everything that can identify or link the provider:

* ids of every object it sends (all provider ids are canaries: none may reach a consumer, also not as a
  reference), ``created_by_ref`` and the signing identities themselves (name, description, roles, sectors,
  contact_information), the victim identities of sightings;
* the exact ``created``/``modified`` of every object and every operational timestamp (odd seconds and
  milliseconds, so the coarsened value a consumer may see - the minute - never contains them; the canary is
  the exact original string and its seconds-precision prefix);
* ``confidence`` values that the Admiralty quantisation cannot produce (the canary is ``"confidence":N``);
* ``labels``, ``lang`` (``"lang":"xx"``), ``external_references`` of private sources (source_name, url,
  description, external_id, hashes) and everything but source_name/external_id of public registries,
  malformed ids of public registries;
* statement marking definitions and ``object_marking_refs`` / ``granular_markings`` (marking ids, selectors
  naming custom properties, granular ``lang``);
* custom properties (``x_...`` and non-prefixed names, their names and values, nested), extension
  definitions (ids, names, schema URLs, property names and values, toplevel property extensions), the
  predefined SCO extensions (pdf-ext, ntfs-ext, http-request-ext, unix-account-ext, ...);
* kill chains other than the public ones, and custom phase names of the public ones;
* custom values of open vocabularies (``indicator_types``, ``context``, ``relationship_type``, ``region``,
  hash algorithm names, ...);
* every property the allow-lists deny (street_address, authors, credential, environment_variables, ipfix,
  received_lines, additional_header_fields, body_multipart, observed-data ``objects``, ...);
* the HTTP request headers the provider sends (User-Agent, X-Forwarded-For, Forwarded, Via, Referer, From,
  Cookie, a custom ``X-`` header whose name and value are canaries).

Free text is different. Released free-text properties (name, description, aliases, goals, abstract,
content, explanation, a file's name, a registry key, a command line, ...) are the provider's *content* and
are meant to reach the consumer: a random token inside a description is not a leak and is not counted as
one (each free text carries such a content marker, ``ctnt`` + hex, which is allowed through). In free text
the canaries are exactly what the exchange promises to redact: the provider's party name, the names of the
identities it signs with (learned when they are sent in the same or an earlier envelope), e-mail addresses
and international phone numbers - in varied spellings (case, full-width forms, odd white space, punctuation
around them). Likewise the values of released non-text properties (patterns, SCO values, hashes of known
algorithms, spec vocabulary values, public kill chain phases, ...) are content, not canaries.

Every generated object must be accepted by the server (the validator is strict: the generators produce valid
STIX; a refusal is a bug of the generator); the sanitizer may withhold any of them. Each example gets a fresh
broker (SQLite in a temporary folder, in-process ASGI app) with one agreement provider -> consumer of the
broadest scope (all types, up to TLP:RED, no area). The consumer then calls every read endpoint it has -
discovery, API root, collections, each collection, objects with and without filters and paging, each
object, its versions, the manifest, its own status resources - and no canary may appear (case-insensitive,
also after NFKC normalisation) in any byte it receives: status line, every header, every body. Over the run
every released type must actually reach the consumer, so the test cannot pass vacuously.

Then the same towards providers: a consumer posts sightings, opinions and notes about its copies, with its
own canaries (party name and signing identity's name, e-mail addresses and phone numbers in free text, its
identity and sighting locations in where_sighted_refs, observed_data_refs, authors, custom properties,
extensions, markings, exact timestamps, confidence, an exact count, request headers), and no consumer canary
may reach any byte the provider receives.
"""

from __future__ import annotations

import base64
import contextlib
import random
import tempfile
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from cutout.api import create_app
from cutout.model.timestamps import now_us
from cutout.model.tlp import TLP1_IDS, TLP2_IDS
from cutout.sanitize.profiles import PROFILES
from cutout.sanitize.vocab import KILL_CHAIN_PHASES, vocabularies
from cutout.service import Exchange
from cutout.settings import load_settings
from tests.api.conftest import TAXII

RELEASED = sorted(t for t, p in PROFILES.items() if p.released)
FEEDBACK = ("note", "opinion", "sighting")
TLP_IDS = (*TLP2_IDS, *TLP1_IDS)
#: confidence values whose quantised copy (10, 30, 50, 70, 90) never contains ``"confidence":N``
ODD_CONFIDENCE = tuple(v for v in range(101) if not any(str(q).startswith(str(v)) for q in (10, 30, 50, 70, 90)))
#: sighting counts of feedback whose bucketed copy never contains ``"count":N``
_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
ODD_COUNTS = tuple(v for v in range(3, 5000) if not any(str(b).startswith(str(v)) for b in _BUCKETS))
LANGS = ("cy", "de", "fr", "ru", "uk", "pl", "ja", "es", "it", "zh")
PROVIDER_EXAMPLES = 15
FEEDBACK_EXAMPLES = 12
SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    # a failing example is reported with the canary, where it was planted and where it came out; shrinking
    # these large envelopes would take long and tell no more
    "phases": [Phase.explicit, Phase.reuse, Phase.generate],
}


def vocab(obj_type: str, prop: str) -> list[str]:
    table = vocabularies()
    return sorted(table.get((obj_type, prop)) or table[("*", prop)])


# -- canaries ------------------------------------------------------------------------------------------------


class Gen:
    """Draws structure from hypothesis and random values from a seeded generator; remembers every canary.

    ``canaries`` maps each canary (a string that must never reach the other side) to where it was planted.
    """

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.rng = random.Random(draw(st.integers(0, 2**64 - 1)))
        self.canaries: dict[str, str] = {}

    # structure (hypothesis)
    def flag(self) -> bool:
        return self.draw(st.booleans())

    def pick(self, seq: Sequence[Any]) -> Any:
        return self.draw(st.sampled_from(seq))

    def count(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def subset(self, seq: Sequence[Any], lo: int = 0, hi: int | None = None) -> list[Any]:
        if not seq:
            return []
        hi = len(seq) if hi is None else min(hi, len(seq))
        picked = self.draw(st.lists(st.integers(0, len(seq) - 1), min_size=min(lo, hi), max_size=hi, unique=True))
        return [seq[i] for i in picked]

    # values (seeded)
    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def plant(self, canary: str, where: str) -> str:
        self.canaries.setdefault(canary, where)
        return canary

    def token(self, where: str) -> str:
        return self.plant(f"cnry{self.hex(12)}", where)

    def content(self) -> str:
        """A marker of the provider's content: allowed to reach the reader."""
        return f"ctnt{self.hex(10)}"

    def oid(self, obj_type: str, where: str) -> str:
        ident = f"{obj_type}--{uuid.UUID(int=self.rng.getrandbits(128), version=4)}"
        self.plant(ident, where)
        self.plant(ident.partition("--")[2], where)
        return ident

    def stamp(self, where: str, after: datetime | None = None, digits: int | None = None) -> tuple[str, datetime]:
        """An exact timestamp with odd seconds and milliseconds (a canary), later than ``after`` by > 1 min."""
        while True:
            if after is None:
                t = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(milliseconds=self.rng.randrange(6 * 365 * 86_400_000))
            else:
                t = after + timedelta(milliseconds=self.rng.randrange(61_000, 40 * 86_400_000))
            t = t.replace(microsecond=(self.rng.randrange(1, 1000, 2)) * 1000 + self.rng.randrange(1000))
            if t.second:
                break
        n = digits if digits is not None else self.pick((3, 3, 6))
        text = t.strftime("%Y-%m-%dT%H:%M:%S") + f".{t.microsecond:06d}"[: n + 1] + "Z"
        self.plant(text, where)
        self.plant(text[:19], where)
        return text, t

    def stamps(self, where: str, n: int, digits: int | None = None) -> list[str]:
        out: list[str] = []
        last: datetime | None = None
        for _ in range(n):
            text, last = self.stamp(where, last, digits)
            out.append(text)
        return out

    def ipv4(self, where: str) -> str:
        return self.plant(
            f"10.{self.rng.randrange(1, 255)}.{self.rng.randrange(1, 255)}.{self.rng.randrange(1, 255)}", where
        )

    def sha256(self) -> str:
        return self.hex(64)


_FULLWIDTH = {c: chr(ord(c) + 0xFEE0) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"}
_FULLWIDTH[" "] = "\u3000"


def spell(g: Gen, name: str) -> str:
    """One of the spellings of a name that redaction must still catch."""
    kind = g.pick(("as-is", "upper", "lower", "title", "fullwidth", "spaces", "nbsp", "newline"))
    if kind == "upper":
        return name.upper()
    if kind == "lower":
        return name.lower()
    if kind == "title":
        return name.title()
    if kind == "fullwidth":
        return "".join(_FULLWIDTH.get(c, c) for c in name)
    if kind == "spaces":
        return name.replace(" ", "  \t ")
    if kind == "nbsp":
        return name.replace(" ", "\u00a0")
    if kind == "newline":
        return name.replace(" ", "\n")
    return name


def party_name(g: Gen, where: str, words: Sequence[str]) -> str:
    """A name whose first word is a canary token (so a partly redacted name still shows)."""
    token = g.token(where).capitalize()
    name = " ".join([token, *g.subset(words, 0, 2)])
    return g.plant(name, where)


def email(g: Gen, where: str) -> str:
    local = g.token(where + " (e-mail)")
    domain = g.token(where + " (e-mail domain)")
    kind = g.pick(("plain", "dotted", "sub", "upper", "fullwidth-at"))
    if kind == "dotted":
        addr = f"duty.{local}+desk@{domain}.example.org"
    elif kind == "sub":
        addr = f"{local}@mail.{domain}.example"
    elif kind == "upper":
        addr = f"{local}@{domain}.example".upper()
    elif kind == "fullwidth-at":
        addr = f"{local}\uff20{domain}.example"
    else:
        addr = f"{local}@{domain}.example"
    return g.plant(addr, where + " (e-mail)")


def phone(g: Gen, where: str) -> str:
    """An international phone number; the canaries are the number and its last two groups."""
    d = g.rng.randrange
    cc = g.pick(("44", "49", "33", "1", "39", "353", "358", "90"))
    a, b, c = f"{d(10, 99)}", f"{d(1000, 9999)}", f"{d(1000, 9999)}"
    kind = g.pick(("spaces", "dashes", "dots", "parens", "trunk", "compact"))
    sep = {"spaces": " ", "dashes": "-", "dots": ".", "parens": " ", "trunk": " ", "compact": ""}[kind]
    if kind == "parens":
        number, tail = f"+{cc} ({a}) {b}-{c}", f"{b}-{c}"
    elif kind == "trunk":
        number, tail = f"+{cc} (0){a} {b} {c}", f"{b} {c}"
    else:
        number, tail = f"+{cc}{sep}{a}{sep}{b}{sep}{c}", f"{b}{sep}{c}"
    g.plant(tail, where + " (phone)")
    return g.plant(number, where + " (phone)")


_SAYINGS = (
    "Reported by {x}.",
    "({x})",
    "{x}'s analysts saw it first;",
    "tracked by {x}, see below.",
    "«{x}»",
    "source: {x}",
    "- {x} -",
    "as {x} notes,",
)


@dataclass
class Terms:
    """What the exchange redacts from one party's free text."""

    names: list[str]  # the party name and the names of signing identities it knows by then


def free_text(g: Gen, where: str, terms: Terms, *, short: bool = False, ident: bool = False) -> str:
    """Free text: content (may pass) mixed with the terms the exchange must redact (canaries).

    ``ident``: the text is an SCO's identifier (name, path, key, subject), which the exchange withholds whole
    when it names the sender: names are planted less often there, so such SCOs are released often enough.
    """
    parts = [g.content()]
    for _ in range(g.count(1, 1 if short else 3)):
        # drawn uniformly (hypothesis would favour the first choice)
        kind = g.rng.choice(("name", "email", "phone") if ident else ("name", "name", "email", "phone"))
        if kind == "name":
            x = spell(g, g.pick(terms.names))
        elif kind == "email":
            x = g.pick(("{e}", "mailto:{e}", "<{e}>", "{e}.")).format(e=email(g, where))
        else:
            x = phone(g, where)
        parts.append(g.pick(_SAYINGS).format(x=x))
    if not short:
        parts.append(g.content())
    return " ".join(parts)


# -- the provider's envelopes --------------------------------------------------------------------------------


@dataclass
class Post:
    objects: list[dict[str, Any]]
    headers: dict[str, str]


@dataclass(repr=False)
class ProviderCase:
    name: str
    posts: list[Post]
    delete: str | None  # an object the provider withdraws at the end
    canaries: dict[str, str]
    types: Counter[str] = field(default_factory=Counter)  # what was sent, by type

    def __repr__(self) -> str:  # hypothesis prints it for a failing example: the envelopes would be too long
        sizes = [len(p.objects) for p in self.posts]
        return f"ProviderCase(name={self.name!r}, posts={sizes}, delete={self.delete!r}, canaries={len(self.canaries)})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


def request_headers(g: Gen, who: str) -> dict[str, str]:
    """Request headers a party's client or proxies add, every one of them a canary."""
    w = f"{who} request header"
    agent = g.token(w + " User-Agent")
    site = g.token(w + " Referer")
    custom = g.token(w + " custom name")
    h = {
        "User-Agent": f"{agent}-collector/4.2 (+https://{site}.example/bot)",
        "X-Forwarded-For": f"{g.ipv4(w + ' X-Forwarded-For')}, {g.ipv4(w + ' X-Forwarded-For')}",
        "Forwarded": f'for="_{g.token(w + " Forwarded for")}";by={g.ipv4(w + " Forwarded by")};'
        f"host={g.token(w + ' Forwarded host')}.example;proto=https",
        "Via": f"1.1 {g.token(w + ' Via')}.example (squid/6.1)",
        f"X-{custom.capitalize()}-Trace": g.token(w + " custom value"),
        "Cookie": f"{g.token(w + ' Cookie name')}={g.token(w + ' Cookie value')}; sid={g.hex(16)}",
        "Referer": f"https://{site}.example/portal/{g.token(w + ' Referer path')}",
        "From": f"{g.token(w + ' From')}@{g.token(w + ' From domain')}.example",
        "X-Real-IP": g.ipv4(w + " X-Real-IP"),
    }
    optional = ("Referer", "From", "X-Real-IP")
    return {k: v for k, v in h.items() if k not in optional or g.flag()}


class Author:
    """Builds a party's envelopes object by object, with canaries planted everywhere."""

    def __init__(self, g: Gen, role: str = "provider") -> None:
        self.g = g
        self.name = party_name(g, f"{role} party name", ("Signals", "Bureau", "CERT", "Analysis", "Desk", "Cell"))
        self.signers: list[str] = []
        self.signer_names: list[str] = []
        self.terms = Terms([self.name])
        self.marks: list[str] = []
        self.ext_prop = g.oid("extension-definition", "property-extension definition id")
        self.ext_top = g.oid("extension-definition", "toplevel extension definition id")
        self.ext_sdo = g.oid("extension-definition", "new-sdo extension definition id")
        self.top_props = [f"{g.token('toplevel extension property name')}_{s}" for s in ("case", "desk")]
        self.ids: dict[str, list[str]] = {}  # type -> ids sent
        self.objects: list[dict[str, Any]] = []
        self._n = 0

    # -- helpers
    def unique(self) -> int:
        self._n += 1
        return self._n

    def register(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.ids.setdefault(obj["type"], []).append(obj["id"])
        self.objects.append(obj)
        return obj

    def some_ids(self, types: Sequence[str], lo: int = 0, hi: int = 3) -> list[str]:
        pool = [i for t in types for i in self.ids.get(t, [])]
        return self.g.subset(pool, lo, hi)

    def one_id(self, types: Sequence[str]) -> str | None:
        pool = [i for t in types for i in self.ids.get(t, [])]
        return self.g.pick(pool) if pool else None

    def text(self, where: str, short: bool = False, ident: bool = False) -> str:
        return free_text(self.g, where, self.terms, short=short, ident=ident)

    def texts(self, where: str) -> list[str]:
        return [self.text(where, short=True) for _ in range(self.g.count(1, 3))]

    def vocab_value(self, obj_type: str, prop: str, where: str) -> str:
        if self.g.flag():
            return self.g.token(f"{where}: custom vocabulary value")
        return str(self.g.pick(vocab(obj_type, prop)))

    def vocab_list(self, obj_type: str, prop: str, where: str) -> list[str]:
        out = self.g.subset(vocab(obj_type, prop), 1, 3)
        if self.g.flag():
            out.append(self.g.token(f"{where}: custom vocabulary value"))
        return out

    def hashes(self, where: str, known: bool = True) -> dict[str, str]:
        g = self.g
        forms = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-512": 128, "SHA3-256": 64}
        out = {a: g.hex(n) for a in g.subset(sorted(forms), 1 if known else 0, 2) for n in (forms[a],)}
        if g.flag() or not out:
            out[g.token(f"{where}: custom hash algorithm")] = g.token(f"{where}: custom hash value")
        return out

    def kill_chains(self, where: str) -> list[dict[str, str]]:
        g = self.g
        out = []
        for chain in g.subset(sorted(KILL_CHAIN_PHASES), 0, 2):
            out.append({"kill_chain_name": chain, "phase_name": g.pick(sorted(KILL_CHAIN_PHASES[chain]))})
        if g.flag():
            chain = g.pick(sorted(KILL_CHAIN_PHASES))
            out.append({"kill_chain_name": chain, "phase_name": g.token(f"{where}: custom phase of {chain}")})
        if g.flag() or not out:
            out.append(
                {
                    "kill_chain_name": g.token(f"{where}: custom kill chain name"),
                    "phase_name": g.token(f"{where}: custom kill chain phase"),
                }
            )
        return out

    def external_references(self, where: str, public: Sequence[str] = ()) -> list[dict[str, Any]]:
        g = self.g
        w = f"{where} external_references"
        refs: list[dict[str, Any]] = []
        if g.flag() or not public:
            ref: dict[str, Any] = {"source_name": g.token(w + " source_name")}
            for prop in g.subset(("url", "description", "external_id"), 1, 3):
                if prop == "url":
                    ref["url"] = f"https://{g.token(w + ' url host')}.example/case/{g.token(w + ' url path')}"
                else:
                    ref[prop] = g.token(f"{w} {prop}")
            if g.flag():
                ref["hashes"] = {"SHA-256": g.plant(g.sha256(), w + " hashes")}
            refs.append(ref)
        for source in public:
            if source == "cve":
                ref = {
                    "source_name": "cve",
                    "external_id": f"CVE-20{g.rng.randrange(10, 25)}-{g.rng.randrange(1000, 99999)}",
                }
            elif source == "capec":
                ref = {"source_name": "capec", "external_id": f"CAPEC-{g.rng.randrange(1, 700)}"}
            else:
                ref = {"source_name": "mitre-attack", "external_id": f"T{g.rng.randrange(1000, 1700)}"}
            if g.flag():
                ref["url"] = f"https://{g.token(w + ' public url')}.example/{source}"
            if g.flag():
                ref["description"] = g.token(w + " public description")
            if g.flag():
                ref["hashes"] = {"SHA-256": g.plant(g.sha256(), w + " public hashes")}
            refs.append(ref)
        if g.flag():  # a public registry's name with an id that is not of the registry's form
            refs.append({"source_name": "mitre-attack", "external_id": f"T1566-{g.token(w + ' malformed id')}"})
        return refs

    def customs(self, obj: dict[str, Any], where: str) -> None:
        """Custom properties: names and values are canaries."""
        g = self.g
        for _ in range(g.count(0, 2)):
            kind = g.pick(("x", "plain", "nested", "list", "ref"))
            if kind == "x":
                obj[f"x_{g.token(where + ' custom property name')}"] = g.token(where + " custom property value")
            elif kind == "plain":
                obj[f"{g.token(where + ' custom property name')}_src"] = g.token(where + " custom property value")
            elif kind == "nested":
                obj[f"x_{g.token(where + ' custom property name')}"] = {
                    g.token(where + " custom nested key"): [g.token(where + " custom nested value"), 7],
                    "desk": {"handle": g.token(where + " custom nested value")},
                }
            elif kind == "list":
                obj[f"x_{g.token(where + ' custom property name')}"] = [
                    g.token(where + " custom list value"),
                    g.token(where + " custom list value"),
                ]
            else:
                target = self.one_id(["indicator", "threat-actor", "ipv4-addr", "identity"])
                if target is not None:
                    obj[f"x_{g.token(where + ' custom ref name')}_ref"] = target

    def extensions(self, obj: dict[str, Any], where: str, *, predefined: dict[str, Any] | None = None) -> None:
        g = self.g
        ext: dict[str, Any] = dict(predefined or {})
        if g.flag():
            ext[self.ext_prop] = {
                "extension_type": "property-extension",
                g.token(where + " extension property name"): g.token(where + " extension property value"),
                "case": {"number": g.token(where + " extension nested value")},
            }
        if g.flag():
            ext[self.ext_top] = {"extension_type": "toplevel-property-extension"}
            for prop in g.subset(self.top_props, 1):
                obj[prop] = g.token(where + " toplevel extension value")
        if ext:
            obj["extensions"] = ext

    def markings(self, obj: dict[str, Any], where: str) -> None:
        g = self.g
        refs = g.subset(TLP_IDS, 0, 1) + g.subset(self.marks, 0, 2)
        if refs:
            obj["object_marking_refs"] = refs
        if g.flag():
            selectable = sorted(k for k in obj if k not in ("type", "id", "spec_version", "granular_markings"))
            granular = []
            for _ in range(g.count(1, 2)):
                selectors = g.subset(selectable, 1, 3)
                if "labels" in obj and g.flag():
                    selectors.append("labels.[0]")
                marking: dict[str, Any] = {"selectors": selectors, "marking_ref": g.pick([*self.marks, *TLP_IDS])}
                if g.flag():
                    marking["lang"] = g.pick(LANGS)
                    g.plant(f'"lang":"{marking["lang"]}"', where + " granular lang")
                granular.append(marking)
            obj["granular_markings"] = granular

    def sdo(self, obj_type: str, *, sign: bool = True, public: Sequence[str] = ()) -> dict[str, Any]:
        """The common properties of an SDO/SRO, with canaries."""
        g = self.g
        where = f"{obj_type} #{self.unique()}"
        created, modified = g.stamps(f"{where} created/modified", 2, digits=g.pick((3, 6)))
        obj: dict[str, Any] = {
            "type": obj_type,
            "spec_version": "2.1",
            "id": g.oid(obj_type, f"{where} id"),
            "created": created,
            "modified": modified if g.flag() else created,
        }
        if sign and self.signers:
            obj["created_by_ref"] = g.pick(self.signers)
        if g.flag():
            obj["labels"] = [g.token(f"{where} label") for _ in range(g.count(1, 2))]
        if g.flag():
            obj["lang"] = g.pick(LANGS)
            g.plant(f'"lang":"{obj["lang"]}"', f"{where} lang")
        if g.flag():
            obj["confidence"] = g.pick(ODD_CONFIDENCE)
            g.plant(f'"confidence":{obj["confidence"]}', f"{where} confidence")
        if g.flag():
            obj["revoked"] = False
        if g.flag() or public:
            obj["external_references"] = self.external_references(where, public)
        obj["_where"] = where
        return obj

    def sco(self, obj_type: str) -> dict[str, Any]:
        g = self.g
        where = f"{obj_type} #{self.unique()}"
        obj: dict[str, Any] = {"type": obj_type, "spec_version": "2.1", "id": g.oid(obj_type, f"{where} id")}
        if g.flag():
            obj["defanged"] = g.flag()
        obj["_where"] = where
        return obj

    def finish(self, obj: dict[str, Any], predefined: dict[str, Any] | None = None) -> dict[str, Any]:
        where = obj.pop("_where")
        self.customs(obj, where)
        self.extensions(obj, where, predefined=predefined)
        self.markings(obj, where)
        return self.register(obj)

    # -- the objects that are never released
    def identity(self, role: str) -> dict[str, Any]:
        g = self.g
        obj = self.sdo("identity", sign=False)
        where = obj["_where"] + f" ({role})"
        name = party_name(g, f"{role} identity name", ("Directorate", "Office", "Unit", "Team"))
        obj["name"] = name
        obj["identity_class"] = g.pick(("organization", "individual", "group", "system"))
        if g.flag():
            obj["description"] = f"{g.token(where + ' description')} {name}"
        if g.flag():
            obj["roles"] = [g.token(where + " role")]
        if g.flag():
            obj["sectors"] = [g.pick(("government-national", "defense", "energy")), g.token(where + " sector")]
        if g.flag():
            obj["contact_information"] = f"{email(g, where)}, {phone(g, where)}, {g.token(where + ' contact')}"
        if role == "signer":
            self.signers.append(obj["id"])
            self.signer_names.append(name)
            if g.flag():
                obj["created_by_ref"] = obj["id"]
        return self.finish(obj)

    def marking(self) -> dict[str, Any]:
        g = self.g
        where = f"marking-definition #{self.unique()}"
        mark_id = g.oid("marking-definition", where + " id")
        created, _ = g.stamp(where + " created")
        obj: dict[str, Any] = {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": mark_id,
            "created": created,
            "created_by_ref": self.signers[0],
            "definition_type": "statement",
            "definition": {"statement": f"{g.token(where + ' statement')}: property of {self.name}"},
        }
        if g.flag():
            obj["name"] = g.token(where + " name")
        if g.flag():
            obj["external_references"] = self.external_references(where)
        if self.marks and g.flag():
            obj["object_marking_refs"] = [self.marks[0]]
        self.marks.append(mark_id)
        return self.register(obj)

    def extension_definitions(self) -> list[dict[str, Any]]:
        g = self.g
        out = []
        for i, (ext_id, kinds) in enumerate(
            (
                (self.ext_prop, ["property-extension"]),
                (self.ext_top, ["toplevel-property-extension"]),
                (self.ext_sdo, ["new-sdo"]),
            )
        ):
            where = f"extension-definition {kinds[0]}"
            created, _ = g.stamp(where + " created")
            obj: dict[str, Any] = {
                "type": "extension-definition",
                "spec_version": "2.1",
                "id": ext_id,
                "created_by_ref": self.signers[i % len(self.signers)],  # so every signer is learned at once
                "created": created,
                "modified": created,
                "name": g.token(where + " name"),
                "description": f"{g.token(where + ' description')} of {self.name}",
                "schema": f"https://{g.token(where + ' schema host')}.example/{g.token(where + ' schema path')}.json",
                "version": "1.0.0",
                "extension_types": kinds,
            }
            if kinds == ["toplevel-property-extension"]:
                obj["extension_properties"] = list(self.top_props)
            out.append(self.register(obj))
        return out

    def custom_object(self) -> dict[str, Any]:
        g = self.g
        obj = self.sdo(f"{g.token('custom object type name')}-case")
        obj[f"{g.token('custom object property name')}_note"] = self.text(obj["_where"] + " text")
        return self.finish(obj, predefined={self.ext_sdo: {"extension_type": "new-sdo"}})

    def artifact(self) -> dict[str, Any]:
        g = self.g
        obj = self.sco("artifact")
        w = obj["_where"]
        if g.flag():
            payload = f"{g.token(w + ' payload')} from {self.name}".encode()
            obj["payload_bin"] = g.plant(base64.b64encode(payload).decode(), w + " payload_bin")
        else:
            obj["url"] = f"https://{g.token(w + ' url host')}.example/store/{g.token(w + ' url path')}.bin"
            obj["hashes"] = {"SHA-256": g.plant(g.sha256(), w + " hashes")}
        if g.flag():
            obj["mime_type"] = g.pick(("application/zip", "application/octet-stream", "message/rfc822"))
        if g.flag():
            obj["encryption_algorithm"] = "mime-type-indicated"
            obj["decryption_key"] = g.token(w + " decryption_key")
        return self.finish(obj)

    def language_content(self) -> dict[str, Any] | None:
        g = self.g
        target = next(
            (o for o in reversed(self.objects) if o["type"] in ("threat-actor", "malware", "indicator")), None
        )
        if target is None:
            return None
        obj = self.sdo("language-content")
        w = obj["_where"]
        obj["object_ref"] = target["id"]
        obj["object_modified"] = target["modified"]
        obj["contents"] = {
            lang: {"name": self.text(w + " contents name", short=True), "description": self.text(w + " contents")}
            for lang in g.subset(LANGS, 1, 2)
        }
        return self.finish(obj)

    # -- SCOs
    def autonomous_system(self) -> dict[str, Any]:
        obj = self.sco("autonomous-system")
        obj["number"] = 64_512 + self.unique()
        if self.g.flag():
            obj["name"] = self.text(obj["_where"] + " name", short=True, ident=True)
        if self.g.flag():
            obj["rir"] = self.g.pick(("ARIN", "RIPE NCC", "APNIC"))
        return self.finish(obj)

    def mac_addr(self) -> dict[str, Any]:
        obj = self.sco("mac-addr")
        n = self.unique()
        obj["value"] = f"02:00:5e:{n // 65536 % 256:02x}:{n // 256 % 256:02x}:{n % 256:02x}"
        return self.finish(obj)

    def ipv4_addr(self) -> dict[str, Any]:
        obj = self.sco("ipv4-addr")
        n = self.unique()
        obj["value"] = self.g.pick((f"198.51.100.{n % 250 + 1}", f"192.0.2.{n % 250 + 1}"))
        if self.g.flag() and (refs := self.some_ids(["mac-addr"], 1, 2)):
            obj["resolves_to_refs"] = refs
        if self.g.flag() and (refs := self.some_ids(["autonomous-system"], 1, 1)):
            obj["belongs_to_refs"] = refs
        return self.finish(obj)

    def ipv6_addr(self) -> dict[str, Any]:
        obj = self.sco("ipv6-addr")
        obj["value"] = f"2001:db8::{self.unique():x}"
        if self.g.flag() and (refs := self.some_ids(["mac-addr"], 1, 1)):
            obj["resolves_to_refs"] = refs
        return self.finish(obj)

    def domain_name(self) -> dict[str, Any]:
        obj = self.sco("domain-name")
        obj["value"] = f"{self.g.content()}.example.com"
        if self.g.flag() and (refs := self.some_ids(["ipv4-addr", "ipv6-addr"], 1, 2)):
            obj["resolves_to_refs"] = refs
        return self.finish(obj)

    def url(self) -> dict[str, Any]:
        obj = self.sco("url")
        obj["value"] = f"https://{self.g.content()}.example.net/login?next=/{self.g.content()}"
        return self.finish(obj)

    def mutex(self) -> dict[str, Any]:
        obj = self.sco("mutex")
        obj["name"] = self.text(obj["_where"] + " name", short=True, ident=True)
        return self.finish(obj)

    def software(self) -> dict[str, Any]:
        g = self.g
        obj = self.sco("software")
        obj["name"] = self.text(obj["_where"] + " name", short=True, ident=True)
        vendor = g.content()
        if g.flag():
            obj["cpe"] = f"cpe:2.3:a:{vendor}:suite:{g.rng.randrange(1, 20)}.0:*:*:*:*:*:*:*"
        if g.flag():
            obj["swid"] = f"{vendor}-suite-swid"
        if g.flag():
            obj["languages"] = g.subset(("en", "fr", "de"), 1, 2)
        if g.flag():
            obj["vendor"] = vendor
        if g.flag():
            obj["version"] = f"{g.rng.randrange(1, 20)}.{g.rng.randrange(0, 9)}"
        return self.finish(obj)

    def user_account(self) -> dict[str, Any]:
        g = self.g
        obj = self.sco("user-account")
        w = obj["_where"]
        obj["user_id"] = str(1000 + self.unique())
        if g.flag():
            obj["account_login"] = g.content()
        if g.flag():
            obj["account_type"] = self.vocab_value("user-account", "account_type", w + " account_type")
        if g.flag():
            obj["display_name"] = self.text(w + " display_name", short=True)
        if g.flag():
            obj["credential"] = g.token(w + " credential")
        for prop in g.subset(("is_service_account", "is_privileged", "can_escalate_privs", "is_disabled"), 0, 2):
            obj[prop] = g.flag()
        times = g.subset(
            ("account_created", "credential_last_changed", "account_first_login", "account_last_login"), 0, 3
        )
        for prop, ts in zip(sorted(times), g.stamps(w + " account times", len(times)), strict=True):
            obj[prop] = ts
        if g.flag():
            obj["account_expires"] = g.stamp(w + " account_expires")[0]
        predefined = None
        if g.flag():
            predefined = {
                "unix-account-ext": {
                    "gid": 1000 + g.rng.randrange(100),
                    "groups": [g.token(w + " unix groups")],
                    "home_dir": f"/home/{g.token(w + ' unix home_dir')}",
                    "shell": "/bin/bash",
                }
            }
        return self.finish(obj, predefined)

    def email_addr(self) -> dict[str, Any]:
        obj = self.sco("email-addr")
        obj["value"] = f"{self.g.content()}@mail.example"
        if self.g.flag():
            obj["display_name"] = self.text(obj["_where"] + " display_name", short=True)
        if self.g.flag() and (ref := self.one_id(["user-account"])):
            obj["belongs_to_ref"] = ref
        return self.finish(obj)

    def x509_certificate(self) -> dict[str, Any]:
        g = self.g
        obj = self.sco("x509-certificate")
        w = obj["_where"]
        obj["serial_number"] = ":".join(g.hex(2) for _ in range(8))
        obj["issuer"] = f"C=ZA, O={g.content()}, CN=Issuing CA"
        if g.flag():
            obj["subject"] = f"CN={g.content()}.example.com"
        if g.flag():
            obj["hashes"] = self.hashes(w + " hashes")
        if g.flag():
            obj["is_self_signed"] = g.flag()
        if g.flag():
            obj["version"] = "3"
            obj["signature_algorithm"] = "sha256WithRSAEncryption"
            obj["subject_public_key_algorithm"] = "rsaEncryption"
            obj["subject_public_key_exponent"] = 65537
        if g.flag():
            obj["validity_not_before"], obj["validity_not_after"] = g.stamps(w + " validity", 2)
        if g.flag():
            obj["x509_v3_extensions"] = {"basic_constraints": "critical,CA:FALSE", "key_usage": "digitalSignature"}
        return self.finish(obj)

    def directory(self) -> dict[str, Any]:
        g = self.g
        obj = self.sco("directory")
        w = obj["_where"]
        obj["path"] = f"C:\\Users\\{self.text(w + ' path', short=True, ident=True)}\\Documents"
        if g.flag():
            obj["path_enc"] = g.pick(("UTF-8", "ISO-8859-1"))
        times = g.subset(("ctime", "mtime", "atime"), 0, 3)
        for prop, ts in zip(sorted(times), g.stamps(w + " times", len(times)), strict=True):
            obj[prop] = ts
        if g.flag() and (refs := self.some_ids(["file", "directory"], 1, 2)):
            obj["contains_refs"] = refs
        return self.finish(obj)

    def file(self) -> dict[str, Any]:
        g = self.g
        obj = self.sco("file")
        w = obj["_where"]
        has_name = g.flag()
        if has_name:
            obj["name"] = f"{self.text(w + ' name', short=True, ident=True)}.docx"
        if g.flag() or not has_name:
            obj["hashes"] = self.hashes(w + " hashes")
        if g.flag():
            obj["size"] = g.rng.randrange(1, 10**7)
        if g.flag():
            obj["name_enc"] = "UTF-8"
        if g.flag():
            obj["magic_number_hex"] = "504B0304"
            obj["mime_type"] = "application/zip"
        times = g.subset(("ctime", "mtime", "atime"), 0, 3)
        for prop, ts in zip(sorted(times), g.stamps(w + " times", len(times)), strict=True):
            obj[prop] = ts
        if g.flag() and (ref := self.one_id(["directory"])):
            obj["parent_directory_ref"] = ref
        if g.flag() and (ref := self.one_id(["artifact"])):
            obj["content_ref"] = ref
        if g.flag() and (refs := self.some_ids(["file", "directory"], 1, 2)):
            obj["contains_refs"] = refs
        predefined: dict[str, Any] = {}
        for ext in g.subset(("pdf-ext", "ntfs-ext", "windows-pebinary-ext", "raster-image-ext", "archive-ext"), 0, 2):
            if ext == "pdf-ext":
                predefined[ext] = {
                    "version": "1.7",
                    "document_info_dict": {
                        "Author": g.token(w + " pdf Author"),
                        "Creator": g.token(w + " pdf Creator"),
                    },
                    "pdfid0": g.token(w + " pdfid0"),
                }
            elif ext == "ntfs-ext":
                predefined[ext] = {
                    "sid": g.token(w + " ntfs sid"),
                    "alternate_data_streams": [{"name": g.token(w + " ntfs stream name"), "size": 12}],
                }
            elif ext == "windows-pebinary-ext":
                stamp = g.stamp(w + " pe time_date_stamp")[0]
                predefined[ext] = {"pe_type": "exe", "time_date_stamp": stamp[:19] + "Z", "imphash": g.hex(32)}
            elif ext == "raster-image-ext":
                predefined[ext] = {"image_height": 600, "exif_tags": {"Make": g.token(w + " exif Make")}}
            elif ext == "archive-ext" and (refs := self.some_ids(["file"], 1, 1)):
                predefined[ext] = {"contains_refs": refs, "comment": g.token(w + " archive comment")}
        return self.finish(obj, predefined or None)

    def email_message(self) -> dict[str, Any]:
        g = self.g
        obj = self.sco("email-message")
        w = obj["_where"]
        multipart = g.flag()
        obj["is_multipart"] = multipart
        if g.flag():
            obj["date"] = g.stamp(w + " date")[0]
        if g.flag():
            obj["subject"] = self.text(w + " subject", short=True, ident=True)
        if g.flag():
            obj["content_type"] = "multipart/mixed" if multipart else "text/plain"
        if g.flag():
            obj["message_id"] = f"<{g.content()}@mail.example>"
        if ref := self.one_id(["email-addr"]):
            obj["from_ref"] = ref
            if g.flag():
                obj["sender_ref"] = ref
        if g.flag() and (refs := self.some_ids(["email-addr"], 1, 2)):
            obj[g.pick(("to_refs", "cc_refs", "bcc_refs"))] = refs
        if g.flag():
            obj["received_lines"] = [
                f"from {g.token(w + ' received_lines host')}.example by mx.{g.token(w + ' received_lines mx')}.example"
            ]
        if g.flag():
            obj["additional_header_fields"] = {
                f"X-{g.token(w + ' header name').capitalize()}": g.token(w + " header value"),
                "Reply-To": [email(g, w + " Reply-To"), g.token(w + " header value")],
            }
        if multipart:
            parts: list[dict[str, Any]] = [
                {
                    "content_type": "text/plain",
                    "content_disposition": f"inline; filename={g.token(w + ' part filename')}.txt",
                    "body": g.token(w + " part body"),
                }
            ]
            if ref := self.one_id(["artifact"]):
                parts.append({"content_type": "application/zip", "body_raw_ref": ref})
            obj["body_multipart"] = parts
        elif g.flag():
            obj["body"] = self.text(w + " body")
        if g.flag() and (ref := self.one_id(["artifact"])):
            obj["raw_email_ref"] = ref
        return self.finish(obj)

    def network_traffic(self) -> dict[str, Any]:
        g = self.g
        obj = self.sco("network-traffic")
        w = obj["_where"]
        for prop in g.subset(("src_ref", "dst_ref"), 1, 2):
            obj[prop] = self.one_id(["ipv4-addr", "ipv6-addr", "domain-name"])
        obj["protocols"] = g.subset(("ipv4", "tcp", "udp", "http", "tls"), 1, 3)
        if g.flag():
            obj["src_port"], obj["dst_port"] = g.rng.randrange(1024, 65536), g.pick((80, 443, 8443))
        timing = g.pick(("none", "start", "both", "active"))
        if timing in ("start", "both", "active"):
            obj["start"] = g.stamp(w + " start")[0]
        if timing == "both":
            obj["end"] = g.stamp(w + " end", datetime.fromisoformat(obj["start"]))[0]
            obj["is_active"] = False
        if timing == "active":
            obj["is_active"] = True
        for prop in g.subset(("src_byte_count", "dst_byte_count", "src_packets", "dst_packets"), 0, 4):
            obj[prop] = g.rng.randrange(1, 10**6)
        if g.flag():
            obj["ipfix"] = {"minimumIpTotalLength": 32, g.token(w + " ipfix name"): g.token(w + " ipfix value")}
        if g.flag() and (ref := self.one_id(["artifact"])):
            obj["src_payload_ref"] = ref
        if g.flag() and (ref := self.one_id(["network-traffic"])):
            obj["encapsulated_by_ref"] = ref
        predefined = None
        if g.flag():
            predefined = {
                "http-request-ext": {
                    "request_method": "get",
                    "request_value": f"/{g.token(w + ' http request_value')}",
                    "request_version": "http/1.1",
                    "request_header": {"User-Agent": [g.token(w + " http request_header")]},
                }
            }
        return self.finish(obj, predefined)

    def process(self) -> dict[str, Any]:
        g = self.g
        obj = self.sco("process")
        w = obj["_where"]
        obj["pid"] = g.rng.randrange(2, 65536)
        if g.flag():
            obj["is_hidden"] = g.flag()
        if g.flag():
            obj["created_time"] = g.stamp(w + " created_time")[0]
        if g.flag():
            obj["cwd"] = f"C:\\Users\\{self.text(w + ' cwd', short=True)}"
        if g.flag():
            obj["command_line"] = f"powershell.exe -enc {g.content()} # {self.text(w + ' command_line', short=True)}"
        if g.flag():
            obj["environment_variables"] = {
                "USERNAME": g.token(w + " environment USERNAME"),
                "COMPUTERNAME": g.token(w + " environment COMPUTERNAME"),
            }
        if g.flag() and (refs := self.some_ids(["network-traffic"], 1, 2)):
            obj["opened_connection_refs"] = refs
        if g.flag() and (ref := self.one_id(["user-account"])):
            obj["creator_user_ref"] = ref
        if g.flag() and (ref := self.one_id(["file"])):
            obj["image_ref"] = ref
        if g.flag() and (ref := self.one_id(["process"])):
            obj["parent_ref"] = ref
        predefined = None
        if g.flag():
            predefined = {
                "windows-process-ext": {
                    "owner_sid": g.token(w + " owner_sid"),
                    "window_title": g.token(w + " window_title"),
                },
                "windows-service-ext": {
                    "service_name": g.token(w + " service_name"),
                    "descriptions": [g.token(w + " service descriptions")],
                    "start_type": "SERVICE_AUTO_START",
                },
            }
        return self.finish(obj, predefined)

    def windows_registry_key(self) -> dict[str, Any]:
        g = self.g
        obj = self.sco("windows-registry-key")
        w = obj["_where"]
        obj["key"] = f"HKEY_LOCAL_MACHINE\\SOFTWARE\\{self.text(w + ' key', short=True, ident=True)}\\Run"
        if g.flag():
            obj["values"] = [{"name": g.content(), "data": g.content(), "data_type": "REG_SZ"}]
        if g.flag():
            obj["modified_time"] = g.stamp(w + " modified_time")[0]
        if g.flag() and (ref := self.one_id(["user-account"])):
            obj["creator_user_ref"] = ref
        if g.flag():
            obj["number_of_subkeys"] = g.rng.randrange(0, 20)
        return self.finish(obj)

    # -- SDOs
    def named(self, obj_type: str, *, public: Sequence[str] = ()) -> dict[str, Any]:
        obj = self.sdo(obj_type, public=public)
        obj["name"] = self.text(obj["_where"] + " name", short=True)
        if self.g.flag():
            obj["description"] = self.text(obj["_where"] + " description")
        return obj

    def seen(self, obj: dict[str, Any], first: str = "first_seen", last: str = "last_seen") -> None:
        props = self.g.subset((first, last), 0, 2)
        for prop, ts in zip(
            sorted(props, key=(first, last).index), self.g.stamps(obj["_where"] + " seen", len(props)), strict=True
        ):
            obj[prop] = ts

    def attack_pattern(self) -> dict[str, Any]:
        obj = self.named("attack-pattern", public=self.g.subset(("capec", "mitre-attack"), 0, 2))
        if self.g.flag():
            obj["aliases"] = self.texts(obj["_where"] + " aliases")
        if self.g.flag():
            obj["kill_chain_phases"] = self.kill_chains(obj["_where"])
        return self.finish(obj)

    def campaign(self) -> dict[str, Any]:
        obj = self.named("campaign")
        if self.g.flag():
            obj["aliases"] = self.texts(obj["_where"] + " aliases")
        self.seen(obj)
        if self.g.flag():
            obj["objective"] = self.text(obj["_where"] + " objective")
        return self.finish(obj)

    def course_of_action(self) -> dict[str, Any]:
        return self.finish(self.named("course-of-action"))

    def incident(self) -> dict[str, Any]:
        obj = self.named("incident")
        if self.g.flag():  # not a property of incident in STIX 2.1: a custom one, denied
            obj["kill_chain_phases"] = self.kill_chains(obj["_where"] + " (incident)")
        return self.finish(obj)

    def indicator(self) -> dict[str, Any]:
        g = self.g
        obj = self.named("indicator")
        w = obj["_where"]
        if g.flag():
            obj["indicator_types"] = self.vocab_list("indicator", "indicator_types", w + " indicator_types")
        kind = g.pick(("stix", "stix", "yara", "custom"))
        n = self.unique()
        if kind == "stix":
            obj["pattern"] = g.pick(
                (
                    f"[ipv4-addr:value = '198.51.100.{n % 250}']",
                    f"[domain-name:value = '{g.content()}.example.com']",
                    f"[file:hashes.'SHA-256' = '{g.sha256()}']",
                    f"[url:value = 'https://{g.content()}.example/'] OR [ipv4-addr:value = '192.0.2.{n % 250}']",
                )
            )
            obj["pattern_type"] = "stix"
            if g.flag():
                obj["pattern_version"] = "2.1"
        elif kind == "yara":
            obj["pattern"] = f'rule r{g.content()} {{ strings: $a = "{g.content()}" condition: $a }}'
            obj["pattern_type"] = "yara"
        else:
            obj["pattern"] = f"{g.content()} AND {g.content()}"
            obj["pattern_type"] = g.token(w + " custom pattern_type")
        times = g.stamps(w + " validity", 2)
        obj["valid_from"] = times[0]
        if g.flag():
            obj["valid_until"] = times[1]
        if g.flag():
            obj["kill_chain_phases"] = self.kill_chains(w)
        return self.finish(obj)

    def infrastructure(self) -> dict[str, Any]:
        obj = self.named("infrastructure")
        w = obj["_where"]
        if self.g.flag():
            obj["infrastructure_types"] = self.vocab_list("infrastructure", "infrastructure_types", w)
        if self.g.flag():
            obj["aliases"] = self.texts(w + " aliases")
        if self.g.flag():
            obj["kill_chain_phases"] = self.kill_chains(w)
        self.seen(obj)
        return self.finish(obj)

    def motivations(self, obj: dict[str, Any], obj_type: str) -> None:
        g, w = self.g, obj["_where"]
        if g.flag():
            obj["resource_level"] = self.vocab_value(obj_type, "resource_level", w + " resource_level")
        if g.flag():
            obj["primary_motivation"] = self.vocab_value(obj_type, "primary_motivation", w + " primary_motivation")
        if g.flag():
            obj["secondary_motivations"] = self.vocab_list(obj_type, "secondary_motivations", w)
        if g.flag():
            obj["goals"] = self.texts(w + " goals")
        if g.flag():
            obj["aliases"] = self.texts(w + " aliases")
        self.seen(obj)

    def intrusion_set(self) -> dict[str, Any]:
        obj = self.named("intrusion-set")
        self.motivations(obj, "intrusion-set")
        return self.finish(obj)

    def threat_actor(self) -> dict[str, Any]:
        g = self.g
        obj = self.named("threat-actor")
        w = obj["_where"]
        self.motivations(obj, "threat-actor")
        if g.flag():
            obj["threat_actor_types"] = self.vocab_list("threat-actor", "threat_actor_types", w)
        if g.flag():
            obj["roles"] = self.vocab_list("threat-actor", "roles", w + " roles")
        if g.flag():
            obj["sophistication"] = self.vocab_value("threat-actor", "sophistication", w + " sophistication")
        if g.flag():
            obj["personal_motivations"] = self.vocab_list("threat-actor", "personal_motivations", w)
        return self.finish(obj)

    def location(self) -> dict[str, Any]:
        g = self.g
        obj = self.sdo("location")
        w = obj["_where"]
        if g.flag():
            obj["name"] = self.text(w + " name", short=True)
        if g.flag():
            obj["description"] = self.text(w + " description")
        how = g.pick(("coords", "region", "country"))
        if how == "coords":
            obj["latitude"] = round(g.rng.uniform(-80, 80), 4)
            obj["longitude"] = round(g.rng.uniform(-170, 170), 4)
            if g.flag():
                obj["precision"] = 50.0
        elif how == "region":
            obj["region"] = self.vocab_value("location", "region", w + " region")
            if obj["region"].startswith("cnry"):
                obj["country"] = "UA"
        else:
            obj["country"] = g.pick(("UA", "DE", "NO"))
        if g.flag():
            obj["administrative_area"] = self.text(w + " administrative_area", short=True)
        if g.flag():
            obj["city"] = self.text(w + " city", short=True)
        if g.flag():
            obj["street_address"] = f"{g.token(w + ' street_address')} 12 Mill Lane"
        if g.flag():
            obj["postal_code"] = g.token(w + " postal_code")
        return self.finish(obj)

    def malware(self) -> dict[str, Any]:
        g = self.g
        obj = self.sdo("malware")
        w = obj["_where"]
        obj["is_family"] = g.flag()
        if obj["is_family"] or g.flag():
            obj["name"] = self.text(w + " name", short=True)
        if g.flag():
            obj["description"] = self.text(w + " description")
        for prop in ("malware_types", "capabilities", "implementation_languages", "architecture_execution_envs"):
            if g.flag():
                obj[prop] = self.vocab_list("malware", prop, f"{w} {prop}")
        if g.flag():
            obj["aliases"] = self.texts(w + " aliases")
        if g.flag():
            obj["kill_chain_phases"] = self.kill_chains(w)
        self.seen(obj)
        if g.flag() and (refs := self.some_ids(["software"], 1, 2)):
            obj["operating_system_refs"] = refs
        if g.flag() and (refs := self.some_ids(["file", "artifact"], 1, 2)):
            obj["sample_refs"] = refs
        return self.finish(obj)

    def malware_analysis(self) -> dict[str, Any]:
        g = self.g
        obj = self.sdo("malware-analysis")
        w = obj["_where"]
        obj["product"] = g.pick(("cuckoo", "capa", "virustotal"))
        if g.flag():
            obj["version"] = "2.0.7"
        if g.flag() and (ref := self.one_id(["software"])):
            obj["host_vm_ref"] = ref
        if g.flag() and (ref := self.one_id(["software"])):
            obj["operating_system_ref"] = ref
        if g.flag() and (refs := self.some_ids(["software"], 1, 2)):
            obj["installed_software_refs"] = refs
        for prop in g.subset(("configuration_version", "analysis_engine_version", "analysis_definition_version"), 0, 3):
            obj[prop] = f"{g.rng.randrange(1, 9)}.{g.rng.randrange(0, 99)}"
        if g.flag():
            obj["modules"] = ["pe", "strings"]
        times = g.subset(("submitted", "analysis_started", "analysis_ended"), 0, 3)
        order = ("submitted", "analysis_started", "analysis_ended")
        for prop, ts in zip(sorted(times, key=order.index), g.stamps(w + " analysis times", len(times)), strict=True):
            obj[prop] = ts
        if g.flag():
            obj["result_name"] = self.text(w + " result_name", short=True)
        refs = self.some_ids(["file", "ipv4-addr", "domain-name", "url"], 0, 3)
        if refs:
            obj["analysis_sco_refs"] = refs
        if g.flag() or not refs:
            obj["result"] = self.vocab_value("malware-analysis", "result", w + " result")
        if g.flag() and (ref := self.one_id(["file", "artifact", "network-traffic"])):
            obj["sample_ref"] = ref
        return self.finish(obj)

    def tool(self) -> dict[str, Any]:
        obj = self.named("tool")
        w = obj["_where"]
        if self.g.flag():
            obj["tool_types"] = self.vocab_list("tool", "tool_types", w + " tool_types")
        if self.g.flag():
            obj["aliases"] = self.texts(w + " aliases")
        if self.g.flag():
            obj["kill_chain_phases"] = self.kill_chains(w)
        if self.g.flag():
            obj["tool_version"] = f"{self.g.rng.randrange(1, 9)}.{self.g.rng.randrange(0, 9)}"
        return self.finish(obj)

    def vulnerability(self) -> dict[str, Any]:
        return self.finish(self.named("vulnerability", public=("cve",) if self.g.flag() else ()))

    def observed_data(self) -> dict[str, Any]:
        g = self.g
        obj = self.sdo("observed-data")
        w = obj["_where"]
        obj["first_observed"], obj["last_observed"] = g.stamps(w + " observed", 2)
        obj["number_observed"] = g.rng.randrange(1, 500)
        refs = self.some_ids(["ipv4-addr", "domain-name", "url", "file", "process", "network-traffic"], 1, 4)
        if refs and g.flag():
            obj["object_refs"] = refs + self.some_ids(["relationship", "sighting"], 0, 1)
        else:  # the deprecated container: denied
            obj["objects"] = {
                "0": {
                    "type": "ipv4-addr",
                    "id": g.oid("ipv4-addr", w + " embedded object id"),
                    "value": "198.51.100.250",
                    f"x_{g.token(w + ' embedded custom name')}": g.token(w + " embedded custom value"),
                },
                "1": {"type": "domain-name", "id": g.oid("domain-name", w + " embedded"), "value": "x.example.org"},
            }
        return self.finish(obj)

    def authored(self, obj: dict[str, Any]) -> None:
        if self.g.flag():
            obj["authors"] = [f"{self.g.token(obj['_where'] + ' authors')} K. Varo", self.name]

    def note(self) -> dict[str, Any]:
        obj = self.sdo("note")
        w = obj["_where"]
        if self.g.flag():
            obj["abstract"] = self.text(w + " abstract", short=True)
        obj["content"] = self.text(w + " content")
        self.authored(obj)
        obj["object_refs"] = self.referable(1, 4)
        return self.finish(obj)

    def opinion(self) -> dict[str, Any]:
        obj = self.sdo("opinion")
        w = obj["_where"]
        if self.g.flag():
            obj["explanation"] = self.text(w + " explanation")
        self.authored(obj)
        obj["opinion"] = self.g.pick(("strongly-disagree", "disagree", "neutral", "agree", "strongly-agree"))
        obj["object_refs"] = self.referable(1, 3)
        return self.finish(obj)

    def referable(self, lo: int, hi: int) -> list[str]:
        refs = self.some_ids(["identity", "marking-definition", "language-content", "artifact"], 0, 1)
        refs += self.some_ids([t for t in RELEASED if t in self.ids], lo, hi)
        return refs or [self.signers[0]]

    def report(self) -> dict[str, Any]:
        obj = self.named("report")
        w = obj["_where"]
        if self.g.flag():
            obj["report_types"] = self.vocab_list("report", "report_types", w + " report_types")
        obj["published"] = self.g.stamp(w + " published")[0]
        obj["object_refs"] = self.referable(1, 8)
        return self.finish(obj)

    def grouping(self) -> dict[str, Any]:
        g = self.g
        obj = self.sdo("grouping")
        w = obj["_where"]
        if g.flag():
            obj["name"] = self.text(w + " name", short=True)
        if g.flag():
            obj["description"] = self.text(w + " description")
        obj["context"] = self.vocab_value("grouping", "context", w + " context")
        obj["object_refs"] = self.referable(1, 5)
        return self.finish(obj)

    def relationship(self) -> dict[str, Any]:
        g = self.g
        ends = [t for t in RELEASED if t not in ("relationship", "sighting") and t in self.ids]
        obj = self.sdo("relationship")
        w = obj["_where"]
        obj["relationship_type"] = g.pick(("indicates", "uses", "targets", "related-to", "attributed-to", "custom"))
        if obj["relationship_type"] == "custom":
            obj["relationship_type"] = g.token(w + " custom relationship_type")
        obj["source_ref"] = self.one_id(ends) or self.signers[0]
        obj["target_ref"] = self.one_id([*ends, "identity"]) or self.signers[0]
        if g.flag():
            obj["description"] = self.text(w + " description")
        if g.flag():
            obj["start_time"], obj["stop_time"] = g.stamps(w + " start/stop", 2)
        return self.finish(obj)

    def sighting(self) -> dict[str, Any]:
        g = self.g
        obj = self.sdo("sighting")
        w = obj["_where"]
        sdos = [t for t in RELEASED if PROFILES[t].category == "sdo" and t in self.ids]
        obj["sighting_of_ref"] = self.one_id(sdos) or self.signers[0]
        if g.flag():
            obj["description"] = self.text(w + " description")
        self.seen(obj)
        if g.flag():
            obj["count"] = g.rng.randrange(0, 10**6)
        if g.flag():
            obj["summary"] = g.flag()
        where_sighted = self.some_ids(["location", "identity"], 1, 3)
        if where_sighted:
            obj["where_sighted_refs"] = where_sighted
        if refs := self.some_ids(["observed-data"], 0, 2):
            obj["observed_data_refs"] = refs
        return self.finish(obj)

    def new_version(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A newer version of an SDO: a new exact modified, new free text."""
        g = self.g
        out = {k: v for k, v in obj.items()}
        where = f"{obj['type']} new version"
        out["modified"] = g.stamp(where + " modified", datetime.fromisoformat(obj["modified"]))[0]
        for prop in ("description", "content", "explanation"):
            if prop in out:
                out[prop] = self.text(f"{where} {prop}")
        if g.flag():
            out["confidence"] = g.pick(ODD_CONFIDENCE)
            g.plant(f'"confidence":{out["confidence"]}', where + " confidence")
        return out


SCO_BUILDERS: tuple[tuple[str, Callable[[Author], dict[str, Any]]], ...] = (
    ("autonomous-system", Author.autonomous_system),
    ("mac-addr", Author.mac_addr),
    ("ipv4-addr", Author.ipv4_addr),
    ("ipv6-addr", Author.ipv6_addr),
    ("domain-name", Author.domain_name),
    ("url", Author.url),
    ("mutex", Author.mutex),
    ("software", Author.software),
    ("user-account", Author.user_account),
    ("email-addr", Author.email_addr),
    ("x509-certificate", Author.x509_certificate),
    ("artifact", Author.artifact),
    ("directory", Author.directory),
    ("file", Author.file),
    ("email-message", Author.email_message),
    ("network-traffic", Author.network_traffic),
    ("process", Author.process),
    ("windows-registry-key", Author.windows_registry_key),
)
SDO_BUILDERS: tuple[tuple[str, Callable[[Author], dict[str, Any]]], ...] = (
    ("attack-pattern", Author.attack_pattern),
    ("campaign", Author.campaign),
    ("course-of-action", Author.course_of_action),
    ("incident", Author.incident),
    ("indicator", Author.indicator),
    ("infrastructure", Author.infrastructure),
    ("intrusion-set", Author.intrusion_set),
    ("location", Author.location),
    ("malware", Author.malware),
    ("malware-analysis", Author.malware_analysis),
    ("threat-actor", Author.threat_actor),
    ("tool", Author.tool),
    ("vulnerability", Author.vulnerability),
    ("observed-data", Author.observed_data),
    ("relationship", Author.relationship),
    ("sighting", Author.sighting),
    ("grouping", Author.grouping),
    ("note", Author.note),
    ("opinion", Author.opinion),
    ("report", Author.report),
)


@st.composite
def provider_cases(draw: st.DrawFn) -> ProviderCase:
    """A provider's posts: its identities, markings and extension definitions first, then objects of every
    released type (some types twice), the never released ones among them, newer versions, a withdrawal."""
    g = Gen(draw)
    p = Author(g)
    meta = [p.identity("signer")]
    if g.flag():
        meta.append(p.identity("signer"))
        p.terms.names.append(p.signer_names[-1])
    p.terms.names.append(p.signer_names[0])
    meta.append(p.marking())
    if g.flag():
        meta.append(p.marking())
    meta.extend(p.extension_definitions())
    meta.append(p.identity("victim"))

    intel: list[dict[str, Any]] = []
    for builders in (SCO_BUILDERS, SDO_BUILDERS):
        for obj_type, build in builders:
            del obj_type
            for _ in range(2 if g.count(0, 5) == 0 else 1):
                intel.append(build(p))
    if (lc := p.language_content()) is not None:
        intel.append(lc)
    intel.append(p.custom_object())

    # the envelopes: the identities may come alone before the rest, the rest in one or two posts
    split = g.pick(("one", "meta-first", "three"))
    if split == "one":
        chunks = [meta + intel]
    elif split == "meta-first":
        chunks = [meta, intel]
    else:
        cut = g.count(1, len(intel) - 1)
        chunks = [meta + intel[:cut], intel[cut:]]
    sdos = [o for o in intel if o.get("created") and o["type"] in RELEASED]
    updates = [p.new_version(o) for o in g.subset(sdos, 0, 3)]
    if updates:
        chunks.append(updates)
    posts = [Post(objects=chunk, headers=request_headers(g, "provider")) for chunk in chunks]
    delete = g.pick([None, *(o["id"] for o in sdos[:5])])
    types = Counter(o["type"] for o in meta + intel)
    return ProviderCase(name=p.name, posts=posts, delete=delete, canaries=g.canaries, types=types)


# -- a broker per example and transcripts of what a party receives -------------------------------------------


@dataclass
class Transcript:
    """Every byte one party received: status line, all headers and the body of every response."""

    chunks: list[tuple[str, bytes]] = field(default_factory=list)

    def record(self, label: str, r: httpx.Response) -> httpx.Response:
        head = f"HTTP/1.1 {r.status_code} {r.reason_phrase}\r\n".encode()
        head += b"".join(k + b": " + v + b"\r\n" for k, v in r.headers.raw)
        self.chunks.append((label, head + b"\r\n" + r.content))
        return r

    def leaks(self, canaries: dict[str, str]) -> list[str]:
        """Each canary found anywhere (case-insensitive, also after NFKC), with where it was planted and where
        it came out."""
        found: list[str] = []
        texts = []
        for label, raw in self.chunks:
            text = raw.decode("utf-8", errors="replace")
            forms = {text.casefold()}
            if not text.isascii():
                forms.add(unicodedata.normalize("NFKC", text).casefold())
            texts.append((label, "\n".join(forms)))
        everything = "\x00".join(t for _, t in texts)
        for canary, where in canaries.items():
            needle = unicodedata.normalize("NFKC", canary).casefold()
            if needle not in everything:
                continue
            label, text = next((lab, t) for lab, t in texts if needle in t)
            at = text.index(needle)
            found.append(f"{canary!r} (planted in {where}) reached {label}: ...{text[max(0, at - 120) : at + 80]!r}...")
        return found

    def __len__(self) -> int:
        return len(self.chunks)


@dataclass
class Party:
    """One party talking to the app; every response it receives is recorded."""

    client: TestClient
    name: str
    token: str
    transcript: Transcript = field(default_factory=Transcript)
    root: str = "/exchange"

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Accept": TAXII, "Authorization": f"Bearer {self.token}", **(extra or {})}

    def get(self, path: str, params: Any = None, *, absolute: bool = False) -> httpx.Response:
        url = path if absolute else self.root + path
        r = self.client.get(url, params=params, headers=self.headers())
        return self.transcript.record(f"GET {url} {params or ''}".strip(), r)

    def ok(self, path: str, params: Any = None, *, absolute: bool = False) -> Any:
        r = self.get(path, params, absolute=absolute)
        assert r.status_code == 200, (path, params, r.status_code, r.text[:500])
        return r.json()

    def post(self, objects: list[dict[str, Any]], headers: dict[str, str] | None = None) -> dict[str, Any]:
        url = f"{self.root}/collections/{self.collections()['outbox']}/objects/"
        body = orjson.dumps({"objects": objects})
        r = self.client.post(url, content=body, headers=self.headers({"Content-Type": TAXII, **(headers or {})}))
        self.transcript.record(f"POST {url}", r)
        assert r.status_code == 202, f"the server refused a generated envelope (a generator bug): {r.text[:3000]}"
        status: dict[str, Any] = r.json()
        assert status["status"] == "complete" and status["success_count"] == len(objects), status
        return status

    def delete(self, obj_id: str, headers: dict[str, str] | None = None) -> None:
        url = f"{self.root}/collections/{self.collections()['outbox']}/objects/{obj_id}/"
        r = self.client.delete(url, headers=self.headers(headers))
        self.transcript.record(f"DELETE {url}", r)
        assert r.status_code == 200, r.text

    _cols: dict[str, str] | None = None

    def collections(self) -> dict[str, str]:
        if self._cols is None:
            r = self.client.get(self.root + "/collections/", headers=self.headers())
            self._cols = {c["title"]: c["id"] for c in r.json()["collections"]}
        return self._cols


@dataclass
class Rig:
    exchange: Exchange
    provider: Party
    consumer: Party


@contextlib.contextmanager
def fresh_rig(provider_name: str, consumer_name: str, *, consumer_provides: bool = False) -> Iterator[Rig]:
    """A broker of its own (SQLite in a temporary folder) served in process, with one broad agreement."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_settings(Path(tmp) / "broker", {"sqlite_synchronous": "NORMAL"}, environ={})
        Exchange.init(cfg, "Canary Exchange")
        ex = Exchange.open(cfg)
        try:
            _, pt = ex.add_party(provider_name, provider=True, consumer=False)
            _, ct = ex.add_party(consumer_name, provider=consumer_provides, consumer=True)
            ex.add_agreement(provider_name, consumer_name, types=None, tlp_max="red")
            with TestClient(create_app(cfg, ex, run_scheduler=False)) as client:
                yield Rig(ex, Party(client, provider_name, pt), Party(client, consumer_name, ct))
        finally:
            ex.close()


def walk(party: Party, status_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Call every read endpoint a party has, on both its collections; returns every version in each."""
    party.ok("/taxii2/", absolute=True)
    party.ok("/taxii2", absolute=True)
    party.ok("/")
    party.ok("")
    cols = party.ok("/collections/")["collections"]
    assert sorted(c["title"] for c in cols) == ["inbox", "outbox"]
    out: dict[str, list[dict[str, Any]]] = {}
    for col in cols:
        base = f"/collections/{col['id']}"
        party.ok(base + "/")
        party.ok(base)
        every = party.ok(base + "/objects/", {"match[version]": "all"})
        objs: list[dict[str, Any]] = every["objects"]
        out[col["title"]] = objs
        for params in ({}, {"match[version]": "first"}, {"match[spec_version]": "2.1"}):
            party.ok(base + "/objects/", params)
            party.ok(base + "/manifest/", params)
        manifest = party.ok(base + "/manifest/", {"match[version]": "all"})["objects"]
        if manifest:
            party.ok(base + "/objects/", {"added_after": manifest[0]["date_added"]})
        for endpoint, limit in (("objects", 9), ("manifest", 16)):
            params: dict[str, Any] = {"limit": limit, "match[version]": "all"}
            while True:
                page = party.ok(f"{base}/{endpoint}/", params)
                if not page.get("next"):
                    break
                params["next"] = page["next"]
        types = sorted({o["type"] for o in objs})
        if types:
            party.ok(base + "/objects/", {"match[type]": ",".join(types), "limit": 25})
        for obj_type in types[:: max(1, len(types) // 6)]:
            party.ok(base + "/objects/", {"match[type]": obj_type})
        for obj_id in sorted({o["id"] for o in objs}):
            party.ok(f"{base}/objects/{obj_id}/")
            party.ok(f"{base}/objects/{obj_id}/versions/")
    for status_id in status_ids:
        party.ok(f"/status/{status_id}/")
    # the party's receipts from the audit log (where the exchange offers them: 404 otherwise), for its own
    # statuses and for a sample of what it received (one delivery event covers a whole batch)
    inbox_ids = sorted({o["id"] for o in out.get("inbox", [])})
    for ref in ["key", *status_ids, *inbox_ids[:: max(1, len(inbox_ids) // 5)]]:
        assert party.get(f"/receipts/{ref}").status_code in (200, 404)
    # a few errors: an unknown object and an unknown status
    assert party.get(f"/collections/{cols[0]['id']}/objects/indicator--{uuid.uuid4()}/").status_code == 404
    assert party.get(f"/status/{uuid.uuid4()}/").status_code == 404
    return out


# -- provider -> consumer ----------------------------------------------------------------------------------------


def test_no_provider_canary_reaches_the_consumer() -> None:
    reached: Counter[str] = Counter()
    sent: Counter[str] = Counter()

    @settings(max_examples=PROVIDER_EXAMPLES, **SETTINGS)
    @given(case=provider_cases())
    def run(case: ProviderCase) -> None:
        with fresh_rig(case.name, "Consumer Fernhill") as rig:
            for post in case.posts:
                rig.provider.post(post.objects, post.headers)
            if case.delete is not None:
                rig.provider.delete(case.delete, case.posts[-1].headers)
            # the consumer's own status resource: plain feedback about one of its copies
            status_ids: list[str] = []
            inbox = rig.consumer.ok(f"/collections/{rig.consumer.collections()['inbox']}/objects/")["objects"]
            target = next((o for o in inbox if o["type"] not in ("relationship", "sighting")), None)
            if target is not None:
                opinion = {
                    "type": "opinion",
                    "spec_version": "2.1",
                    "id": f"opinion--{uuid.uuid4()}",
                    "created": "2026-01-02T03:04:05.000Z",
                    "modified": "2026-01-02T03:04:05.000Z",
                    "opinion": "agree",
                    "object_refs": [target["id"]],
                }
                status_ids.append(rig.consumer.post([opinion])["id"])
            got = walk(rig.consumer, status_ids)
            leaks = rig.consumer.transcript.leaks(case.canaries)
            assert not leaks, f"{len(leaks)} provider canaries reached the consumer:\n" + "\n".join(leaks[:20])
            reached.update({o["type"] for o in got["inbox"]})
            sent.update(case.types)
            assert len(rig.consumer.transcript) > 50

    run()
    assert set(sent) >= set(PROFILES), sorted(set(PROFILES) - set(sent))
    missing = sorted(set(RELEASED) - set(reached))
    assert not missing, f"never released over the run (the test would be vacuous for them): {missing}"
    assert not set(reached) - set(RELEASED), sorted(set(reached) - set(RELEASED))


# -- consumer -> provider ------------------------------------------------------------------------------------------


@dataclass(repr=False)
class FeedbackCase:
    """What a consumer sends back: its own objects first (if it is also a provider) and feedback built on the
    ids of the copies it received (``build`` is called with them once they are known; ``gen`` then draws from
    the test's ``st.data()``)."""

    gen: Gen
    name: str
    provides: bool
    own: list[dict[str, Any]]  # identity, markings, extension definitions (sent only when it is also a provider)
    build: Callable[[list[dict[str, Any]]], list[list[dict[str, Any]]]]
    headers: dict[str, str]
    canaries: dict[str, str]

    def __repr__(self) -> str:
        return f"FeedbackCase(name={self.name!r}, provides={self.provides}, canaries={len(self.canaries)})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


def feedback_object(a: Author, obj_type: str, copies: list[dict[str, Any]]) -> dict[str, Any]:
    """A sighting, opinion or note about the consumer's copies, with its canaries everywhere."""
    g = a.g
    obj = a.sdo(obj_type)
    w = obj["_where"]
    ids = [c["id"] for c in copies]
    if obj_type == "sighting":
        obj["sighting_of_ref"] = g.pick([c["id"] for c in copies if c["type"] not in ("relationship", "sighting")])
        obj["where_sighted_refs"] = [
            *g.subset(a.signers, 1),
            *(g.oid("location", w + " where_sighted_refs") for _ in range(g.count(0, 2))),
        ]
        if g.flag():
            obj["observed_data_refs"] = [
                g.oid("observed-data", w + " observed_data_refs") for _ in range(g.count(1, 2))
            ]
        a.seen(obj)
        if g.flag():
            obj["count"] = g.pick(ODD_COUNTS)
            g.plant(f'"count":{obj["count"]}', w + " count (exact)")
        if g.flag():
            obj["summary"] = g.flag()
        if g.flag():
            obj["description"] = a.text(w + " description")
    else:
        obj["object_refs"] = g.subset(ids, 1, 3)
        if g.flag():
            obj["authors"] = [f"{g.token(w + ' authors')} Lt. Osei", a.name]
        if obj_type == "opinion":
            obj["opinion"] = g.pick(("strongly-disagree", "disagree", "neutral", "agree", "strongly-agree"))
            if g.flag():
                obj["explanation"] = a.text(w + " explanation")
        else:
            if g.flag():
                obj["abstract"] = a.text(w + " abstract", short=True)
            obj["content"] = a.text(w + " content")
    return a.finish(obj)


@st.composite
def feedback_cases(draw: st.DrawFn) -> FeedbackCase:
    g = Gen(draw)
    a = Author(g, "consumer")
    provides = g.flag()
    own: list[dict[str, Any]] = [a.identity("signer")]
    if provides:  # its identity is in its outbox: the exchange learns its name and redacts it
        a.terms.names.append(a.signer_names[0])
        own.append(a.marking())
        own.extend(a.extension_definitions())
    else:  # a consumer cannot send its identity: its id, markings and extensions are only referenced
        a.marks.append(g.oid("marking-definition", "consumer statement marking id"))
    kinds = [*FEEDBACK, *g.subset(FEEDBACK * 2, 0, 3)]
    second = g.flag()
    headers = request_headers(g, "consumer")

    def build(copies: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        objs = [feedback_object(a, kind, copies) for kind in kinds]
        posts = [objs]
        if second:  # a newer version of one of them
            posts.append([a.new_version(g.pick(objs))])
        return posts

    return FeedbackCase(g, a.name, provides, own, build, headers, g.canaries)


def seed_intel() -> list[dict[str, Any]]:
    """What the provider sends, so the consumer has copies to give feedback on (no canaries here)."""
    stamp = "2026-01-02T03:04:05.000Z"

    def sdo(obj_type: str, **props: Any) -> dict[str, Any]:
        return {
            "type": obj_type,
            "spec_version": "2.1",
            "id": f"{obj_type}--{uuid.uuid4()}",
            "created": stamp,
            "modified": stamp,
            **props,
        }

    actor = sdo("threat-actor", name="Ashen Brigade")
    ind = sdo(
        "indicator",
        name="c2",
        pattern="[ipv4-addr:value = '198.51.100.23']",
        pattern_type="stix",
        valid_from=stamp,
    )
    loc = sdo("location", name="harbour", latitude=46.48, longitude=33.12)
    mal = sdo("malware", name="Quiet Eel", is_family=True)
    addr = {"type": "ipv4-addr", "spec_version": "2.1", "id": f"ipv4-addr--{uuid.uuid4()}", "value": "198.51.100.23"}
    rel = sdo("relationship", relationship_type="indicates", source_ref=ind["id"], target_ref=actor["id"])
    rep = sdo("report", name="weekly", published=stamp, object_refs=[actor["id"], ind["id"], rel["id"]])
    return [actor, ind, loc, mal, addr, rel, rep]


def test_no_consumer_canary_reaches_the_provider() -> None:
    reached: Counter[str] = Counter()

    @settings(max_examples=FEEDBACK_EXAMPLES, **SETTINGS)
    @given(case=feedback_cases(), data=st.data())
    def run(case: FeedbackCase, data: st.DataObject) -> None:
        case.gen.draw = data.draw
        with fresh_rig("Provider Brackwater", case.name, consumer_provides=case.provides) as rig:
            status_ids = [rig.provider.post(seed_intel())["id"]]  # the provider's own status resource
            inbox = rig.consumer.collections()["inbox"]
            copies = rig.consumer.ok(f"/collections/{inbox}/objects/")["objects"]
            assert len(copies) == 7
            if case.provides:
                rig.consumer.post(case.own, case.headers)
            for post in case.build(copies):
                rig.consumer.post(post, case.headers)
            rig.exchange.release_due(now_us() + 2 * 3600 * 1_000_000)  # the feedback batch falls due
            got = walk(rig.provider, status_ids)
            leaks = rig.provider.transcript.leaks(case.canaries)
            assert not leaks, f"{len(leaks)} consumer canaries reached the provider:\n" + "\n".join(leaks[:20])
            reached.update(o["type"] for o in got["inbox"])
            assert len(rig.provider.transcript) > 30

    run()
    assert set(reached) == set(FEEDBACK), reached
