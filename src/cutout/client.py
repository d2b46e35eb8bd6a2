"""A party's own TAXII 2.1 client, for those without a TAXII tool (``cutout send`` / ``cutout receive``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from cutout.errors import AuthError, BadRequest, CutoutError, InvalidContent, NotFound, Problem

__all__ = ["Client", "Received"]

TAXII = "application/taxii+json;version=2.1"


@dataclass(frozen=True)
class Received:
    objects: list[dict[str, Any]]
    last_added: str | None


class Client:
    """Talks to one exchange as one party (HTTP Basic: party name and token)."""

    def __init__(
        self, url: str, party: str, token: str, timeout: float = 60.0, record: list[bytes] | None = None
    ) -> None:
        if not url:
            raise BadRequest("no exchange URL: pass --url or set CUTOUT_URL")
        if not party or not token:
            raise BadRequest("no credentials: pass --party and --token or set CUTOUT_PARTY and CUTOUT_TOKEN")
        self.base = url.rstrip("/")
        if self.base.endswith("/taxii2"):
            self.base = self.base[: -len("/taxii2")]
        hooks = {"response": [self._record]} if record is not None else {}
        self.record = record
        self.http = httpx.Client(
            auth=(party, token),
            timeout=timeout,
            headers={"Accept": TAXII},
            follow_redirects=False,
            event_hooks=hooks,
        )
        self._collections: dict[str, str] | None = None
        self._root: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, resp: httpx.Response) -> None:
        """Keep every byte the server sent (status line, headers, body): the demo checks them for leaks."""
        resp.read()
        assert self.record is not None
        head = f"HTTP {resp.status_code}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in resp.headers.items())
        self.record.append(head.encode() + b"\r\n" + resp.content)

    def _get(self, url: str, params: dict[str, Any] | None = None) -> httpx.Response:
        return self._check(self.http.get(url, params=params))

    @staticmethod
    def _check(resp: httpx.Response) -> httpx.Response:
        if resp.status_code < 400:
            return resp
        try:
            body = orjson.loads(resp.content)
            message = str(body.get("description") or body.get("title"))
            problems = tuple(
                Problem(p.get("index", -1), p.get("id"), p.get("message", ""))
                for p in (body.get("details") or {}).get("problems", [])
            )
        except (orjson.JSONDecodeError, AttributeError):
            message, problems = resp.text[:200], ()
        if resp.status_code == 401:
            raise AuthError(message)
        if resp.status_code == 404:
            raise NotFound(message)
        if problems:
            raise InvalidContent(message, problems)
        raise CutoutError(f"HTTP {resp.status_code}: {message}")

    def api_root(self) -> str:
        if self._root is None:
            doc = self._get(self.base + "/taxii2/").json()
            self._root = str(doc.get("default") or doc["api_roots"][0])
        return self._root

    def collection(self, title: str) -> str:
        if self._collections is None:
            doc = self._get(self.api_root() + "collections/").json()
            self._collections = {c["title"]: c["id"] for c in doc.get("collections", [])}
        return self.api_root() + f"collections/{self._collections[title]}/"

    def send(self, objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Post objects to this party's outbox; returns the TAXII status."""
        resp = self.http.post(
            self.collection("outbox") + "objects/",
            content=orjson.dumps({"objects": list(objects)}),
            headers={"Content-Type": TAXII},
        )
        result: dict[str, Any] = self._check(resp).json()
        return result

    def pages(self, title: str = "inbox", added_after: str | None = None, limit: int = 1000) -> Iterator[Received]:
        """Every page of a collection after ``added_after``, following ``next``."""
        url = self.collection(title) + "objects/"
        params: dict[str, Any] = {"limit": limit}
        if added_after:
            params["added_after"] = added_after
        while True:
            resp = self._get(url, params)
            doc = orjson.loads(resp.content)
            yield Received(doc.get("objects", []), resp.headers.get("X-TAXII-Date-Added-Last"))
            if not doc.get("more"):
                return
            params["next"] = doc["next"]

    def receive(self, title: str = "inbox", added_after: str | None = None) -> Received:
        objects: list[dict[str, Any]] = []
        last = added_after
        for page in self.pages(title, added_after):
            objects.extend(page.objects)
            last = page.last_added or last
        return Received(objects, last)
