"""Without valid credentials every TAXII route answers 401 before it looks at anything else.

Nothing about the request (its Accept, its body's size, type or JSON, the collection or object it names, its
query) may change the answer an unauthenticated client gets, and the exchange is asked nothing but who holds
the credentials: the 401 is the same bytes whatever else the request holds.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from cutout.api import create_app
from cutout.settings import Settings
from tests.api.conftest import TAXII, World, indicator

OBJ = f"indicator--{uuid.uuid4()}"
#: every credentialed route of the app, and the methods it answers (HEAD comes with GET)
ROUTES: dict[str, tuple[str, ...]] = {
    "/taxii2": ("GET",),
    "/exchange": ("GET",),
    "/exchange/status/{status_id}": ("GET",),
    "/exchange/collections": ("GET",),
    "/exchange/collections/{coll}": ("GET",),
    "/exchange/collections/{coll}/objects": ("GET", "POST"),
    "/exchange/collections/{coll}/objects/{obj}": ("GET", "DELETE"),
    "/exchange/collections/{coll}/objects/{obj}/versions": ("GET",),
    "/exchange/collections/{coll}/manifest": ("GET",),
    "/exchange/receipts/key": ("GET",),
    "/exchange/extensions": ("GET",),
    "/exchange/receipts/{ref}": ("GET",),
}
#: the services an unauthenticated request must never reach
SERVICE_CALLS = ("collection", "collections", "page", "submit", "status", "delete_object", "receipt_for", "audit_key")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _credentials(world: World) -> dict[str, dict[str, str]]:
    return {
        "none": {},
        "unknown bearer": {"Authorization": "Bearer not-a-token"},
        "wrong password": {"Authorization": _basic(world.provider.name, "wrong")},
        "someone else's name": {"Authorization": _basic(world.consumer.name, world.provider.token)},
        "malformed basic": {"Authorization": "Basic !!!notbase64"},
        "other scheme": {"Authorization": "Digest abc"},
        "empty bearer": {"Authorization": "Bearer "},
    }


def _provocations(method: str, path: str, max_len: int) -> dict[str, dict[str, Any]]:
    """Requests that, with credentials, would be refused for something other than who is asking."""
    out: dict[str, dict[str, Any]] = {
        "plain": {},
        "not acceptable": {"headers": {"Accept": "application/json"}},
        "bad params": {
            "params": {
                "limit": "-1",
                "added_after": "yesterday",
                "match[spec_version]": "9.9",
                "match[version]": "bogus",
                "next": "garbage",
            }
        },
        "everything wrong": {
            "headers": {"Accept": "text/html", "Content-Type": "text/plain"},
            "params": {"limit": "x", "next": "garbage"},
            "content": b"\x00" * 10,
        },
    }
    if method == "POST":
        envelope = orjson.dumps({"objects": [indicator()]})
        out |= {
            "a valid envelope": {"content": envelope},
            "wrong media type": {"headers": {"Content-Type": "text/plain"}, "content": envelope},
            "no media type": {"headers": {"Content-Type": ""}, "content": envelope},
            "not json": {"content": b"{not json"},
            "empty envelope": {"content": b'{"objects":[]}'},
            "not an envelope": {"content": b"[1, 2, 3]"},
            "over 64 KiB, not json": {"content": b"{" + b" " * (80 * 1024)},
            "too large": {"content": b"{" + b" " * max_len},
            "declared too large": {"headers": {"Content-Length": str(max_len + 1)}, "content": b"{}"},
        }
    return out


def _concrete(template: str, coll: str) -> str:
    return template.format(coll=coll, obj=OBJ, status_id=uuid.uuid4(), ref=uuid.uuid4())


def test_the_table_names_every_credentialed_route(world: World) -> None:
    seen: dict[str, set[str]] = {}
    for route in world.client.app.routes:  # type: ignore[attr-defined]
        assert isinstance(route, Route)
        if route.path != "/health":
            seen.setdefault(route.path.rstrip("/"), set()).update((route.methods or set()) - {"HEAD"})
    assert seen == {path: set(methods) for path, methods in ROUTES.items()}


@pytest.mark.parametrize(("template", "method"), [(path, m) for path, methods in ROUTES.items() for m in methods])
def test_without_valid_credentials_only_401(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch, template: str, method: str
) -> None:
    # a small limit, so that a body over 64 KiB can be both under and over it
    max_len = 100 * 1024
    small = dataclasses.replace(settings, max_content_length=max_len)
    outbox = world.provider.collection_id("outbox")
    colls = {"own outbox": outbox, "unknown": str(uuid.uuid4()), "another's": world.consumer.collection_id("inbox")}
    if "{coll}" not in template:
        colls = {"-": ""}

    def refuse(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            raise AssertionError(f"an unauthenticated request reached Exchange.{name}")

        return call

    for name in SERVICE_CALLS:
        monkeypatch.setattr(world.exchange, name, refuse(name))

    with TestClient(create_app(small, world.exchange, run_scheduler=False)) as client:
        _refuse_all(world, client, template, method, colls, max_len)
    monkeypatch.undo()
    # the valid envelope sent without credentials was not stored
    assert world.provider.get(f"/collections/{outbox}/objects/").json()["objects"] == []


def _refuse_all(
    world: World, client: TestClient, template: str, method: str, colls: dict[str, str], max_len: int
) -> None:
    for who, auth in _credentials(world).items():
        expected = client.get("/taxii2/", headers={"Accept": TAXII, **auth})
        assert expected.status_code == 401
        for coll_name, coll in colls.items():
            for slash in ("", "/"):
                url = _concrete(template, coll) + slash
                for what, kw in _provocations(method, url, max_len).items():
                    headers = {"Accept": TAXII, "Content-Type": TAXII, **kw.get("headers", {}), **auth}
                    r = client.request(method, url, headers=headers, params=kw.get("params"), content=kw.get("content"))
                    case = f"{method} {url} ({coll_name}), {who}, {what}"
                    assert r.status_code == 401, case
                    assert r.content == expected.content, case
                    assert dict(r.headers) == dict(expected.headers), case


@pytest.mark.parametrize("template", [p for p, methods in ROUTES.items() if "GET" in methods])
def test_a_head_request_without_credentials_is_401(world: World, template: str) -> None:
    url = _concrete(template, str(uuid.uuid4()))
    r = world.client.head(url, headers={"Accept": "application/json"})
    assert r.status_code == 401
    assert "x-taxii-date-added-first" not in r.headers


#: requests no route answers: a path the exchange does not have, or a method its path does not take
NO_ROUTE: tuple[tuple[str, str], ...] = (
    ("GET", "/nothing/here/"),
    ("GET", "/taxii2/elsewhere/"),
    ("GET", "/exchange/collections/{coll}/nope/"),
    ("POST", "/exchange/nothing/"),
    ("PUT", "/exchange/collections/{coll}/objects/"),
    ("DELETE", "/exchange/collections/"),
    ("PATCH", "/taxii2/"),
    ("POST", "/health"),
)


@pytest.mark.parametrize(("method", "template"), NO_ROUTE)
def test_no_route_is_told_only_to_a_party(world: World, method: str, template: str) -> None:
    """Which paths and methods the exchange has is not told to a client without valid credentials: the 404 or
    405 a party hears is, for anyone else, the same 401 as every route's."""
    url = template.format(coll=world.provider.collection_id("outbox"))
    for who, auth in _credentials(world).items():
        expected = world.client.get("/taxii2/", headers={"Accept": TAXII, **auth})
        r = world.client.request(method, url, headers={"Accept": TAXII, **auth}, content=b"{}")
        assert r.status_code == 401, (method, url, who)
        assert r.content == expected.content, (method, url, who)
        assert dict(r.headers) == dict(expected.headers), (method, url, who)
    r = world.client.request(
        method, url, headers={"Accept": TAXII, "Authorization": f"Bearer {world.provider.token}"}, content=b"{}"
    )
    assert r.status_code == (404 if method == "GET" or "nothing" in url else 405), r.text
    assert r.json()["http_status"] == str(r.status_code)
