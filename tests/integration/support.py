"""Helpers for the integration tests: a broker made with the library and served by a real ``cutout serve``,
parties talking to it over HTTP, and transcripts of every byte a party receives."""

from __future__ import annotations

import contextlib
import itertools
import os
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import requests
import requests.auth

from cutout.demo.server import RunningServer
from cutout.service import Exchange
from cutout.settings import Settings, load_settings
from tests.conftest import reset_postgres

TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
TLP = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP_IDS = frozenset(TLP.values())
_seq = itertools.count(1)


# -- the broker --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Party:
    """A registered party: its name (the HTTP Basic user) and its token."""

    name: str
    token: str


@dataclass
class Broker:
    """A broker in a temporary folder, served by a real ``cutout serve`` subprocess."""

    data_dir: Path
    settings: Settings
    identity: dict[str, Any]
    server: RunningServer | None = None
    _ids: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def discovery(self) -> str:
        return self.url + "/taxii2/"

    @property
    def root(self) -> str:
        return f"{self.url}/{self.settings.api_root}/"

    @contextlib.contextmanager
    def exchange(self) -> Iterator[Exchange]:
        """The library's view of the broker, opened beside the running server (SQLite WAL, one writer)."""
        ex = Exchange.open(self.settings)
        try:
            yield ex
        finally:
            ex.close()

    def add_party(self, name: str, *, provider: bool = False, consumer: bool = False) -> Party:
        with self.exchange() as ex:
            _, token = ex.add_party(name, provider=provider, consumer=consumer)
        return Party(name, token)

    def add_agreement(self, provider: Party, consumer: Party, **kw: Any) -> dict[str, Any]:
        with self.exchange() as ex:
            return ex.add_agreement(provider.name, consumer.name, **kw)

    def revoke(self, party: Party) -> None:
        with self.exchange() as ex:
            ex.revoke_party(party.name)

    def pair(self, label: str, **agreement: Any) -> tuple[Party, Party]:
        """A fresh provider and a fresh consumer with an agreement between them (all types, up to amber)."""
        n = next(_seq)
        provider = self.add_party(f"{label} Provider {n}", provider=True)
        consumer = self.add_party(f"{label} Consumer {n}", consumer=True)
        self.add_agreement(provider, consumer, **agreement)
        return provider, consumer

    def collection_ids(self, party: Party) -> dict[str, str]:
        """``{"inbox": uuid, "outbox": uuid}`` of a party, asked over HTTP."""
        if party.name not in self._ids:
            with self.http(party) as h:
                r = h.get("collections/")
                assert r.status_code == 200, r.text
                self._ids[party.name] = {c["title"]: c["id"] for c in r.json()["collections"]}
        return self._ids[party.name]

    def http(
        self,
        party: Party | None,
        *,
        basic: bool = False,
        headers: dict[str, str] | None = None,
        record: Transcript | None = None,
    ) -> httpx.Client:
        """An httpx client for one party, based at the API root: Bearer (or HTTP Basic) and TAXII Accept."""
        auth: Any = None
        hdrs = {"Accept": TAXII}
        if party is not None:
            if basic:
                auth = httpx.BasicAuth(party.name, party.token)
            else:
                hdrs["Authorization"] = f"Bearer {party.token}"
        hdrs.update(headers or {})
        hooks = {"response": [record.httpx_hook]} if record is not None else {}
        return httpx.Client(base_url=self.root, headers=hdrs, auth=auth, timeout=60.0, event_hooks=hooks)

    def check_log(self) -> None:
        """No request may have ended in an unhandled exception on the server."""
        assert self.server is not None
        text = self.server.log.read_text(errors="replace")
        assert "Traceback" not in text, f"the server logged an unhandled error:\n{text[-4000:]}"


# -- talking to it -----------------------------------------------------------------------------------------
def coll_path(broker: Broker, party: Party, title: str, rest: str = "objects/") -> str:
    """A path below the API root to one of the party's own collections."""
    return f"collections/{broker.collection_ids(party)[title]}/{rest}"


def post_objects(h: httpx.Client, broker: Broker, party: Party, objects: list[dict[str, Any]]) -> httpx.Response:
    """POST an envelope to the party's outbox."""
    return h.post(
        coll_path(broker, party, "outbox"),
        content=orjson.dumps({"objects": objects}),
        headers={"Content-Type": TAXII},
    )


def send(broker: Broker, party: Party, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """POST objects to the party's outbox and insist on a complete status."""
    with broker.http(party) as h:
        r = post_objects(h, broker, party, objects)
    assert r.status_code == 202, r.text
    status: dict[str, Any] = r.json()
    assert status["status"] == "complete", status
    assert status["success_count"] == len(objects), status
    return status


def read_all(broker: Broker, party: Party, title: str = "inbox", **params: Any) -> list[dict[str, Any]]:
    """Every object of one of the party's collections, following ``next``."""
    out: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 1000, **params}
    with broker.http(party) as h:
        while True:
            r = h.get(coll_path(broker, party, title), params=query)
            assert r.status_code == 200, r.text
            doc = r.json()
            out.extend(doc.get("objects", []))
            if not doc["more"]:
                return out
            query["next"] = doc["next"]


def read_until(
    broker: Broker,
    party: Party,
    count: int,
    title: str = "inbox",
    timeout: float = 20.0,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Poll a collection until it holds at least ``count`` objects (and ``until`` holds of them): held releases
    and batches fall due on the server's scheduler. Fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = read_all(broker, party, title)
        done = len(got) >= count and (until is None or until(got))
        if done or time.monotonic() > deadline:
            assert done, f"{party.name}'s {title} holds {len(got)} objects, not the {count} awaited: {got}"
            return got
        time.sleep(0.1)


def manifest(broker: Broker, party: Party, title: str = "inbox", **params: Any) -> list[dict[str, Any]]:
    """Every manifest entry of one of the party's collections, following ``next``."""
    out: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 1000, **params}
    with broker.http(party) as h:
        while True:
            r = h.get(coll_path(broker, party, title, "manifest/"), params=query)
            assert r.status_code == 200, r.text
            doc = r.json()
            out.extend(doc.get("objects", []))
            if not doc["more"]:
                return out
            query["next"] = doc["next"]


def assert_taxii_error(r: httpx.Response | requests.Response, status: int) -> dict[str, Any]:
    """The response is a TAXII error message (§3.6.1) with this status; returns its body."""
    body = r.content
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {body[:500]!r}"
    assert r.headers["content-type"].replace(" ", "") == TAXII
    doc = orjson.loads(body)
    assert isinstance(doc, dict)
    for key in ("title", "description", "error_code", "http_status"):
        assert isinstance(doc.get(key), str) and doc[key], (key, doc)
    assert doc["http_status"] == str(status)
    return doc


# -- transcripts -------------------------------------------------------------------------------------------
@dataclass
class Transcript:
    """Every byte one party received: status lines, all headers, bodies."""

    chunks: list[bytes] = field(default_factory=list)

    def add(self, status: int, headers: Any, body: bytes) -> None:
        head = f"HTTP {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.chunks.append(head.encode("latin-1") + b"\r\n" + body)

    def httpx_hook(self, resp: httpx.Response) -> None:
        resp.read()
        self.add(resp.status_code, resp.headers, resp.content)

    def requests_hook(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.add(resp.status_code, resp.headers, resp.content)

    def find(self, canaries: list[str]) -> list[str]:
        """The canaries that appear anywhere (case-insensitive, and also after NFKC normalisation)."""
        text = b"\n".join(self.chunks).decode("utf-8", errors="replace")
        forms = (text.casefold(), unicodedata.normalize("NFKC", text).casefold())
        return [c for c in canaries if any(unicodedata.normalize("NFKC", c).casefold() in f for f in forms)]

    def __len__(self) -> int:
        return len(self.chunks)


class RecordingAuth(requests.auth.HTTPBasicAuth):
    """HTTP Basic for taxii2-client that also records every response and can add request headers."""

    def __init__(self, party: Party, record: Transcript, headers: dict[str, str] | None = None) -> None:
        super().__init__(party.name, party.token)
        self.record = record
        self.headers = headers or {}

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r = super().__call__(r)
        r.headers.update(self.headers)
        r.register_hook("response", self.record.requests_hook)
        return r


# -- STIX content ------------------------------------------------------------------------------------------
def ts(second: int = 0, minute: int = 0, ms: int = 0, day: int = 2) -> str:
    return f"2026-01-{day:02d}T03:{minute:02d}:{second:02d}.{ms:03d}Z"


def indicator(n: int, *, tlp: str = "green", **extra: Any) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": ts(),
        "modified": ts(),
        "name": f"indicator {n}",
        "pattern": f"[ipv4-addr:value = '10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}']",
        "pattern_type": "stix",
        "valid_from": ts(),
        "object_marking_refs": [TLP[tlp]],
        **extra,
    }


def location(n: int, *, tlp: str = "green", **extra: Any) -> dict[str, Any]:
    return {
        "type": "location",
        "spec_version": "2.1",
        "id": f"location--{uuid.uuid4()}",
        "created": ts(),
        "modified": ts(),
        "name": f"site {n}",
        "latitude": round(-80 + (n * 0.037) % 160, 4),
        "longitude": round(-170 + (n * 0.053) % 340, 4),
        "object_marking_refs": [TLP[tlp]],
        **extra,
    }


def by_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in objects if "name" in o}


def walk(value: Any, visit: Callable[[str, Any], None], key: str = "") -> None:
    """Call ``visit(key, value)`` for every key/value at any depth of a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            visit(k, v)
            walk(v, visit, k)
    elif isinstance(value, list):
        for v in value:
            walk(v, visit, key)


def make_broker(data_dir: Path, toml: dict[str, Any] | None = None) -> Broker:
    """Initialise a broker in ``data_dir`` with the library (optionally with a cutout.toml).

    With ``CUTOUT_TEST_INTEGRATION_STORE=postgres`` (and CUTOUT_TEST_POSTGRES), the broker's store is that
    PostgreSQL database, emptied first: the integration suite then runs on PostgreSQL (``make test-pg``)."""
    if os.environ.get("CUTOUT_TEST_INTEGRATION_STORE") == "postgres":
        url = os.environ.get("CUTOUT_TEST_POSTGRES", "")
        if not url:
            pytest.skip("CUTOUT_TEST_INTEGRATION_STORE=postgres needs CUTOUT_TEST_POSTGRES=postgresql://…")
        reset_postgres(url)
        toml = {**(toml or {}), "database_url": url}
    if toml:
        lines = ["[cutout]"] + [f"{k} = {orjson.dumps(v).decode()}" for k, v in toml.items()]
        (data_dir / "cutout.toml").write_text("\n".join(lines) + "\n", "utf-8")
    settings = load_settings(data_dir, environ={})
    identity = Exchange.init(settings, "Liaison Exchange")
    return Broker(data_dir=data_dir, settings=settings, identity=identity)
