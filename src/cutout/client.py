"""A party's own TAXII 2.1 client, for those without a TAXII tool (``cutout send`` / ``cutout receive``)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import orjson

from cutout.errors import AuthError, BadRequest, CutoutError, InvalidContent, NotFound, Problem, Unreachable

__all__ = ["BundleFile", "Client", "Received"]

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
        return self._check(self._call("GET", url, params=params))

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request; Unreachable, in words, where no HTTP answer came (refused, timed out, cut off)."""
        try:
            return self.http.request(method, url, **kwargs)
        except httpx.InvalidURL as exc:
            raise BadRequest(f"not an exchange URL: {self.base!r} ({exc})") from exc
        except httpx.TransportError as exc:
            what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            after = (
                "; it may or may not have stored what was sent: sending it again is safe (each object is stored once)"
                if method == "POST"
                else ""
            )
            raise Unreachable(f"cannot reach the exchange at {self.base} ({what}){after}") from exc

    @staticmethod
    def _doc(resp: httpx.Response) -> Any:
        """The answer's JSON; Unreachable if it is not JSON (not a TAXII server answered)."""
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise Unreachable(
                f"the answer from {resp.request.url} is not TAXII JSON (HTTP {resp.status_code},"
                f" {resp.headers.get('content-type', 'no content type')}): is this the exchange's URL?"
            ) from exc

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
            doc = self._doc(self._get(self.base + "/taxii2/"))
            try:
                self._root = str(doc.get("default") or doc["api_roots"][0])
            except (AttributeError, KeyError, IndexError, TypeError) as exc:
                raise Unreachable(f"{self.base}/taxii2/ is not a TAXII 2.1 discovery resource") from exc
        return self._root

    def collection(self, title: str) -> str:
        if self._collections is None:
            doc = self._doc(self._get(self.api_root() + "collections/"))
            self._collections = {c["title"]: c["id"] for c in doc.get("collections", [])}
        return self.api_root() + f"collections/{self._collections[title]}/"

    def send(self, objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Post objects to this party's outbox; returns the TAXII status."""
        resp = self._call(
            "POST",
            self.collection("outbox") + "objects/",
            content=orjson.dumps({"objects": list(objects)}),
            headers={"Content-Type": TAXII},
        )
        result: dict[str, Any] = self._doc(self._check(resp))
        return result

    def pages(self, title: str = "inbox", added_after: str | None = None, limit: int = 1000) -> Iterator[Received]:
        """Every page of a collection after ``added_after``, following ``next``: one page held at a time. Each
        page's ``last_added`` is where a later ``added_after`` would carry on from it."""
        url = self.collection(title) + "objects/"
        params: dict[str, Any] = {"limit": limit}
        if added_after:
            params["added_after"] = added_after
        while True:
            resp = self._get(url, params)
            doc = self._doc(resp)
            yield Received(doc.get("objects", []), resp.headers.get("X-TAXII-Date-Added-Last"))
            if not doc.get("more"):
                return
            params["next"] = doc["next"]

    def receive(self, title: str = "inbox", added_after: str | None = None) -> Received:
        """The whole collection after ``added_after`` in one list (the demo's small inboxes; ``cutout receive``
        goes page by page instead)."""
        objects: list[dict[str, Any]] = []
        last = added_after
        for page in self.pages(title, added_after):
            objects.extend(page.objects)
            last = page.last_added or last
        return Received(objects, last)


class BundleFile:
    """A STIX bundle written to ``path`` object by object, so that no more than a page is held.

    It is written to a temporary file beside ``path`` and put in its place by ``close`` (an existing file is
    replaced then, not before): ``path`` never holds a half-written bundle, even if this process is killed.
    ``discard`` removes the temporary file instead. One object per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as a file opened for writing would be, not mkstemp's 0600
        self._tmp = Path(tmp)
        self._out: IO[bytes] = os.fdopen(fd, "wb")
        self._out.write(b'{"type": "bundle", "id": "bundle--%s", "objects": [' % str(uuid.uuid4()).encode())

    def add(self, objects: Iterable[dict[str, Any]]) -> None:
        for obj in objects:
            self._out.write(b",\n" if self.count else b"\n")
            self._out.write(orjson.dumps(obj))
            self.count += 1

    def close(self) -> None:
        """End the bundle, make it durable and put it at ``path``."""
        self._out.write(b"\n]}\n" if self.count else b"]}\n")
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        self._out.close()
        self._tmp.unlink(missing_ok=True)
