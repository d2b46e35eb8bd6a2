"""How a request is served: one call on a worker thread (authentication and the work together), and bodies
read early only when small, refused for their size, type or JSON only after authentication."""

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
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions the app hands to a worker thread, in order."""
    calls: list[str] = []
    real = app_module.Workers.run

    async def counted(self: app_module.Workers, func: Any, *args: Any) -> Any:
        calls.append(func.__name__)
        return await real(self, func, *args)

    monkeypatch.setattr(app_module.Workers, "run", counted)
    return calls


def _envelope_over(size: int) -> bytes:
    objs: list[dict[str, Any]] = []
    while len(body := orjson.dumps({"objects": objs})) <= size:
        objs.append(indicator(description="x" * 1000))
    return body


def test_one_thread_hop_per_request(world: World, hops: list[str]) -> None:
    p = world.provider
    outbox = p.collection_id("outbox")
    hops.clear()
    for path in ("/", "/collections/", f"/collections/{outbox}/", f"/collections/{outbox}/objects/"):
        assert p.get(path).status_code == 200
        assert len(hops) == 1, (path, hops)
        hops.clear()
    assert p.post(f"/collections/{outbox}/objects/", {"objects": [indicator()]}).status_code == 202
    assert len(hops) == 1, hops
    hops.clear()
    assert world.client.get("/exchange/collections/").status_code == 401
    assert len(hops) == 1, hops


def test_a_body_over_the_early_read_is_read_after_authentication(world: World, hops: list[str]) -> None:
    p = world.provider
    outbox = p.collection_id("outbox")
    body = _envelope_over(EARLY_BODY)
    hops.clear()
    r = p.post(f"/collections/{outbox}/objects/", body)
    assert r.status_code == 202, r.text
    assert r.json()["success_count"] == len(orjson.loads(body)["objects"])
    assert len(hops) == 2  # authentication, then the work once the body is in


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
