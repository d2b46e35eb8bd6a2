"""How a request is served: one call (authentication and the work together), on the event loop when the
request is alone on SQLite and on a worker thread otherwise; bodies read early only when small, refused for
their size, type or JSON only after authentication."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

import cutout.api.app as app_module
from cutout.api import create_app
from cutout.api.app import EARLY_BODY
from cutout.settings import Settings
from tests.api.conftest import TAXII, Caller, World, indicator


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The functions the app runs for requests, in order, each with where it ran to its end: on the event
    loop ("loop") or on a worker thread ("thread")."""
    calls: list[tuple[str, str]] = []
    real_run, real_answer = app_module.Workers.run, app_module.Workers.answer

    async def run(self: app_module.Workers, func: Any, *args: Any) -> Any:
        calls.append((func.__name__, "thread"))
        return await real_run(self, func, *args)

    async def answer(self: app_module.Workers, func: Any, *args: Any) -> Any:
        on_loop = self.inline - self.fell_back
        try:
            return await real_answer(self, func, *args)
        finally:
            if self.inline - self.fell_back > on_loop:
                calls.append((func.__name__, "loop"))

    monkeypatch.setattr(app_module.Workers, "run", run)
    monkeypatch.setattr(app_module.Workers, "answer", answer)
    return calls


def _envelope_over(size: int) -> bytes:
    objs: list[dict[str, Any]] = []
    while len(body := orjson.dumps({"objects": objs})) <= size:
        objs.append(indicator(description="x" * 1000))
    return body


def test_one_call_per_request_on_the_loop_when_alone_on_sqlite(
    world: World, settings: Settings, hops: list[tuple[str, str]]
) -> None:
    """Authentication and the work are one call; a request alone on SQLite runs it on the event loop (no hop),
    on PostgreSQL always on a worker thread (its statements wait on the network)."""
    where = "loop" if settings.db_url.startswith("sqlite") else "thread"
    p = world.provider
    outbox = p.collection_id("outbox")
    hops.clear()
    for path in ("/", "/collections/", f"/collections/{outbox}/", f"/collections/{outbox}/objects/"):
        assert p.get(path).status_code == 200
        assert [w for _, w in hops] == [where], (path, hops)
        hops.clear()
    assert p.post(f"/collections/{outbox}/objects/", {"objects": [indicator()]}).status_code == 202
    assert [w for _, w in hops] == [where], hops
    hops.clear()
    assert world.client.get("/exchange/collections/").status_code == 401
    assert [w for _, w in hops] == [where], hops
    hops.clear()
    assert world.client.get("/health").status_code == 200
    assert hops == [("ping", where)]
    workers = world.client.app.state.workers  # type: ignore[attr-defined]
    assert workers.fell_back == 0 and workers.requests == 0


def test_a_body_over_the_early_read_is_read_after_authentication(
    world: World, settings: Settings, hops: list[tuple[str, str]]
) -> None:
    p = world.provider
    outbox = p.collection_id("outbox")
    body = _envelope_over(EARLY_BODY)
    hops.clear()
    r = p.post(f"/collections/{outbox}/objects/", body)
    assert r.status_code == 202, r.text
    assert r.json()["success_count"] == len(orjson.loads(body)["objects"])
    # authentication (on the loop when alone on SQLite), then the work once the body is in: always on a worker
    # thread, however alone, so that a request arriving meanwhile is read at once
    where = "loop" if settings.db_url.startswith("sqlite") else "thread"
    assert hops == [("admit_post", where), ("add_objects", "thread")]


@pytest.mark.parametrize("size", [100, 2 * EARLY_BODY])
def test_a_chunked_body_without_content_length(world: World, size: int) -> None:
    p = world.provider
    body = _envelope_over(size)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    r = world.client.post(
        f"/exchange/collections/{p.collection_id('outbox')}/objects/",
        content=chunks(),
        headers={"Accept": TAXII, "Content-Type": TAXII, "Authorization": f"Bearer {p.token}"},
    )
    assert "content-length" not in r.request.headers
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("limit", "size"),
    [
        (2048, 4096),  # read early (under 64 KiB), over the limit
        (EARLY_BODY + 1024, EARLY_BODY + 4096),  # read after authentication, over the limit
        (EARLY_BODY * 4, EARLY_BODY * 4 + 1),
    ],
)
def test_too_large_with_credentials(world: World, settings: Settings, limit: int, size: int) -> None:
    small = dataclasses.replace(settings, max_content_length=limit)
    p = world.provider
    with TestClient(create_app(small, world.exchange, run_scheduler=False)) as client:
        c = Caller(client, p.name, p.token)
        path = f"/collections/{p.collection_id('outbox')}/objects/"
        r = c.post(path, b"{" + b" " * (size - 1))
        assert r.status_code == 413
        assert r.json()["error_code"] == "too-large"

        def chunks() -> Iterator[bytes]:
            for i in range(0, size, 8192):
                yield b" " * min(8192, size - i)

        r = client.post(
            "/exchange" + path,
            content=chunks(),
            headers={"Accept": TAXII, "Content-Type": TAXII, "Authorization": f"Bearer {p.token}"},
        )
        assert r.status_code == 413


def test_with_credentials_the_refusals_keep_their_order(world: World) -> None:
    p = world.provider
    path = f"/collections/{p.collection_id('outbox')}/objects/"
    # Accept, then media type, then size, then JSON
    r = p.post(path, b"{", headers={"Accept": "application/json", "Content-Type": "text/plain"})
    assert r.status_code == 406
    r = p.post(path, b"{", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert p.post(path, b"{").status_code == 400
    assert p.post(path, b"[]").status_code == 422
