"""The ASGI application: TAXII 2.1 routes (spec sections cited per route) over ``cutout.service``.

Every party sees one API root with two collections of its own, ``outbox`` and ``inbox``. Paths are
answered with or without their trailing slash. Nothing here decides policy; it parses, authenticates,
negotiates media types and shapes responses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from cutout.api.errors import TAXII_MEDIA, error_body, error_response
from cutout.errors import (
    AuthError,
    BadRequest,
    CutoutError,
    InvalidContent,
    NotAcceptable,
    NotFound,
    StoreUnavailable,
    TooLarge,
    UnsupportedMediaType,
    WouldWait,
)
from cutout.extensions import DEFINITIONS
from cutout.model.timestamps import format_us, parse_us
from cutout.service import MEDIA_STIX, Exchange, Page, Party
from cutout.settings import Settings
from cutout.store.sql import PageQuery

__all__ = ["create_app"]

log = logging.getLogger("cutout.api")

_STIX_TYPES = {"application/taxii+json", "application/stix+json", "application/vnd.oasis.stix+json"}
Handler = Callable[[Request], Awaitable[Response]]
#: a route's work, on a worker thread, for an authenticated party
Work = Callable[[Request, Party], Response]
#: a POST route's work, given the whole body
BodyWork = Callable[[Request, Party, bytes], Response]
#: a body that declares at most this many bytes is read before authentication, so that authentication and the
#: work are one call on a worker thread; anything larger waits until its sender is known
EARLY_BODY = 64 * 1024
#: worker threads for the routes' blocking work (the store's calls); anyio's default limit, which this replaces
WORKERS = 40

_T = TypeVar("_T")


class Workers:
    """Where a request's blocking work (the store's calls) runs: on one of the app's worker threads, one hop
    onto it and back, or, when the request is alone, on the event loop itself.

    ``loop.run_in_executor`` on a ``ThreadPoolExecutor`` instead of Starlette's ``run_in_threadpool``,
    which goes through anyio's ``to_thread`` (a capacity limiter, run-vars and a cancel scope per call):
    ``cutout serve`` executed 6.30 M instructions per one-object POST and poll with it, 5.86 M without
    (callgrind, 100 samples of the benchmark's latency loop). The semantics are the ones the routes had:
    at most ``WORKERS`` calls run at once, later ones queue, and a call that has started runs to its end
    even if its client goes away (a submission is committed or not, never half).

    A hop costs more than the one-object submission's own work on a small VM (docs/benchmarks.md, the sixth
    round). So a request that is the only one in flight, on a store that can refuse to wait (SQLite), runs its
    work on the event loop under ``Exchange.no_wait``: nobody else is being served meanwhile, so nobody waits
    for it but the disk, and if the work would wait for a lock (another writer: the scheduler, a CLI command)
    it gives up at once with ``WouldWait``, having changed nothing, and runs again on a worker thread, where
    waiting stalls no one. Only small work goes there (``answer``): a request without a body or with one read
    early (at most ``EARLY_BODY``); a larger submission always takes a hop, so that a request arriving
    meanwhile is read at once.
    """

    def __init__(
        self, size: int = WORKERS, no_wait: Callable[[], contextlib.AbstractContextManager[None]] | None = None
    ) -> None:
        self._size = size
        self._pool: ThreadPoolExecutor | None = None
        self._no_wait = no_wait
        #: requests being answered (``request``); only the event loop's thread changes it
        self.requests = 0
        #: calls ``answer`` started on the event loop, and those of them it ran again on a thread
        self.inline = 0
        self.fell_back = 0

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Count a request as in flight for the block's length."""
        self.requests += 1
        try:
            yield
        finally:
            self.requests -= 1

    async def answer(self, fn: Callable[..., _T], *args: Any) -> _T:
        """A request's small work: on the event loop when the request is alone (see the class), else ``run``."""
        if self._no_wait is not None and self.requests == 1:
            self.inline += 1
            try:
                with self._no_wait():
                    return fn(*args)
            except WouldWait:
                self.fell_back += 1  # nothing was done: it runs again where it may wait
        return await self.run(fn, *args)

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn`` on a worker thread."""
        pool = self._pool  # only the event loop's thread starts or closes it
        if pool is None:
            pool = self._pool = ThreadPoolExecutor(max_workers=self._size, thread_name_prefix="cutout-worker")
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def close(self) -> None:
        """Let the threads end once their calls have (the lifespan's end: the server has stopped taking
        requests); a later call starts new ones."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


def _media(value: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        name, _, val = part.partition("=")
        if name.strip():
            params[name.strip().lower()] = val.strip().strip('"')
    return kind.strip().lower(), params


def _check_accept(request: Request) -> None:
    """§1.6.8: a client asks for application/taxii+json;version=2.1; the bare type means the latest."""
    accept = request.headers.get("accept")
    if not accept:
        return
    for item in accept.split(","):
        kind, params = _media(item)
        if kind in ("*/*", "application/*"):
            return
        if kind == "application/taxii+json" and params.get("version", "2.1") == "2.1":
            return
    raise NotAcceptable("this server speaks application/taxii+json;version=2.1 only")


def _check_content_type(request: Request) -> None:
    kind, params = _media(request.headers.get("content-type", ""))
    if kind not in _STIX_TYPES or params.get("version", "2.1") != "2.1":
        raise UnsupportedMediaType(
            "send the envelope as application/taxii+json;version=2.1 (or application/stix+json;version=2.1)"
        )


def _credentials(request: Request) -> tuple[str | None, str]:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return None, value
    if scheme == "basic" and value:
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise AuthError("malformed Basic credentials") from exc
        if sep and password:
            return user, password
    raise AuthError("send HTTP Basic (party name and token) or a Bearer token")


def _parse_query(request: Request, settings: Settings, versions_default: tuple[str, ...] = ("last",)) -> PageQuery:
    """TAXII filters (§3.4): added_after, limit, match[id|type|version|spec_version]; 400 on anything malformed."""
    params = request.query_params

    def listed(name: str) -> tuple[str, ...]:
        out: list[str] = []
        for raw in params.getlist(name):
            out.extend(v.strip() for v in raw.split(",") if v.strip())
        return tuple(dict.fromkeys(out))

    after = -1
    if "added_after" in params:
        after = parse_us(params["added_after"])
    limit = settings.page_size
    if "limit" in params:
        try:
            limit = int(params["limit"])
        except ValueError as exc:
            raise BadRequest("'limit' must be a positive whole number") from exc
        if limit < 1:
            raise BadRequest("'limit' must be a positive whole number")
        limit = min(limit, settings.max_page_size)
    versions: list[str] = []
    for v in listed("match[version]"):
        if v in ("first", "last", "all"):
            versions.append(v)
        else:
            versions.append(str(parse_us(v)))
    spec_versions = listed("match[spec_version]")
    for sv in spec_versions:
        if sv not in ("2.0", "2.1"):
            raise BadRequest(f"match[spec_version] must be 2.0 or 2.1, not {sv[:20]!r}")
    return PageQuery(
        after=after,
        ids=listed("match[id]"),
        types=listed("match[type]"),
        versions=tuple(versions) or versions_default,
        spec_versions=spec_versions,
        limit=limit,
    )


def _declared_size(request: Request) -> int:
    """The body's Content-Length; a body without one (or with a malformed one) counts as too large to read early."""
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else EARLY_BODY + 1


class _Body:
    """A request body, read in steps: up to a limit, and later on from where it stopped."""

    def __init__(self, request: Request) -> None:
        self._stream = request.stream()
        self._chunks: list[bytes] = []
        self.size = 0
        self.complete = False

    async def read(self, limit: int) -> None:
        """Read on until the body ends or more than ``limit`` bytes are held (then ``complete`` stays false)."""
        if self.complete or self.size > limit:
            return
        async for chunk in self._stream:
            self.size += len(chunk)
            self._chunks.append(chunk)
            if self.size > limit:
                return
        self.complete = True

    def bytes(self) -> bytes:
        return b"".join(self._chunks)


def _taxii(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=TAXII_MEDIA, headers=headers)


def _date_headers(page: Page) -> dict[str, str]:
    """§3.2: on every page; an empty page repeats the position it searched after (clients keep it as a cursor)."""
    return {
        "X-TAXII-Date-Added-First": page.first_added,
        "X-TAXII-Date-Added-Last": page.last_added,
    }


def _envelope_head(page: Page) -> bytes:
    head = b'{"more":true' if page.more else b'{"more":false'
    if page.next:
        head += b',"next":' + orjson.dumps(page.next)
    return head


def _objects_envelope(page: Page) -> bytes:
    """The envelope of a page of objects: the stored JSON of the rows as the driver hands it over (bytes or a
    memoryview), neither parsed nor copied one by one; the whole payload is copied once, by one join."""
    head = _envelope_head(page) + b',"objects":['
    bodies = [r.body for r in page.rows]
    if not bodies:
        return head + b"]}"
    # the head and tail go onto the first and last row (a copy of those two only), so one join builds the rest
    bodies[0] = b"".join((head, bodies[0]))
    bodies[-1] = b"".join((bodies[-1], b"]}"))
    return b",".join(bodies)


def parse_envelope(body: bytes) -> list[Any]:
    """The objects of a TAXII envelope or a STIX bundle; refused whole if it is anything else."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidContent("the body must be a TAXII envelope (an object with 'objects') or a STIX bundle")
    objects = doc.get("objects")
    if not isinstance(objects, list):
        raise InvalidContent("the envelope has no 'objects' list")
    if not objects:
        raise InvalidContent("the envelope holds no objects")
    return objects


def create_app(settings: Settings, exchange: Exchange | None = None, *, run_scheduler: bool = True) -> Starlette:
    """The ASGI app. Opens the exchange from ``settings`` unless one is given (and then starts its checking
    process, ``check_process``, before it serves)."""
    ex = exchange or Exchange.open(settings)
    root = f"/{settings.api_root}"
    workers = Workers(no_wait=ex.no_wait if ex.can_refuse_to_wait else None)

    def too_large() -> TooLarge:
        return TooLarge(f"the body is over the API root's max_content_length ({settings.max_content_length} bytes)")

    def guarded(work: Work, taxii: bool = True, take_body: BodyWork | None = None) -> Handler:
        """The endpoint of a route: authentication and the route's work in one call on a worker thread.

        A POST (``take_body``) whose body declares at most ``EARLY_BODY`` bytes is read first, so that it too
        costs one thread hop; a larger one is read only once its sender is authenticated (two hops). Whatever
        the body, its refusals (size, media type, JSON) come after authentication: without valid credentials
        every request hears the same 401."""

        def admit(request: Request) -> Party:
            # who is asking comes first: without valid credentials nothing else of the request is looked at
            name, token = _credentials(request)
            party = ex.authenticate(name, token)
            if taxii:
                _check_accept(request)
            return party

        def run(request: Request) -> Response:
            return work(request, admit(request))

        def admit_post(request: Request) -> Party:
            party = admit(request)
            _check_content_type(request)
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > settings.max_content_length:
                raise too_large()
            return party

        def run_post(request: Request, body: _Body) -> Response:
            assert take_body is not None
            party = admit_post(request)
            if body.size > settings.max_content_length:
                raise too_large()
            return take_body(request, party, body.bytes())

        async def endpoint(request: Request) -> Response:
            with workers.request():
                return await respond(request)

        async def respond(request: Request) -> Response:
            try:
                if take_body is None or request.method != "POST":
                    return await workers.answer(run, request)
                body = _Body(request)
                if _declared_size(request) <= EARLY_BODY:
                    await body.read(EARLY_BODY)
                    if body.complete:
                        return await workers.answer(run_post, request, body)
                party = await workers.answer(admit_post, request)
                await body.read(settings.max_content_length)
                if not body.complete:
                    raise too_large()
                return await workers.run(take_body, request, party, body.bytes())
            except StoreUnavailable as exc:
                # the driver's words stay here; the client hears a 503 with Retry-After and resends
                log.warning("%s %s: store unavailable: %s", request.method, request.url.path, _cause(exc))
                return error_response(exc)
            except CutoutError as exc:
                return error_response(exc)
            except ClientDisconnect:
                # the sender hung up before its body ended: nothing was stored, and no one is left to answer
                log.warning("%s %s: the client disconnected before its body ended", request.method, request.url.path)
                return error_response(BadRequest("the body ended early"))

        return endpoint

    # the routes' work: each runs on a worker thread, after authentication, in the same call

    # §4.1 server discovery
    def discovery(request: Request, party: Party) -> Response:
        base = str(request.base_url).rstrip("/")
        return _taxii(
            orjson.dumps(
                {
                    "title": ex.identity["name"],
                    "description": "cutout intelligence exchange (TAXII 2.1)",
                    "default": f"{base}{root}/",
                    "api_roots": [f"{base}{root}/"],
                }
            )
        )

    # §4.2 API root information
    def api_root(request: Request, party: Party) -> Response:
        return _taxii(
            orjson.dumps(
                {
                    "title": "exchange",
                    "description": "Your outbox and your inbox.",
                    "versions": [TAXII_MEDIA],
                    "max_content_length": settings.max_content_length,
                }
            )
        )

    # §4.3 status
    def status(request: Request, party: Party) -> Response:
        return _taxii(ex.status(party, request.path_params["status_id"]))

    # §5.1 collections
    def collections(request: Request, party: Party) -> Response:
        return _taxii(orjson.dumps({"collections": [c.describe() for c in ex.collections(party)]}))

    # §5.2 one collection
    def collection(request: Request, party: Party) -> Response:
        return _taxii(orjson.dumps(ex.collection(party, request.path_params["coll"]).describe()))

    def _page(request: Request, party: Party, stix_id: str | None, versions: tuple[str, ...]) -> Page:
        q = _parse_query(request, settings, versions)
        token = request.query_params.get("next")
        return ex.page(party, request.path_params["coll"], q, token, stix_id)

    # §5.4 get objects
    def objects(request: Request, party: Party) -> Response:
        page = _page(request, party, None, ("last",))
        return _taxii(_objects_envelope(page), headers=_date_headers(page))

    # §5.5 add objects
    def add_objects(request: Request, party: Party, body: bytes) -> Response:
        result = ex.submit(party, request.path_params["coll"], parse_envelope(body))
        return _taxii(orjson.dumps(result), status=202)

    # §5.6 get an object / §5.7 delete an object
    def one_object(request: Request, party: Party) -> Response:
        if request.method == "DELETE":
            q = _parse_query(request, settings, ("all",))
            ex.delete_object(party, request.path_params["coll"], request.path_params["obj"], q)
            return Response(status_code=200, media_type=TAXII_MEDIA)
        page = _page(request, party, request.path_params["obj"], ("last",))
        if not page.exists:
            raise NotFound("no such object")
        return _taxii(_objects_envelope(page), headers=_date_headers(page))

    # §5.8 object versions
    def versions(request: Request, party: Party) -> Response:
        page = _page(request, party, request.path_params["obj"], ("all",))
        if not page.exists:
            raise NotFound("no such object")
        listing = [r.version or format_us(r.date_added) for r in page.rows]
        body = _envelope_head(page) + b',"versions":' + orjson.dumps(listing) + b"}"
        return _taxii(body, headers=_date_headers(page))

    # §5.3 manifest
    def manifest(request: Request, party: Party) -> Response:
        page = _page(request, party, None, ("last",))
        entries = [
            {
                "id": r.stix_id,
                "date_added": format_us(r.date_added),
                "version": r.version or format_us(r.date_added),
                "media_type": "application/stix+json;version=2.1",
            }
            for r in page.rows
        ]
        body = _envelope_head(page) + b',"objects":' + orjson.dumps(entries) + b"}"
        return _taxii(body, headers=_date_headers(page))

    # cutout's own: receipts from the audit log (docs/audit.md); JSON, outside the TAXII media types
    def receipt(request: Request, party: Party) -> Response:
        return Response(ex.receipt_for(party, request.path_params["ref"]), media_type="application/json")

    def receipt_key(request: Request, party: Party) -> Response:
        return Response(orjson.dumps({"verifier_key": ex.audit_key()}), media_type="application/json")

    # cutout's own: the extension definitions of grades, outcomes and requests (docs/extensions.md), as STIX
    def extensions(request: Request, party: Party) -> Response:
        body = orjson.dumps({"more": False, "objects": list(DEFINITIONS)})
        return Response(body, media_type=MEDIA_STIX)

    # readiness for load balancers: no credentials, says nothing but whether this node reaches its store
    async def health(request: Request) -> Response:
        try:
            with workers.request():
                await workers.answer(ex.ping)
        except StoreUnavailable as exc:
            log.warning("health: store unavailable: %s", _cause(exc))
            return Response(b'{"status":"unavailable"}', status_code=503, media_type="application/json")
        return Response(b'{"status":"ok"}', media_type="application/json")

    def both(
        path: str, work: Work, methods: list[str], taxii: bool = True, take_body: BodyWork | None = None
    ) -> list[Route]:
        endpoint = guarded(work, taxii, take_body)
        return [Route(path + "/", endpoint, methods=methods), Route(path, endpoint, methods=methods)]

    coll = root + "/collections/{coll}"
    # Starlette tries the routes in order, one regex each: the ones every poll and submission takes first
    routes = [
        *both(coll + "/objects", objects, ["GET", "POST"], take_body=add_objects),
        Route("/health", health, methods=["GET"]),
        *both("/taxii2", discovery, ["GET"]),
        *both(root, api_root, ["GET"]),
        *both(root + "/status/{status_id}", status, ["GET"]),
        *both(root + "/collections", collections, ["GET"]),
        *both(coll, collection, ["GET"]),
        *both(coll + "/objects/{obj}", one_object, ["GET", "DELETE"]),
        *both(coll + "/objects/{obj}/versions", versions, ["GET"]),
        *both(coll + "/manifest", manifest, ["GET"]),
        *both(root + "/receipts/key", receipt_key, ["GET"], taxii=False),
        *both(root + "/extensions", extensions, ["GET"], taxii=False),
        *both(root + "/receipts/{ref}", receipt, ["GET"], taxii=False),
    ]

    def knock(request: Request) -> None:
        ex.authenticate(*_credentials(request))

    async def http_error(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        if code in (404, 405):
            # no route, or not this method: said only to a party; without valid credentials the answer is
            # the 401 every route gives, so that the exchange's paths cannot be mapped from outside
            try:
                await workers.run(knock, request)
            except StoreUnavailable as unavailable:
                log.warning("%s %s: store unavailable: %s", request.method, request.url.path, _cause(unavailable))
                return error_response(unavailable)
            except CutoutError as refused:
                return error_response(refused)
        title = {404: "Not found", 405: "Method not allowed"}.get(code, "Error")
        return _taxii(error_body(code, title, title.lower(), title.lower().replace(" ", "-")), status=code)

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _taxii(
            error_body(500, "Internal error", "the exchange could not complete the request", "internal"),
            status=500,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await workers.run(ex.warm_up)
        if exchange is None:
            # before the first request: a server that answers has its child up. An exchange handed in is the
            # caller's to start it for (``Exchange.start_checks``): tests, and apps that embed this one
            await workers.run(ex.start_checks)
        task = asyncio.create_task(_scheduler(ex, workers, settings.scheduler_interval)) if run_scheduler else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            workers.close()
            if exchange is None:
                ex.close()

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.exchange = ex
    app.state.workers = workers
    return app


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__
    return " ".join(str(getattr(cause, "orig", None) or cause or exc).split())[:300]


async def _scheduler(ex: Exchange, workers: Workers, interval: float) -> None:
    """Release held items when their time comes; sign audit checkpoints and apply retention when due.

    Every node runs it; the store makes the work safe to race (one write transaction at a time, and each due
    item is taken and dropped in the transaction that releases it), so whichever nodes are alive do it, and a
    node that dies mid-run leaves its items due for the next. While the database is unreachable it says so in
    one line per run and tries again."""
    last_retention = 0.0
    while True:
        await asyncio.sleep(interval)
        try:
            while await workers.run(ex.release_due) >= 1000:
                pass
            await workers.run(ex.checkpoint_if_due)
            now = asyncio.get_running_loop().time()
            if now - last_retention > 3600:
                await workers.run(ex.forget_old)
                last_retention = now
        except StoreUnavailable as exc:
            log.warning("scheduled run: store unavailable (%s); will try again", _cause(exc))
        except Exception:
            log.exception("scheduled run failed; will try again")
