"""In-process API tests: the real ASGI app and a real SQLite store, driven through Starlette's TestClient."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from cutout.api import create_app
from cutout.model.timestamps import now_us
from cutout.service import Exchange
from cutout.settings import Settings

TAXII = "application/taxii+json;version=2.1"
AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
_seq = itertools.count(1)


@dataclass
class Caller:
    """One party, talking to the app."""

    client: TestClient
    name: str
    token: str
    root: str = "/exchange"

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Accept": TAXII, "Authorization": f"Bearer {self.token}", **(extra or {})}

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(self.root + path, headers=self._headers(kw.pop("headers", None)), **kw)

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = self._headers({"Content-Type": TAXII, **kw.pop("headers", {})})
        return self.client.post(self.root + path, content=content, headers=headers, **kw)

    def collection_id(self, title: str) -> str:
        cols = self.get("/collections/").json()["collections"]
        return next(c["id"] for c in cols if c["title"] == title)

    def send(self, objects: list[dict[str, Any]]) -> Any:
        return self.post(f"/collections/{self.collection_id('outbox')}/objects/", {"objects": objects})

    def inbox(self, **params: Any) -> Any:
        return self.get(f"/collections/{self.collection_id('inbox')}/objects/", params=params)


@dataclass
class World:
    exchange: Exchange
    client: TestClient
    provider: Caller
    consumer: Caller
    outsider: Caller


@pytest.fixture
def world(exchange: Exchange, settings: Settings) -> Iterator[World]:
    _, pt = exchange.add_party("Provider One", provider=True, consumer=False)
    _, ct = exchange.add_party("Consumer One", provider=False, consumer=True)
    _, ot = exchange.add_party("Outsider", provider=False, consumer=True)
    app = create_app(settings, exchange, run_scheduler=False)
    with TestClient(app) as client:
        yield World(
            exchange,
            client,
            Caller(client, "Provider One", pt),
            Caller(client, "Consumer One", ct),
            Caller(client, "Outsider", ot),
        )


@pytest.fixture
def verdicts(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each answer ``DeferredChecks.all_valid`` gives in the test, in order: the checking process's verdict on
    each submission it took part in."""
    from cutout.model.offload import DeferredChecks

    seen: list[bool] = []
    all_valid = DeferredChecks.all_valid

    def recorded(self: DeferredChecks) -> bool:
        seen.append(all_valid(self))
        return seen[-1]

    monkeypatch.setattr(DeferredChecks, "all_valid", recorded)
    return seen


def flush_batches(exchange: Exchange) -> int:
    """Release the batch of feedback and requests that the next feedback epoch would release."""
    return exchange.release_due(now_us() + (exchange.settings.feedback_epoch + 1) * 1_000_000)


def ts(n: int = 0) -> str:
    return f"2026-11-20T05:{n // 60 % 60:02d}:{n % 60:02d}.123Z"


def indicator(n: int | None = None, **extra: Any) -> dict[str, Any]:
    n = next(_seq) if n is None else n
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": ts(0),
        "modified": ts(0),
        "name": f"indicator {n}",
        "pattern": f"[ipv4-addr:value = '198.51.100.{n % 250}']",
        "pattern_type": "stix",
        "valid_from": ts(0),
        "object_marking_refs": [AMBER],
        **extra,
    }


def location(lat: float, lon: float, **extra: Any) -> dict[str, Any]:
    return {
        "type": "location",
        "spec_version": "2.1",
        "id": f"location--{uuid.uuid4()}",
        "created": ts(0),
        "modified": ts(0),
        "latitude": lat,
        "longitude": lon,
        "object_marking_refs": [AMBER],
        **extra,
    }
