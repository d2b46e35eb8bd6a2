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

from cutout.errors import (
    AuthError,
    BadRequest,
    CutoutError,
    InvalidContent,
    NotFound,
    Problem,
    TooLarge,
    Unreachable,
)

__all__ = ["BundleFile", "Client", "Envelope", "Received", "envelopes", "references"]

TAXII = "application/taxii+json;version=2.1"


@dataclass(frozen=True)
class Received:
    objects: list[dict[str, Any]]
    last_added: str | None


@dataclass(frozen=True)
class Envelope:
    """One POST of ``cutout send``: the indexes in the sender's file of the objects it holds, and its body."""

    indexes: tuple[int, ...]
    body: bytes


_HEAD, _TAIL = b'{"objects":[', b"]}"


def references(value: Any) -> set[str]:
    """Every id ``value`` (a STIX object) names in a ``*_ref`` or ``*_refs`` property, at any depth (its
    ``granular_markings``, ``extensions`` and embedded relationships included)."""
    found: set[str] = set()
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            for key, sub in item.items():
                if isinstance(key, str) and key.endswith("_ref") and isinstance(sub, str):
                    found.add(sub)
                elif isinstance(key, str) and key.endswith("_refs") and isinstance(sub, list):
                    found.update(ref for ref in sub if isinstance(ref, str))
                elif isinstance(sub, (dict, list)):
                    todo.append(sub)
        elif isinstance(item, list):
            todo.extend(sub for sub in item if isinstance(sub, (dict, list)))
    return found


def _referenced_first(objects: Sequence[Any]) -> list[list[int]]:
    """The objects' indexes in groups, each object's group after the groups of every object it refers to (by
    id: each version of it) in ``objects``. A group is a cycle of references (usually one object alone),
    kept together; objects that do not depend on one another keep the file's order. Tarjan's algorithm,
    without recursion: a file of 100,000 objects may be one chain."""
    where: dict[str, list[int]] = {}
    for i, obj in enumerate(objects):
        oid = obj.get("id") if isinstance(obj, dict) else None
        if isinstance(oid, str):
            where.setdefault(oid, []).append(i)
    edges = [
        sorted({j for ref in references(obj) for j in where.get(ref, ()) if j != i}) for i, obj in enumerate(objects)
    ]
    order = [-1] * len(objects)  # when each was reached
    low = [0] * len(objects)
    open_ = [False] * len(objects)
    stack: list[int] = []
    groups: list[list[int]] = []
    reached = 0
    for root in range(len(objects)):
        if order[root] >= 0:
            continue
        order[root] = low[root] = reached
        reached += 1
        stack.append(root)
        open_[root] = True
        work = [(root, 0)]
        while work:
            v, k = work[-1]
            if k < len(edges[v]):
                work[-1] = (v, k + 1)
                w = edges[v][k]
                if order[w] < 0:
                    order[w] = low[w] = reached
                    reached += 1
                    stack.append(w)
                    open_[w] = True
                    work.append((w, 0))
                elif open_[w]:
                    low[v] = min(low[v], order[w])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == order[v]:
                group: list[int] = []
                while True:
                    w = stack.pop()
                    open_[w] = False
                    group.append(w)
                    if w == v:
                        break
                groups.append(sorted(group))
    return groups


def envelopes(objects: Sequence[Any], max_bytes: int | None, per: int | None = None) -> list[Envelope]:
    """``objects`` as the TAXII envelopes ``cutout send`` posts: one, in the file's order, where they fit in
    ``max_bytes`` (the exchange's ``max_content_length``) and ``per`` objects; otherwise as few as fit, each
    object after everything of the file it refers to (in an earlier envelope or the same one), so that its
    references resolve when it is released: an object's copy names only what was released before it or with
    it. A cycle of references is kept in one envelope where it fits. TooLarge, before anything is sent, for an
    object that does not fit in an envelope alone."""
    parts = [orjson.dumps(obj) for obj in objects]
    room = (max_bytes if max_bytes is not None else 1 << 62) - len(_HEAD) - len(_TAIL)
    most = per if per is not None else len(parts) or 1
    for i, part in enumerate(parts):
        if len(part) > room:
            oid = objects[i].get("id") if isinstance(objects[i], dict) else None
            raise TooLarge(
                f"object {i} ({oid}) is {len(part):,} bytes: with its envelope it is over the exchange's"
                f" max_content_length ({max_bytes:,} bytes) even alone"
            )
    if len(parts) <= most and sum(map(len, parts)) + len(parts) - 1 <= room:
        return [Envelope(tuple(range(len(parts))), _HEAD + b",".join(parts) + _TAIL)]
    out: list[Envelope] = []
    held: list[int] = []
    size = 0

    def close() -> None:
        out.append(Envelope(tuple(held), _HEAD + b",".join(parts[i] for i in held) + _TAIL))
        held.clear()

    for group in _referenced_first(objects):
        together = sum(len(parts[i]) for i in group) + len(group) - 1
        fits_alone = len(group) <= most and together <= room
        if held and fits_alone and (len(held) + len(group) > most or size + 1 + together > room):
            close()
        for i in group:
            if held and (len(held) >= most or size + 1 + len(parts[i]) > room):
                close()
            size = (size + 1 if held else 0) + len(parts[i])
            held.append(i)
    if held:
        close()
    return out


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

    def max_content_length(self) -> int | None:
        """The largest body the exchange takes (its API root's ``max_content_length``), None if it says none."""
        size = self._doc(self._get(self.api_root())).get("max_content_length")
        return size if type(size) is int and size > 0 else None

    def send(self, objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Post objects to this party's outbox as one envelope; returns the TAXII status."""
        return self._post(orjson.dumps({"objects": list(objects)}))

    def _post(self, body: bytes) -> dict[str, Any]:
        resp = self._call("POST", self.collection("outbox") + "objects/", content=body, headers={"Content-Type": TAXII})
        result: dict[str, Any] = self._doc(self._check(resp))
        return result

    def send_envelopes(self, envelopes: Sequence[Envelope]) -> dict[str, Any]:
        """Post ``envelopes`` (from :func:`envelopes`) one after another, each once the one before was
        acknowledged. One envelope: its TAXII status. Several: their counts added up, their lists joined, and
        ``statuses`` the status ids. If one is refused or unanswered, the error says how many before it were
        stored, and a refusal's problems carry the objects' indexes in the file, not in the envelope."""
        statuses: list[dict[str, Any]] = []
        for number, envelope in enumerate(envelopes, 1):
            try:
                statuses.append(self._post(envelope.body))
            except CutoutError as exc:
                if len(envelopes) == 1:
                    raise
                raise _in_envelope(exc, number, envelopes) from exc
        if len(statuses) == 1:
            return statuses[0]
        combined: dict[str, Any] = {
            "envelopes": len(statuses),
            "statuses": [status.get("id") for status in statuses],
            "status": "complete" if all(st.get("status") == "complete" for st in statuses) else "pending",
        }
        for key in ("total_count", "success_count", "failure_count", "pending_count"):
            combined[key] = sum(int(status.get(key) or 0) for status in statuses)
        for key in ("successes", "failures", "pendings"):
            joined = [item for status in statuses for item in status.get(key) or ()]
            if joined:
                combined[key] = joined
        return combined

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


def _in_envelope(exc: CutoutError, number: int, envelopes: Sequence[Envelope]) -> CutoutError:
    """``exc``, raised by envelope ``number`` (from 1) of several, said of the file: what was stored before it,
    and a refusal's problems by their objects' indexes in the file."""
    before = sum(len(envelope.indexes) for envelope in envelopes[: number - 1])
    held = len(envelopes[number - 1].indexes)
    message = f"envelope {number} of {len(envelopes)} ({held:,} objects"
    if number > 1:
        message += f"; the {number - 1} before it, {before:,} objects, were stored"
    message += f"): {exc.message}"
    if isinstance(exc, InvalidContent):
        indexes = envelopes[number - 1].indexes
        problems = tuple(
            Problem(indexes[p.index] if 0 <= p.index < len(indexes) else p.index, p.object_id, p.message)
            for p in exc.problems
        )
        return InvalidContent(message, problems)
    return type(exc)(message)


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
