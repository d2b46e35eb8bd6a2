"""The store: SQLAlchemy Core over SQLite (WAL, one writer, ``BEGIN IMMEDIATE``) or PostgreSQL.

All SQL lives here. The service opens a transaction (``store.write()`` or ``store.read()``) and calls the
``Tx`` methods; a write transaction is committed before anything is acknowledged to a client.

Several nodes may share one PostgreSQL. Write transactions take one transaction-scoped advisory lock first,
PostgreSQL's counterpart of SQLite's ``BEGIN IMMEDIATE``: one writer at a time, readers in parallel. Every
write appends to the audit log, whose gap-free sequence and Merkle range serialise writers anyway; taking the
lock first instead of midway means no two writers ever hold locks the other wants (no deadlock between a
submission and a release writing to the same inboxes), a release run or pool decision is never made on rows
another node is changing, and a ``date_added`` becomes visible only after every smaller one of its
collection is committed. A database that cannot be reached, or a lock not granted in time, is
``StoreUnavailable``: the request may or may not have been committed (a connection can drop during COMMIT),
and resending it is safe, since a duplicate (same id and version) is stored once.

The methods on the paths every submission, release and page takes speak to the driver directly (its
cursor, SQL text written once, ``executemany`` with tuples): SQLAlchemy's statement building, compilation
cache look-ups and per-row parameter processing cost more than SQLite's own work there. On PostgreSQL a
batch of rows goes in by one binary ``COPY`` (``Tx._put``) and a long list of values is one array
parameter (``_one_of``), so that a statement's text is the same whatever the batch. Rows come back as
named tuples with the columns the query named (``SELECT *`` where a table may grow columns), booleans as
``bool`` on both databases.

On SQLite a call may be made inside ``Store.no_wait``: it then never waits for a lock (or for a pooled
connection), and says so with ``WouldWait`` before it has changed anything; the API uses it to run a request
that is alone on the event loop, without a hop to a worker thread (``cutout.api.app``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Row
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry

from cutout.audit.merkle import TILE_LEVEL, CompactRange, Node, leaf_hash, root, tiled_inclusion_proof
from cutout.errors import ConfigError, Conflict, StoreUnavailable, WouldWait
from cutout.settings import SQLITE_PAGE_SIZE, Settings, is_page_size
from cutout.store import schema as s

__all__ = ["NewObject", "PageQuery", "Store", "Tx", "id_hash"]

log = logging.getLogger("cutout.store")

#: what SQLAlchemy's pool logs, with a traceback, when giving a connection back fails (its rollback)
_RESET_FAILED = "Exception during reset or similar"


class _LostOnReturn(logging.Filter):
    """The pool's error for a connection the database dropped while it was checked out and whose work was
    done (PostgreSQL restarting or failing over at that moment): the rollback that gives it back fails, and the
    pool replaces it. That needs no traceback in the node's log, which has one line per such request (see
    operations.md): it becomes one warning line. Any other failure there keeps its traceback."""

    def __init__(self, unreachable: tuple[type[Exception], ...]) -> None:
        super().__init__()
        self.unreachable = unreachable

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.msg == _RESET_FAILED and isinstance(exc, self.unreachable):
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
            record.msg = "a pooled connection was lost while it was given back (it is replaced): %s"
            record.args = (" ".join(str(exc).split())[:300],)
            record.exc_info = record.exc_text = None
        return True


#: PostgreSQL: the tables whose lookups the planner gets wrong without statistics, and how many objects a
#: process stores before it makes sure they have some (``Store._ensure_statistics``)
PLANNED_TABLES = ("objects", "copies", "releases", "statuses", "audit")
STATISTICS_AFTER = 1000
#: SQLite: how many rows (objects and copies) the small indexes of rows added lately hold before the store
#: merges them into the large ones (``Store._merge_fresh``; ``schema.objects.fresh``). A merge rewrites those
#: rows (their pages are the table's last) and changes, per large index, about as many leaves as it has: more
#: rows per merge share those leaves better, and make the small indexes larger and the merge's commit longer
MERGE_AFTER = 20_000
#: SQLite: rows go to the small indexes only once the objects table holds this many rows. Below it a commit's
#: entries dirty most of the large indexes' few leaves anyway, and a merge would only rewrite the rows (on an
#: exchange of 10,000 objects, ingest through HTTP lost 9-16% with every row added to the small level)
FRESH_FROM = 5 * MERGE_AFTER
#: at most how many (collection, type, spec version) the store remembers as committed to ``collection_types``
#: (``Store._known_types``): a sender of ever new custom types cannot grow a node's memory without bound; past
#: it, a write inserts the row of each type it brings again (``ON CONFLICT DO NOTHING``), as after a restart
KNOWN_TYPES = 65_536
#: SQLite: the pool's size, and at most how many connections the store keeps checked out between calls
KEPT_CONNECTIONS = 8
#: how many audit rows ``Tx.audit_log`` reads at a time. An acceptance's event names every object of its
#: envelope (about 80 KB for 1,000 objects), so a whole log read at once grows with the exchange: verifying an
#: exchange of 1,000,000 objects held 378 MB of them (docs/benchmarks.md, the twenty-third round)
AUDIT_CHUNK = 100


@functools.lru_cache(maxsize=1 << 14)
def id_hash(stix_id: str) -> int:
    """The key objects are looked up by (with their id, since two ids may share it): a signed 64-bit BLAKE2b
    of the STIX id. Part of the stored data: changing it needs a migration that computes it again.

    Cached: a release run asks for the same ids' hashes again and again (each original once per reader it
    goes to, each copy's id when it is stored and when its bookkeeping is), and BLAKE2b's set-up cost more
    than the hash (6% of a fan-out's CPU); 16,384 entries of ~120 bytes each."""
    return int.from_bytes(hashlib.blake2b(stix_id.encode(), digest_size=8).digest(), "big", signed=True)


def id_hash_once(stix_id: str) -> int:
    """``id_hash`` outside its cache, for an id whose hash the caller works out once and passes along (a
    released copy's: ``NewObject.id_hash`` and ``out_hash``). A fan-out's copies have a new id each, a hundred
    readers' worth per envelope: in the cache they would push out the originals' ids, which every reader's
    bookkeeping looks up again."""
    return id_hash.__wrapped__(stix_id)


class Coll(NamedTuple):
    """A collection, as the store's methods take it."""

    id: int


class NewObject(NamedTuple):
    """One object to add to a collection (a named tuple: one is made per stored object and per copy, and a
    frozen dataclass took twice as long to build)."""

    stix_id: str
    type: str
    version: str
    version_us: int
    spec_version: str
    body: bytes
    origin: int | None = None
    #: ``id_hash(stix_id)`` where the caller has it already (the exchange's rows come with it, made before the
    #: write lock; a copy's bookkeeping takes the same one as ``out_hash``); worked out here when None
    id_hash: int | None = None


@dataclass(frozen=True)
class PageQuery:
    """The filters of a TAXII objects / manifest / versions request, already parsed."""

    after: int = -1  # date_added strictly after this (µs); -1 for no bound
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: tuple[str, ...] = ("last",)  # "last", "first", "all", or µs timestamps as strings
    spec_versions: tuple[str, ...] = ()
    limit: int = 1000


#: the key of the advisory lock every write transaction takes on PostgreSQL ("cutout" in ASCII); advisory
#: locks are per database, so brokers in other databases of the same server do not contend
WRITE_LOCK = 0x6375746F7574


def _pg_options(lock_timeout_ms: int) -> str:
    """On PostgreSQL: give up waiting for a lock after ``lock_timeout`` (the client hears store-unavailable and
    resends), and end a session left idle inside a transaction (a node cut off mid-request) so its locks are
    freed."""
    idle_ms = max(60_000, 2 * lock_timeout_ms)
    return f"-c lock_timeout={lock_timeout_ms}ms -c idle_in_transaction_session_timeout={idle_ms}ms"


#: SQLite copies the WAL back into the database (a checkpoint) inside the commit that takes it past this many
#: bytes: its default of 1,000 pages, at its default page size of 4 KiB. Counted in pages, the threshold grew
#: with the page, to 16 MB at 16 KiB, and each of those rarer checkpoints stalled its commit about twice as
#: long: a one-object submission on a 100,000-object exchange took 9.3-9.7 ms at p99, 4.4-5.0 ms with this
#: (docs/benchmarks.md, the eighth round)
CHECKPOINT_BYTES = 4 << 20


def _sqlite_pragmas(synchronous: str, busy_timeout_ms: int, page_size: int) -> Any:
    def on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        # the page size of a database this creates (before WAL, which fixes it); SQLite ignores it for one
        # that exists: see Store.repack
        cur.execute(f"PRAGMA page_size={int(page_size)}")
        cur.execute("PRAGMA journal_mode=WAL")
        # checkpoint when the WAL holds about CHECKPOINT_BYTES, whatever the file's page size
        (actual,) = cur.execute("PRAGMA page_size").fetchone()
        cur.execute(f"PRAGMA wal_autocheckpoint={max(1, CHECKPOINT_BYTES // int(actual))}")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cur.close()

    return on_connect


def _sqlite_engine(url: str, synchronous: str, page_size: int, wait_ms: int, size: int, overflow: int) -> Engine:
    """An engine on the SQLite file: connections that wait ``wait_ms`` for a lock (0: not at all), a pool of
    ``size`` (+ ``overflow``) that, without a wait, hands out a connection at once or not at all."""
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": wait_ms / 1000},
        pool_size=size,
        max_overflow=overflow,
        pool_timeout=30 if wait_ms else 0,
    )
    event.listen(engine, "connect", _sqlite_pragmas(synchronous, wait_ms, page_size))

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # on the driver's connection, not through exec_driver_sql (a third of what opening a transaction
        # cost); a lock not granted is the driver's error, which Store._reachable knows
        mode = "IMMEDIATE" if conn.get_execution_options().get("cutout_write") else "DEFERRED"
        conn.connection.dbapi_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]

    return engine


#: what a client hears when the database is out of reach or a lock (or this process's write turn) was not had
_UNAVAILABLE = "the exchange's database is unavailable; try again (resending is safe)"


class Store:
    """A handle on the database; cheap to share between threads."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "FULL",
        lock_timeout: float = 30.0,
        sqlite_page_size: int = SQLITE_PAGE_SIZE,
    ) -> None:
        """``lock_timeout``: how long, in seconds, a transaction waits for a lock (SQLite's write lock, a
        PostgreSQL row or advisory lock) before it gives up with StoreUnavailable. ``sqlite_page_size``: the
        page size of a SQLite database this store creates (one that exists keeps its own)."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.lock_timeout = lock_timeout
        #: SQLite: this process's writers take turns here before they ask SQLite for its write lock (see
        #: ``_write_turn``); PostgreSQL's advisory lock queues its waiters itself
        self._writer = threading.Lock() if self.is_sqlite else None
        #: PostgreSQL: objects this process has stored while it has not yet checked the planner's statistics;
        #: None once it has (see ``_ensure_statistics``)
        self._unplanned: int | None = None if self.is_sqlite else 0
        self._statistics = threading.Lock()
        #: SQLite: rows in the small indexes (``MERGE_AFTER``), as this process counts them; None until it has
        #: counted those already there, at its first write
        self._fresh: int | None = None
        #: SQLite: rows in the objects table (its largest key), as this process counts them (``FRESH_FROM``);
        #: None until its first write transaction reads it
        self._rows: int | None = None
        #: SQLite: the thread merging them for a call that may not wait (``_merge_fresh``), while it runs
        self._merger: threading.Thread | None = None
        #: SQLite: per engine, connections kept checked out between calls (``_connection``)
        self._kept: dict[Engine, list[Connection]] = {}
        #: (party id, kind) -> the collection's id: a collection, once committed, never changes or goes away
        #: (only its ``last_added`` moves, which ``Tx.add_objects`` reads afresh), so its id is read once
        self._collection_ids: dict[tuple[int, str], int] = {}
        #: (collection id, type, spec version) committed to ``collection_types``: a row there, once committed,
        #: never goes away or changes, so a write need not insert it again (``Tx.add_objects``)
        self._known_types: set[tuple[int, str, str]] = set()
        wait_ms = max(1, round(lock_timeout * 1000))
        #: per thread: whether its calls may not wait (``no_wait``)
        self._calls = threading.local()
        #: the connection ``no_wait`` calls use: it gives up on a lock at once, and there is one (the event loop's
        #: thread makes one call at a time; a call that would need a second gets WouldWait)
        self._no_wait_engine: Engine | None = None
        try:
            if self.is_sqlite:
                sync = sqlite_synchronous.upper()
                self.engine: Engine = _sqlite_engine(url, sync, sqlite_page_size, wait_ms, KEPT_CONNECTIONS, 8)
                self._no_wait_engine = _sqlite_engine(url, sync, sqlite_page_size, 0, 1, 0)
                self._kept = {self.engine: [], self._no_wait_engine: []}
            else:
                # pre-ping: after PostgreSQL restarts, a pooled connection is found dead on checkout and
                # replaced, instead of failing the request that drew it
                self.engine = create_engine(
                    url.replace("postgresql://", "postgresql+psycopg://", 1),
                    pool_size=8,
                    pool_pre_ping=True,
                    connect_args={"connect_timeout": 10, "options": _pg_options(wait_ms)},
                )
        except Exception as exc:  # driver missing, malformed URL
            raise ConfigError(f"cannot open database {url!r}: {exc}") from exc
        dbapi = self.engine.dialect.loaded_dbapi
        #: what says the database is out of reach or a lock was not granted: SQLAlchemy's wrappers, and the
        #: driver's own errors, which the statements Tx runs on the driver's cursor raise unwrapped
        self._unreachable: tuple[type[Exception], ...] = (
            OperationalError,
            InterfaceError,
            dbapi.OperationalError,
            dbapi.InterfaceError,
        )
        pool_log = getattr(self.engine.pool, "logger", None)
        if (
            not self.is_sqlite
            and isinstance(pool_log, logging.Logger)
            and not any(isinstance(f, _LostOnReturn) for f in pool_log.filters)  # one per logger, not per store
        ):
            pool_log.addFilter(_LostOnReturn(self._unreachable))

    @classmethod
    def for_settings(cls, settings: Settings) -> Store:
        """The store the settings name, with their durability, lock timeout and page size."""
        return cls(
            settings.db_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            lock_timeout=settings.lock_timeout,
            sqlite_page_size=settings.sqlite_page_size,
        )

    def is_initialised(self) -> bool:
        """Whether the database holds a broker; ConfigError if it cannot be reached at all."""
        try:
            if not inspect(self.engine).has_table("meta"):
                return False
            with self.read() as tx:
                return tx.get_meta("schema_version") is not None
        except OperationalError as exc:
            raise ConfigError(f"cannot reach the database: {exc.orig}") from exc
        except StoreUnavailable as exc:
            raise ConfigError(f"cannot reach the database: {exc.__cause__}") from exc

    @contextmanager
    def no_wait(self) -> Iterator[None]:
        """The calls this thread makes in the block never wait (SQLite only: a file this process opens itself,
        whose calls wait on nothing but the disk and, where this lets them give up instead, a lock; PostgreSQL's
        every statement is a network round trip).

        Its calls use a connection of their own that gives up on a lock at once: a transaction that finds the
        write lock taken, a read that would wait, or a second connection asked for while that one is in use
        raises ``WouldWait`` at once instead. That holds until a write transaction of the block
        commits: from then on the block's call has changed something, and its later transactions wait as
        usual. So a ``WouldWait`` always means that the call changed nothing durable, and the caller may run
        the same call again where waiting is harmless (a worker thread)."""
        if not self.is_sqlite:
            raise AssertionError("no_wait is for a store this process opens itself (SQLite)")
        calls = self._calls
        calls.no_wait = True
        try:
            yield
        finally:
            calls.no_wait = False

    def may_wait(self) -> bool:
        """Whether this thread's calls may wait (False inside :meth:`no_wait`)."""
        return not getattr(self._calls, "no_wait", False)

    def _engine(self) -> Engine:
        """The engine this thread's calls use now."""
        if self._no_wait_engine is not None and not self.may_wait():
            return self._no_wait_engine
        return self.engine

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        """On SQLite, this process's turn to write: its writers wait for each other here, and the next one is
        woken the moment the last one's transaction ends.

        SQLite gives a waiting writer no turn: its busy handler sleeps (1, 2, 5 ... up to 100 ms) and tries
        again, so a writer behind a long transaction (a large envelope) found the lock free only when its
        sleep happened to end in the gap before the next one, and the database stood idle meanwhile. Writers
        in other processes (the CLI, a second ``cutout serve`` on the same folder) still meet SQLite's lock
        and its busy handler, after this turn. A call that may not wait (``no_wait``) gets ``WouldWait`` if the
        turn is taken; one that may waits up to ``lock_timeout`` and then gets ``StoreUnavailable``."""
        writer = self._writer
        if writer is None:
            yield
            return
        if self.may_wait():
            if not writer.acquire(timeout=self.lock_timeout):
                raise StoreUnavailable(_UNAVAILABLE)
        elif not writer.acquire(blocking=False):
            raise WouldWait(_UNAVAILABLE)
        try:
            yield
        finally:
            writer.release()

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A connection for one call of this thread, outside any transaction.

        On SQLite a connection is kept checked out between calls, up to the pool's size, and the next call
        takes it back: a checkout and a check-in (with the pool's rollback) cost more than the transaction of
        a small call (a write transaction with nothing in it: 29 against 7 µs; a read: 22 against 5 µs). It
        is kept only after a call that raised nothing, and only if it is valid and outside any transaction;
        otherwise it is closed, and goes back to the pool as before, which rolls back what it held. A call
        that finds none kept checks one out as before (and, under ``no_wait``, finds the one connection in use
        as before). On PostgreSQL every call checks one out, and the pool's pre-ping checks it first."""
        engine = self._engine()
        kept = self._kept.get(engine)
        if kept is None:
            with engine.connect() as conn:
                yield conn
            return
        try:
            conn = kept.pop()
        except IndexError:
            conn = engine.connect()
        ok = False
        try:
            yield conn
            ok = True
        finally:
            if (
                ok
                and len(kept) < KEPT_CONNECTIONS
                and not conn.invalidated
                and not conn.in_transaction()
                and not conn.connection.dbapi_connection.in_transaction  # type: ignore[union-attr]
            ):
                kept.append(conn)
            else:
                conn.close()

    def _close_kept(self) -> None:
        for kept in self._kept.values():
            while kept:
                kept.pop().close()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction, committed on leaving the block; one at a time per database."""
        may_wait = self.may_wait()
        with self._write_turn(), self._reachable(), self._connection() as conn:
            conn.execution_options(cutout_write=True)
            with conn.begin():
                if not self.is_sqlite:
                    conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK)))
                tx = Tx(conn, self.is_sqlite, self._collection_ids, self._known_types)
                if self.is_sqlite:
                    if self._rows is None:
                        self._rows = int(tx._scalar("SELECT coalesce(max(pk), 0) FROM objects"))
                    tx.adds_fresh = self._rows >= FRESH_FROM
                yield tx
                tx.flush()  # before the commit; not reached when the block raised (then all is rolled back)
        self._calls.no_wait = False  # committed: whatever the call does next, it must not be done twice
        # only now: a collection this transaction created would not exist had it been rolled back, and its id
        # could then be given to another (SQLite reuses the largest rowid)
        self._collection_ids.update(tx.collection_ids)
        if tx.types_added and len(self._known_types) < KNOWN_TYPES:  # as the collections: not if rolled back
            self._known_types.update(tx.types_added)
        if self._unplanned is not None and tx.objects_added:
            self._unplanned += tx.objects_added
            if self._unplanned >= STATISTICS_AFTER:
                self._ensure_statistics()
        if self._rows is not None:
            self._rows += tx.objects_added
        if self.is_sqlite and tx.fresh_added:
            if self._fresh is None:
                with self.read() as counting:
                    self._fresh = counting.fresh_rows()
            else:
                self._fresh += tx.fresh_added
            if self._fresh >= MERGE_AFTER:
                if may_wait:
                    self._merge_fresh()
                elif self._merger is None:  # a call on the event loop (``no_wait``) must not wait for it
                    self._merger = threading.Thread(target=self._merge_fresh, name="cutout-merge", daemon=True)
                    self._merger.start()

    def _merge_fresh(self) -> None:
        """SQLite: the rows added lately moved from the small indexes into the large ones, in one write
        transaction of their own after the commit that took them past ``MERGE_AFTER``. The call that made that
        commit waits for it, unless it may not wait (``no_wait``: a request on the event loop, which a merge
        would stall), and then a thread of its own does it. An optimisation of a committed call: a failure is
        logged, and the rows stay in the small indexes (found by id all the same) until the next try."""
        try:
            with self.write() as tx:
                tx.merge_fresh()
            self._fresh = 0
        except Exception as exc:
            reason = " ".join(str(exc).split())[:300]
            log.warning("could not merge the rows added lately into the large indexes: %s", reason)
        finally:
            if self._merger is threading.current_thread():
                self._merger = None

    def wait_for_merge(self) -> None:
        """Until a merge started on a thread of its own (``_merge_fresh``) has ended."""
        merger = self._merger
        if merger is not None:
            merger.join()

    def _ensure_statistics(self) -> None:
        """PostgreSQL: ANALYZE those of ``PLANNED_TABLES`` that have no statistics yet; once per process.

        Without statistics the planner takes any equality for 0.5% of a table. It then finds a batch's ids
        (``coll = ? AND id_hash IN (...)``) by reading the whole collection through its ``coll`` index and
        filtering, which grows with the collection: 3 ms per lookup of 100 ids at 4,000 objects, against 0.08
        ms once the table has statistics, and ingest at 100 objects per envelope ran at half its speed.
        Autovacuum gathers them, but only on its next round (``autovacuum_naptime``, a minute by default), so
        a new exchange, or one whose tables were analysed while empty, ran its first minutes that way. Called
        after a commit, when this process has stored ``STATISTICS_AFTER`` objects: it checks once, and
        analyses the tables without statistics (an empty one stays without). That takes a few milliseconds
        at that size (ANALYZE reads a bounded sample of a larger table) and blocks no reader or writer; the
        call whose commit crossed the mark waits for it. It is an optimisation of a committed call, so a
        failure is logged, not raised."""
        if not self._statistics.acquire(blocking=False):
            return  # another thread is at it
        try:
            if self._unplanned is None:
                return
            self._unplanned = None
            with self.engine.connect() as conn:
                have = {
                    r[0]
                    for r in conn.exec_driver_sql(
                        "SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = current_schema()"
                        " AND tablename = ANY(%(tables)s)",
                        {"tables": list(PLANNED_TABLES)},
                    )
                }
                missing = [name for name in PLANNED_TABLES if name not in have]
                if missing:
                    conn.exec_driver_sql(f"ANALYZE {', '.join(missing)}")
                    conn.commit()
                    log.info("gathered the planner's statistics of %s", ", ".join(missing))
        except Exception as exc:
            log.warning("could not gather the planner's statistics: %s", " ".join(str(exc).split())[:300])
        finally:
            self._statistics.release()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read. On SQLite one transaction: its statements see one snapshot. On PostgreSQL each statement sees
        what is committed when it starts, as it did inside a transaction at PostgreSQL's (and the store's)
        read committed level, so the statements run in autocommit: no ``BEGIN`` and ``COMMIT`` around them, two
        round trips of a poll's four (with the pool's ping and the statement itself). A caller that reads
        twice orders its reads so that what is committed between them does no harm (``verify_audit``)."""
        with self._reachable(), self._connection() as conn:
            if self.is_sqlite:
                conn.execution_options(cutout_write=False)  # a kept connection may have served a write last
                with conn.begin():
                    tx = Tx(conn, self.is_sqlite, self._collection_ids)
                    yield tx
            else:
                # the pool gives the connection back to read committed when it is returned
                conn.execution_options(isolation_level="AUTOCOMMIT")
                tx = Tx(conn, self.is_sqlite, self._collection_ids)
                yield tx
        self._collection_ids.update(tx.collection_ids)  # a read sees committed collections only

    def party_by_token(self, token_hash: str) -> Any | None:
        """The party row holding a token hash, or None: one statement on a pooled connection (on SQLite one the
        store keeps: ``_connection``), without a transaction around it (one statement reads one snapshot).
        Every request is authenticated first, and a read transaction for it cost twice as much (an
        authentication on SQLite: 60 against 23-28 µs). On PostgreSQL the statement runs in autocommit, so
        that the driver sends no ``BEGIN`` before it and the pool no ``ROLLBACK`` after it: two round trips of
        the four an authentication took (the pool's ping is the other: 260-271 against 471-477 µs where a round
        trip took 91 µs; docs/benchmarks.md, the sixteenth round). The connection goes back to the pool as it
        came, out of autocommit (``tests/api/test_postgres_round_trips.py``)."""
        sql = "SELECT * FROM parties WHERE token_hash = ?"
        if self.is_sqlite:
            with self._reachable(), self._connection() as kept:
                cur = kept.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    cur.execute(sql, (token_hash,))
                    row = cur.fetchone()
                    make = _row_maker("parties", tuple(d[0] for d in cur.description), True)
                finally:
                    cur.close()
            return None if row is None else make(row)
        with self._reachable():
            conn = self._engine().raw_connection()
            try:
                driver: Any = conn.dbapi_connection  # psycopg's: checked out idle, the pool's ping in autocommit
                driver.autocommit = True
                try:
                    cur = conn.cursor()
                    cur.execute(_format_style(sql), (token_hash,))
                    row = cur.fetchone()
                    make = _row_maker("parties", tuple(d[0] for d in cur.description), False)
                    cur.close()
                finally:
                    if not driver.closed:
                        driver.autocommit = False
            except BaseException:
                # not given back to be reset: a connection the server dropped fails its rollback, which the pool
                # logs with a traceback (SQLAlchemy's Connection does the same for its own statements)
                conn.invalidate()
                raise
            finally:
                conn.close()  # back to the pool, whose rollback finds no transaction to end
        return None if row is None else make(row)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """Turn the database being out of reach (down, restarting, a lock not granted in time, the pool
        exhausted) into StoreUnavailable; the driver's text stays in the exception chain, for the log only."""
        try:
            yield
        except self._unreachable as exc:
            if self.is_sqlite and not _sqlite_busy(exc):
                raise  # a broken SQLite file or schema is a fault, not a wait
            # the client's words either way (a WouldWait is caught before it reaches one); the driver's stay in
            # the exception chain
            gone = WouldWait if not self.may_wait() else StoreUnavailable
            raise gone(_UNAVAILABLE) from exc
        except PoolTimeout as exc:
            busy = WouldWait if not self.may_wait() else StoreUnavailable
            raise busy("the exchange is overloaded; try again (resending is safe)") from exc

    def page_size(self) -> int:
        """SQLite: the bytes per page of the database file."""
        if not self.is_sqlite:
            raise ConfigError("only a SQLite database has a page size")
        with self.read() as tx:
            return int(tx.conn.exec_driver_sql("PRAGMA page_size").scalar_one())

    def repack(self, page_size: int) -> tuple[int, int]:
        """SQLite: rewrite the database file with pages of ``page_size`` bytes (``VACUUM``), which also gives
        back the space of deleted rows. Returns the page size before and after.

        Needs the database to itself: SQLite leaves its WAL mode, which fixes the page size, only with no
        other connection open; while any is (a running ``cutout serve``), this raises Conflict and changes
        nothing. The file is rewritten in one transaction, so a failure (a full disk: it needs free space
        about the database's size) leaves it as it was; WAL mode is restored either way."""
        if not self.is_sqlite:
            raise ConfigError("only a SQLite database has a page size; PostgreSQL has nothing to repack")
        if not is_page_size(page_size):
            raise ConfigError(f"a SQLite page size is a power of two from 512 to 65536, not {page_size}")
        path = self.engine.url.database or ""
        self.close()  # this store's own pooled connections would hold the file too
        # a connection of its own: not pooled, no busy wait (in use is an answer, not something to wait out)
        conn = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            before = int(conn.execute("PRAGMA page_size").fetchone()[0])
            if before == page_size:
                return before, before
            try:
                mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if not _sqlite_busy(exc):
                    raise
                mode = "wal"
            if str(mode).lower() != "delete":
                raise Conflict(
                    "the database is in use: stop every 'cutout serve' and other cutout command on it, then repack"
                )
            try:
                conn.execute(f"PRAGMA page_size={int(page_size)}")
                conn.execute("VACUUM")
            finally:
                conn.execute("PRAGMA journal_mode=WAL")
            return before, int(conn.execute("PRAGMA page_size").fetchone()[0])
        finally:
            conn.close()

    def close(self) -> None:
        self.wait_for_merge()
        self._close_kept()
        self.engine.dispose()
        if self._no_wait_engine is not None:
            self._no_wait_engine.dispose()


class Tx:
    """One transaction's worth of store operations."""

    def __init__(
        self,
        conn: Connection,
        is_sqlite: bool,
        collection_ids: Mapping[tuple[int, str], int],
        known_types: AbstractSet[tuple[int, str, str]] = frozenset(),
    ) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite
        self._cur: Any = None
        #: collection ids known before this transaction (committed), and those it read itself (which the store
        #: learns only once the transaction has committed)
        self._known_collections = collection_ids
        self.collection_ids: dict[tuple[int, str], int] = {}
        #: (collection id, type, spec version) known to be in ``collection_types`` before this transaction
        #: (committed), and those it added there (which the store learns only once the transaction has committed)
        self._known_types = known_types
        self.types_added: set[tuple[int, str, str]] = set()
        #: audit rows appended in this transaction and not yet written: written by ``flush`` in one statement
        #: (a release run appends an event per reader), or before any statement of this transaction reads the
        #: audit table
        self._audit_rows: list[tuple[Any, ...]] = []
        #: the tree's perfect subtrees of a tile or more its appends completed, not yet written (schema.audit_nodes)
        self._audit_nodes: list[Node] = []
        #: copies planned in this transaction and not yet written: (recipient, sender, orig id) -> None, in
        #: planning order. A copy released in the transaction that planned it is then written once, whole,
        #: instead of inserted held and updated on release; the rest are inserted by ``flush`` before commit
        self._planned: dict[tuple[int, int, str], None] = {}
        #: the audit log's compact range as this transaction has extended it, and whether its row exists: read
        #: at the first append and written once, by ``flush`` (not once per append: a release run appends an
        #: event per reader)
        self._audit: tuple[CompactRange, bool] | None = None
        self._audit_dirty = False
        #: rows this transaction added to the objects table
        self.objects_added = 0
        #: SQLite: rows this transaction added to the small indexes of rows added lately (objects and copies;
        #: ``schema.objects.fresh``)
        self.fresh_added = 0
        #: whether it adds rows to them (``Store.write`` decides: ``FRESH_FROM``); PostgreSQL stores every row merged
        self.adds_fresh = False
        #: whether they held rows when this transaction first asked (``_both``)
        self._small: bool | None = None

    # -- the driver, directly (see the module docstring) -------------------------------------------
    def _cursor(self) -> Any:
        cur = self._cur
        if cur is None:
            # the DBAPI connection of this transaction: statements run on it belong to the transaction
            cur = self._cur = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        return cur

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self._cursor()
        cur.execute(sql if self.is_sqlite else _format_style(sql), params)
        return cur

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor().executemany(sql if self.is_sqlite else _format_style(sql), rows)

    def _put(self, table: str, names: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows``, tuples of the columns ``names`` (comma-separated), into ``table``: one ``executemany``;
        on PostgreSQL, from ``_COPY_FROM`` rows, one binary ``COPY … FROM STDIN`` instead, which costs the
        server and the driver less per row than an ``INSERT`` each (a fan-out's copies: see
        docs/benchmarks.md, "The fifteenth round"), and a round trip more, which a few rows do not repay."""
        if not rows:
            return
        if self.is_sqlite or len(rows) < _COPY_FROM:
            self._many(f"INSERT INTO {table} ({names}) VALUES ({_marks(names.split(','))})", rows)
            return
        # binary: the bodies go as they are, where the text format would write and parse each as hex
        with self._cursor().copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_pg_types(table, names))
            for row in rows:
                copy.write_row(row)

    def _fetch(self, table: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows as named tuples (the query's column names); the table's booleans as ``bool``."""
        cur = self._exec(sql, params)
        make = _row_maker(table, tuple(d[0] for d in cur.description), self.is_sqlite)
        return [make(r) for r in cur.fetchall()]

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._exec(sql, params).fetchone()
        return None if row is None else row[0]

    def _insert(self, table: Any, rows: Sequence[dict[str, Any]]) -> None:
        """executemany of dicts into ``table``: the columns of the first row, and the table's scalar defaults
        for columns no row names (as SQLAlchemy's insert would apply them)."""
        if not rows:
            return
        defaults = {
            c.name: c.default.arg
            for c in table.columns
            if c.default is not None and c.default.is_scalar and c.name not in rows[0]
        }
        names = [*rows[0], *defaults]
        self._put(table.name, ", ".join(names), [tuple(r.get(n, defaults.get(n)) for n in names) for r in rows])

    # -- meta -----------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        value = self._scalar("SELECT value FROM meta WHERE key = ?", (key,))
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        if self.get_meta(key) is None:
            self.conn.execute(insert(s.meta).values(key=key, value=value))
        else:
            self.conn.execute(update(s.meta).where(s.meta.c.key == key).values(value=value))

    # -- parties --------------------------------------------------------------------------------------
    def add_party(self, name: str, provider: bool, consumer: bool, token_hash: str, now: int) -> int:
        res = self.conn.execute(
            insert(s.parties).values(
                name=name,
                provider=provider,
                consumer=consumer,
                token_hash=token_hash,
                created=now,
                terms="[]",
            )
        )
        pk = res.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def party_by_name(self, name: str) -> Row[Any] | None:
        return self.conn.execute(select(s.parties).where(s.parties.c.name == name)).first()

    def providers_holding(self, grade: str, at_most: int) -> int:
        """How many active (not revoked) providers hold ``grade``, counted up to ``at_most`` (the grade crowd):
        ``at_most`` probes of ``ix_parties_grade``, however many parties the exchange has. Counting every
        party's grade instead read the whole parties table on every release run (94 µs with 1,000 parties)."""
        # the condition as ix_parties_grade's own, word for word: SQLite takes a partial index only then
        sql = "SELECT 1 FROM parties WHERE grade = ? AND provider AND revoked IS NULL LIMIT ?"
        return len(self._exec(sql, (grade, at_most)).fetchall())

    def party_by_id(self, party_id: int) -> Any:
        rows = self._fetch("parties", "SELECT * FROM parties WHERE id = ?", (party_id,))
        assert rows, party_id
        return rows[0]

    def parties(self) -> list[Any]:
        return self._fetch("parties", "SELECT * FROM parties ORDER BY id")

    def update_party(self, party_id: int, **values: Any) -> None:
        self.conn.execute(update(s.parties).where(s.parties.c.id == party_id).values(**values))

    # -- collections ----------------------------------------------------------------------------------
    def add_collection(self, uuid: str, party_id: int, kind: str) -> int:
        res = self.conn.execute(insert(s.collections).values(uuid=uuid, party_id=party_id, kind=kind, last_added=0))
        pk = res.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def collections_of(self, party_id: int) -> list[Row[Any]]:
        return list(
            self.conn.execute(
                select(s.collections).where(s.collections.c.party_id == party_id).order_by(s.collections.c.kind)
            )
        )

    def collection(self, party_id: int, kind: str) -> Coll:
        """A party's inbox or outbox (which every party has)."""
        key = (party_id, kind)
        found = self._known_collections.get(key)
        if found is None:
            found = self.collection_ids.get(key)
        if found is None:
            found = self._scalar("SELECT id FROM collections WHERE party_id = ? AND kind = ?", key)
            assert found is not None, key
            found = self.collection_ids[key] = int(found)
        return Coll(found)

    def collection_by_uuid(self, uuid: str) -> Any | None:
        rows = self._fetch("collections", "SELECT * FROM collections WHERE uuid = ?", (uuid,))
        return rows[0] if rows else None

    # -- agreements -----------------------------------------------------------------------------------
    def add_agreement(
        self,
        provider_id: int,
        consumer_id: int,
        types: Sequence[str] | None,
        tlp_max: int,
        area: Sequence[float] | None,
        delay: int,
        now: int,
        release: str = "fixed",
        pool_k: int = 0,
        epoch: int = 0,
        review: bool = False,
        allow: Sequence[str] = (),
    ) -> int:
        res = self.conn.execute(
            insert(s.agreements).values(
                provider_id=provider_id,
                consumer_id=consumer_id,
                types=None if types is None else json.dumps(sorted(types)),
                tlp_max=tlp_max,
                area=None if area is None else json.dumps(list(area)),
                delay=delay,
                release=release,
                pool_k=pool_k,
                epoch=epoch,
                review=review,
                created=now,
                allow=json.dumps(sorted(allow)) if allow else None,
            )
        )
        pk = res.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def agreements(self, include_ended: bool = False) -> list[Row[Any]]:
        q = select(s.agreements).order_by(s.agreements.c.id)
        if not include_ended:
            q = q.where(s.agreements.c.ended.is_(None))
        return list(self.conn.execute(q))

    def agreement(self, agreement_id: int) -> Any | None:
        rows = self._fetch("agreements", "SELECT * FROM agreements WHERE id = ?", (agreement_id,))
        return rows[0] if rows else None

    def active_agreements_from(self, provider_id: int) -> list[Any]:
        """Active agreements of a provider whose consumer has not been revoked."""
        return self._fetch(
            "agreements",
            "SELECT agreements.* FROM agreements JOIN parties ON parties.id = agreements.consumer_id"
            " WHERE agreements.provider_id = ? AND agreements.ended IS NULL AND parties.revoked IS NULL"
            " AND parties.consumer = ? ORDER BY agreements.id",
            (provider_id, True),
        )

    def active_agreements_to(self, consumer_id: int) -> list[Row[Any]]:
        """Active agreements towards a consumer whose provider has not been revoked."""
        q = (
            select(s.agreements)
            .join(s.parties, s.parties.c.id == s.agreements.c.provider_id)
            .where(
                s.agreements.c.consumer_id == consumer_id,
                s.agreements.c.ended.is_(None),
                s.parties.c.revoked.is_(None),
                s.parties.c.provider.is_(True),
            )
        )
        return list(self.conn.execute(q))

    def end_agreement(self, agreement_id: int, now: int) -> None:
        self.conn.execute(update(s.agreements).where(s.agreements.c.id == agreement_id).values(ended=now))

    # -- objects --------------------------------------------------------------------------------------
    def add_objects(
        self,
        coll: Any,
        new: Sequence[NewObject],
        now: int,
        *,
        returning: bool = True,
        audit_seq: int | None = None,
    ) -> list[int | None]:
        """Add objects to a collection; exact duplicates (same id and version) are skipped.

        Returns, for each input, the pk of the stored row, or None for a duplicate (with ``returning=False``,
        -1 instead of the pk: the caller does not need it, and it is not read back). ``date_added`` is
        unique and strictly increasing per collection. ``audit_seq`` is the audit entry that delivers them
        (an inbox): a duplicate takes it too, since that entry names it as well and is the latest receipt.
        """
        if not new:
            return []
        coll_id = coll.id
        existing: dict[tuple[str, int], int] = {}
        latest: dict[str, tuple[int, int]] = {}  # stix_id -> (version_us, pk)
        hashes = {n.stix_id: id_hash(n.stix_id) if n.id_hash is None else n.id_hash for n in new}
        for chunk in _chunks(list(hashes), _IDS_PER_QUERY):
            cond, params = self._ids(chunk, "coll = ?", (coll_id,), hashes=hashes)
            cur = self._exec(f"SELECT pk, stix_id, version_us, latest FROM objects WHERE {cond}", params)
            for pk, stix_id, version_us, is_latest in cur.fetchall():
                existing[(stix_id, version_us)] = pk
                if is_latest:
                    latest[stix_id] = (version_us, pk)
        rows: list[list[Any]] = []
        result: list[int | None] = []
        demote: set[int] = set()
        new_latest: dict[str, int] = {}  # stix_id -> index in rows
        redelivered: list[int] = []
        for n in new:
            key = (n.stix_id, n.version_us)
            if key in existing:
                if existing[key] >= 0:
                    redelivered.append(existing[key])
                result.append(None)
                continue
            existing[key] = -1
            prev = latest.get(n.stix_id)
            is_latest = prev is None or n.version_us > prev[0]
            if is_latest:
                if prev is not None:
                    if prev[1] >= 0:
                        demote.add(prev[1])
                    else:
                        rows[new_latest[n.stix_id]][8] = False
                latest[n.stix_id] = (n.version_us, -1)
                new_latest[n.stix_id] = len(rows)
            rows.append(
                [
                    coll_id,
                    n.stix_id,
                    hashes[n.stix_id],
                    n.type,
                    n.version,
                    n.version_us,
                    n.spec_version,
                    0,  # date_added: set below, once the rows are counted
                    is_latest,
                    n.body,
                    n.origin,
                    audit_seq,
                    self.adds_fresh,
                ]
            )
            result.append(-1)
        for chunk in _chunks(sorted(demote), 500):
            cond, params = _one_of(self.is_sqlite, "pk", chunk)
            self._exec(f"UPDATE objects SET latest = ? WHERE {cond}", (False, *params))
        if audit_seq is not None:
            for chunk in _chunks(sorted(set(redelivered)), 500):
                cond, params = _one_of(self.is_sqlite, "pk", chunk)
                self._exec(f"UPDATE objects SET audit_seq = ? WHERE {cond}", (audit_seq, *params))
        if rows:
            # date_added is unique and strictly increasing per collection: the rows take the next ones after the
            # collection's last, read afresh, and not before now (date_added follows the clock)
            if self.is_sqlite:  # (SQLite's BEGIN IMMEDIATE serialises writers; RETURNING needs SQLite 3.35)
                last = max(int(self._scalar("SELECT last_added FROM collections WHERE id = ?", (coll_id,))), 0)
                first = max(now, last + 1)
                self._exec("UPDATE collections SET last_added = ? WHERE id = ?", (first + len(rows) - 1, coll_id))
            else:  # one round trip: the collection's row locked, read and moved past the rows
                last = self._scalar(
                    "UPDATE collections SET last_added = GREATEST(?, last_added + 1) + ? - 1 WHERE id = ?"
                    " RETURNING last_added",
                    (now, len(rows), coll_id),
                )
                first = int(last) - len(rows) + 1
            firsts: dict[tuple[int, str, str], int] = {}  # (coll, type, spec version) -> its first row's date_added
            for i, row in enumerate(rows):
                row[7] = first + i
                firsts.setdefault((coll_id, row[3], row[6]), first + i)
            new_types = [
                (*key, at) for key, at in firsts.items() if key not in self._known_types and key not in self.types_added
            ]
            if new_types:
                # a type this collection may not have held: its first object's date_added, unless it has a row
                self._many(
                    "INSERT INTO collection_types (coll, type, spec_version, first_added) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    new_types,
                )
                self.types_added.update(key for key in firsts if key not in self._known_types)
            self.objects_added += len(rows)
            self._added_fresh(len(rows))
            self._put(
                "objects",
                "coll, stix_id, id_hash, type, version, version_us, spec_version, date_added, latest, body, origin,"
                " audit_seq, fresh",
                rows,
            )
            if not returning:
                return result
            pks = dict(
                self._exec(
                    "SELECT date_added, pk FROM objects WHERE coll = ? AND date_added >= ?", (coll_id, first)
                ).fetchall()
            )
            it = iter(pks[first + i] for i in range(len(rows)))
            result = [None if r is None else next(it) for r in result]
        return result

    def page(self, coll_id: int, q: PageQuery, stix_id: str | None = None) -> list[Any]:
        """Up to ``q.limit + 1`` rows of a collection matching the filters, in date_added order.

        Each row has ``stix_id``, ``version``, ``date_added``, ``body`` (the stored JSON bytes) and
        ``spec_version``.
        """
        by_id = stix_id is not None or bool(q.ids)
        # by id: the collection is named in the condition on the ids (_in_both)
        conds = [] if by_id else ["o.coll = ?"]
        params: list[Any] = [] if by_id else [coll_id]
        order = "o.date_added"
        if (q.types or q.spec_versions) and not by_id:
            # from the first object of these types (spec versions) on, and nothing if the collection never held
            # one (the bound is then NULL): otherwise the filter reads every row of the collection before the
            # first that matches, or all. In the same statement: on PostgreSQL a statement is a round trip
            bound, more = self._types_bound(coll_id, q.after, q.types, q.spec_versions)
            conds.append(f"o.date_added > ({bound})")
            params.extend(more)
        elif q.after >= 0:
            # (by id: "+" keeps SQLite from taking the range through ix_objects_coll_added, see below)
            conds.append("+o.date_added > ?" if by_id else "o.date_added > ?")
            params.append(q.after)
        if by_id:
            ids = [stix_id] if stix_id is not None else q.ids
            cond, values = self._ids(ids, "o.coll = ?", (coll_id,), "o.id_hash", "o.stix_id")
            conds.append(cond)
            params.extend(values)
            # sort the few rows of these ids (ix_objects_id holds no date_added): otherwise SQLite's planner
            # (without ANALYZE) reads the whole collection in date_added order through ix_objects_coll_added
            # to spare itself that sort (tests/api/test_query_plans.py)
            order = "+o.date_added"
        if q.types:
            cond, values = _one_of(self.is_sqlite, "o.type", q.types)
            conds.append(cond)
            params.extend(values)
        if q.spec_versions:
            cond, values = _one_of(self.is_sqlite, "o.spec_version", q.spec_versions)
            conds.append(cond)
            params.extend(values)
        if "all" not in q.versions:
            alts: list[str] = []
            stamps = [int(v) for v in q.versions if v not in ("last", "first")]
            if "last" in q.versions:
                alts.append("o.latest = ?")
                params.append(True)
            if "first" in q.versions:
                # no earlier version of its id, asked of each level of ix_objects_id apart: one condition naming
                # both (_in_both) made SQLite search the whole collection for each row (380 s for a first page
                # of 1,000 on an inbox of 1,000,000; tests/api/test_query_plans.py)
                levels = ("o2.fresh", "NOT o2.fresh") if self._both() else ("NOT o2.fresh",)
                alts.append(
                    " AND ".join(
                        f"NOT EXISTS (SELECT 1 FROM objects o2 WHERE ({level} AND o2.coll = o.coll"
                        " AND o2.id_hash = o.id_hash) AND o2.stix_id = o.stix_id AND o2.version_us < o.version_us)"
                        for level in levels
                    )
                )
            if stamps:
                # an object without created/modified (an SCO) has its date_added as its version (§3.4.2)
                by_version, values = _one_of(self.is_sqlite, "o.version_us", stamps)
                by_added, _ = _one_of(self.is_sqlite, "o.date_added", stamps)
                alts.append(by_version)
                alts.append(f"(o.version = '' AND {by_added})")
                params.extend(values)
                params.extend(values)
            conds.append("(" + " OR ".join(alts) + ")")
        params.append(q.limit + 1)
        cur = self._exec(
            "SELECT o.stix_id, o.version, o.date_added, o.body, o.spec_version FROM objects o"
            f" WHERE {' AND '.join(conds)} ORDER BY {order} LIMIT ?",
            params,
        )
        return [_PageRow._make(r) for r in cur.fetchall()]

    def _types_bound(
        self, coll_id: int, after: int, types: Sequence[str], spec_versions: Sequence[str]
    ) -> tuple[str, list[Any]]:
        """A scalar subquery, and its parameters, for the date_added after which a page by these types (spec
        versions; either: any) starts: ``after``, or the moment before the first object of them the collection
        has held (perhaps since deleted: ``schema.collection_types``) if that is later; NULL, so that the page
        is empty, if the collection never held one.

        One value either way, so that each database takes it as the bound of its range over the collection's
        ``date_added``: SQLite's ``max()`` of several arguments is NULL when one is, PostgreSQL's ``GREATEST``
        ignores a NULL, and there a group that no row made is no row, so NULL."""
        conds, params = ["coll = ?"], [coll_id]
        for column, values in (("type", types), ("spec_version", spec_versions)):
            if values:
                part, more = _one_of(self.is_sqlite, column, values)
                conds.append(part)
                params.extend(more)
        held = "FROM collection_types WHERE " + " AND ".join(conds)
        if self.is_sqlite:
            return f"SELECT max(?, min(first_added) - 1) {held}", [after, *params]
        return f"SELECT GREATEST(?, min(first_added) - 1) {held} HAVING count(*) > 0", [after, *params]

    def unversioned_added(self, coll_id: int, stix_ids: Iterable[str]) -> dict[str, int]:
        """date_added of the objects without created/modified (SCOs): that is their version (§3.4.2)."""
        out: dict[str, int] = {}
        for chunk in _chunks(sorted(set(stix_ids)), _IDS_PER_QUERY):
            cond, params = self._ids(chunk, "coll = ?", (coll_id,))
            cur = self._exec(f"SELECT stix_id, date_added FROM objects WHERE {cond} AND version = ''", params)
            out.update(cur.fetchall())
        return out

    def has_object(self, coll_id: int, stix_id: str) -> bool:
        return (
            self._exec(
                f"SELECT 1 FROM objects WHERE {_BY_HASH[self._both()]} AND stix_id = ? LIMIT 1",
                (*(coll_id, id_hash(stix_id)) * _levels(self._both()), stix_id),
            ).fetchone()
            is not None
        )

    def objects_by_pk(self, pks: Iterable[int]) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for chunk in _chunks(sorted(set(pks)), 500):
            cond, params = _one_of(self.is_sqlite, "pk", chunk)
            for row in self._fetch("objects", f"SELECT * FROM objects WHERE {cond}", params):
                out[row.pk] = row
        return out

    def latest_objects(self, coll_id: int, stix_ids: Iterable[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for chunk in _chunks(sorted(set(stix_ids)), _IDS_PER_QUERY):
            cond, params = self._ids(chunk, "coll = ?", (coll_id,))
            for row in self._fetch("objects", f"SELECT * FROM objects WHERE {cond} AND latest = ?", (*params, True)):
                out[row.stix_id] = row
        return out

    def delete_versions(self, coll_id: int, stix_id: str, q: PageQuery) -> int:
        """Delete the versions of one object that match the version filters; returns how many went.

        The newest remaining version (if any) becomes the latest again.
        """
        rows = self.page(coll_id, PageQuery(versions=q.versions, spec_versions=q.spec_versions, limit=1 << 30), stix_id)
        if not rows:
            return 0
        o = s.objects
        h = id_hash(stix_id)
        # the levels as _in_both names them: SQLAlchemy writes a boolean column as "fresh = 1", which is not the
        # partial indexes' condition, and SQLite then searched the whole collection (1.2 s a withdrawal at
        # 1,000,000 objects; tests/api/test_query_plans.py)
        merged = and_(text("NOT fresh"), o.c.coll == coll_id, o.c.id_hash == h)
        levels = or_(and_(text("fresh"), o.c.coll == coll_id, o.c.id_hash == h), merged) if self._both() else merged
        one = (levels, o.c.stix_id == stix_id)
        chosen = {r.date_added for r in rows}  # an id's few versions, picked here: by date_added, SQLite would
        # take ix_objects_coll_added instead of the ids index
        versions = [
            r.version_us
            for r in self.conn.execute(select(o.c.version_us, o.c.date_added).where(*one))
            if r.date_added in chosen
        ]
        self.conn.execute(delete(o).where(*one, o.c.version_us.in_(versions)))
        newest = self.conn.execute(select(func.max(o.c.version_us)).where(*one)).scalar_one_or_none()
        if newest is not None:
            self.conn.execute(update(o).where(*one, o.c.version_us == newest).values(latest=True))
        return len(rows)

    def copies_of(self, sender_id: int, orig_id: str) -> list[Any]:
        """Every recipient's copy of one sender's object, in recipient order.

        Every recipient is a party: the copies are looked up party by party through ``ix_copies_orig``
        (recipient, sender, hash), which costs a probe per party instead of a read of the whole copies table
        (a row per object and reader) under the write lock. PostgreSQL is handed the parties as an array: given
        the ``IN`` subquery, it scanned the whole copies table (11 ms at 200,000 copies, against 2 ms)."""
        self.flush()
        readers = "IN (SELECT id FROM parties)" if self.is_sqlite else "= ANY(ARRAY(SELECT id FROM parties))"
        # each level of the index its own SELECT: in one, SQLite read both levels whole for the parties' list
        one = f"SELECT * FROM copies WHERE %s AND recipient_id {readers} AND sender_id = ? AND orig_hash = ?"
        one += " AND orig_id = ?"
        key = (sender_id, id_hash(orig_id), orig_id)
        if not self._both():  # every row merged (_in_both)
            return self._fetch("copies", f"{one % 'NOT fresh'} ORDER BY recipient_id", key)
        return self._fetch(
            "copies", f"{one % 'fresh'} UNION ALL {one % 'NOT fresh'} ORDER BY recipient_id", (*key, *key)
        )

    # -- copies ---------------------------------------------------------------------------------------
    def copies(self, recipient_id: int, sender_id: int, orig_ids: Iterable[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        wanted = sorted(set(orig_ids))
        # a copy planned in this transaction has no row yet (``plan_copies`` looked): only the rest are read
        stored = [o for o in wanted if (recipient_id, sender_id, o) not in self._planned] if self._planned else wanted
        for chunk in _chunks(stored, _IDS_PER_QUERY):
            cond, params = self._ids(chunk, _PAIR, (recipient_id, sender_id), "orig_hash", "orig_id")
            for row in self._fetch("copies", f"SELECT * FROM copies WHERE {cond}", params):
                out[row.orig_id] = row
        if self._planned:
            for orig_id in wanted:
                if (recipient_id, sender_id, orig_id) in self._planned:
                    out[orig_id] = _HeldCopy(None, recipient_id, sender_id, orig_id, id_hash(orig_id))
        return out

    def copies_by_out(self, recipient_id: int, out_ids: Iterable[str]) -> list[Any]:
        """The released copies a recipient holds under these ids of its own (through the ids' hashes)."""
        rows: list[Any] = []
        for chunk in _chunks(sorted(set(out_ids)), _IDS_PER_QUERY):
            cond, params = self._ids(chunk, "recipient_id = ?", (recipient_id,), "out_hash", "out_id")
            rows.extend(self._fetch("copies", f"SELECT * FROM copies WHERE {cond}", params))
        return rows

    def plan_copies(self, recipient_id: int, sender_id: int, orig_ids: Iterable[str]) -> None:
        """Record that objects are due to a recipient (so references to them are kept).

        Written when released in this transaction (``record_copies``), or else held, at ``flush``."""
        # a copy already planned (or released) stays as it is; no unique index says so (see schema.copies),
        # the writer lock does: nothing else plans copies between this read and the insert
        wanted = [o for o in sorted(set(orig_ids)) if (recipient_id, sender_id, o) not in self._planned]
        planned: set[str] = set()
        for chunk in _chunks(wanted, _IDS_PER_QUERY):
            cond, params = self._ids(chunk, _PAIR, (recipient_id, sender_id), "orig_hash", "orig_id")
            cur = self._exec(f"SELECT orig_id FROM copies WHERE {cond}", params)
            planned.update(r[0] for r in cur.fetchall())
        for o in wanted:
            if o not in planned:
                self._planned[(recipient_id, sender_id, o)] = None

    def flush(self) -> None:
        """Write what the transaction keeps until its end: the copies planned in it and not released in it
        (held: ``out_id`` NULL), and the audit log's range if events were appended."""
        if self._planned:
            rows = [(r, snd, o, id_hash(o), self.adds_fresh) for r, snd, o in self._planned]
            self._planned.clear()
            self._added_fresh(len(rows))
            self._put("copies", "recipient_id, sender_id, orig_id, orig_hash, fresh", rows)
        self._write_audit()
        if self._audit is not None and self._audit_dirty:
            tree, exists = self._audit
            packed = f"{tree.size}:{tree.to_bytes().hex()}"
            if exists:
                self._exec("UPDATE meta SET value = ? WHERE key = ?", (packed, "audit_range"))
            else:
                self._exec("INSERT INTO meta (key, value) VALUES (?, ?)", ("audit_range", packed))
            self._audit = (tree, True)
            self._audit_dirty = False

    def record_copies(self, rows: Sequence[dict[str, Any]]) -> None:
        """Set out_id (with its hash: ``out_hash`` where the caller has it, else worked out here) / created_out /
        modified_out / origin_version_us of planned copies: one insert of those planned in this transaction, one
        update of those planned before (one executemany each)."""
        new: list[tuple[Any, ...]] = []
        older: list[tuple[Any, ...]] = []
        for r in rows:
            key = (r["recipient_id"], r["sender_id"], r["orig_id"])
            out_id = r["out_id"]
            out_hash = r.get("out_hash")
            if out_hash is None:
                out_hash = id_hash(out_id)
            values = (out_id, out_hash, r["created_out"], r["modified_out"], r["origin_version_us"])
            if key in self._planned:
                del self._planned[key]
                new.append((*key, id_hash(key[2]), *values, self.adds_fresh))
            else:
                h = id_hash(key[2])
                older.append((*values, *(*key[:2], h) * _levels(self._both()), key[2]))
        self._added_fresh(len(new))
        self._put(
            "copies",
            "recipient_id, sender_id, orig_id, orig_hash, out_id, out_hash, created_out, modified_out,"
            " origin_version_us, fresh",
            new,
        )
        self._many(
            "UPDATE copies SET out_id = ?, out_hash = ?, created_out = ?, modified_out = ?, origin_version_us = ?"
            f" WHERE {_BY_ORIG[self._both()]} AND orig_id = ?",
            older,
        )

    def _both(self) -> bool:
        """Whether a read by id asks the small level of the ids indexes too (``_in_both``): on SQLite, when
        it holds any row, which a transaction asks once (a probe of each small index; its snapshot does not
        change) or knows once it adds rows there itself."""
        if self.adds_fresh:
            return True
        if self._small is None:
            self._small = self.is_sqlite and bool(
                self._scalar(
                    "SELECT EXISTS (SELECT 1 FROM objects WHERE fresh) OR EXISTS (SELECT 1 FROM copies WHERE fresh)"
                )
            )
        return self._small

    def _ids(
        self,
        ids: Sequence[str],
        lead: str,
        lead_params: Sequence[Any],
        hashed: str = "id_hash",
        exact: str = "stix_id",
        *,
        hashes: Mapping[str, int] | None = None,
    ) -> tuple[str, list[Any]]:
        """``_by_ids`` for this transaction's store, and the levels it holds rows in."""
        return _by_ids(self.is_sqlite, ids, lead, lead_params, hashed, exact, both=self._both(), hashes=hashes)

    def _added_fresh(self, n: int) -> None:
        """Count ``n`` rows just added (objects or copies), in the small level if this transaction adds there."""
        if self.adds_fresh:
            self.fresh_added += n

    def fresh_rows(self) -> int:
        """How many rows the small indexes of rows added lately hold (objects and copies)."""
        return sum(int(self._scalar(f"SELECT count(*) FROM {table} WHERE fresh")) for table in ("objects", "copies"))

    def merge_fresh(self) -> int:
        """Move the rows added lately into the large indexes (``schema.objects.fresh``); returns how many.

        Each statement finds them through the small index (SQLite would otherwise read the whole table); the
        commit writes each leaf of a large index it changed once, however many of the rows went there."""
        moved = 0
        for table, small in (("objects", "ix_objects_id_fresh"), ("copies", "ix_copies_orig_fresh")):
            chosen = f" INDEXED BY {small}" if self.is_sqlite else ""
            moved += self._exec(
                f"UPDATE {table} SET fresh = ? WHERE pk IN (SELECT pk FROM {table}{chosen} WHERE fresh)", (False,)
            ).rowcount
        return moved

    # -- releases -------------------------------------------------------------------------------------
    def hold(self, rows: Sequence[dict[str, Any]]) -> None:
        self._insert(s.releases, rows)

    def due(self, now: int, limit: int) -> list[Row[Any]]:
        q = select(s.releases).where(s.releases.c.due <= now).order_by(s.releases.c.due, s.releases.c.pk).limit(limit)
        if not self.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        return list(self.conn.execute(q))

    def due_at(self, when: int, after_pk: int) -> list[Row[Any]]:
        """The rest of the items due at exactly ``when`` (those after ``after_pk``), however many."""
        r = s.releases
        q = select(r).where(r.c.due == when, r.c.pk > after_pk).order_by(r.c.pk)
        if not self.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        return list(self.conn.execute(q))

    def next_due(self) -> int | None:
        return self.conn.execute(select(func.min(s.releases.c.due))).scalar_one_or_none()

    def pooled_due(self, recipient_id: int, now: int) -> list[Row[Any]]:
        """Every pooled item due for a recipient, however many (a pool is decided and released whole)."""
        r = s.releases
        q = select(r).where(r.c.recipient_id == recipient_id, r.c.pool_k > 0, r.c.due <= now).order_by(r.c.pk)
        return list(self.conn.execute(q))

    def postpone(self, pks: Iterable[int], due: int) -> None:
        for chunk in _chunks(sorted(set(pks)), 500):
            self.conn.execute(update(s.releases).where(s.releases.c.pk.in_(chunk)).values(due=due))

    def drop_releases(self, pks: Iterable[int]) -> None:
        for chunk in _chunks(sorted(set(pks)), 500):
            self.conn.execute(delete(s.releases).where(s.releases.c.pk.in_(chunk)))

    # -- outcomes ---------------------------------------------------------------------------------------
    def record_outcomes(self, rows: Sequence[dict[str, Any]]) -> None:
        """Keep each consumer's latest outcome per provider object (rows: provider_id, consumer_id, orig_id,
        outcome, at)."""
        o = s.outcomes
        for r in rows:
            self.conn.execute(
                delete(o).where(
                    o.c.provider_id == r["provider_id"],
                    o.c.consumer_id == r["consumer_id"],
                    o.c.orig_id == r["orig_id"],
                )
            )
        if rows:
            self.conn.execute(insert(o), list(rows))

    def outcome_counts(self) -> dict[int, dict[str, int]]:
        """provider id → outcome → how many objects have it."""
        o = s.outcomes
        out: dict[int, dict[str, int]] = {}
        for r in self.conn.execute(
            select(o.c.provider_id, o.c.outcome, func.count()).group_by(o.c.provider_id, o.c.outcome)
        ):
            out.setdefault(int(r[0]), {})[str(r[1])] = int(r[2])
        return out

    # -- reviews ----------------------------------------------------------------------------------------
    def add_reviews(self, rows: Sequence[dict[str, Any]]) -> None:
        self._insert(s.reviews, rows)

    def reviews(self) -> list[Row[Any]]:
        return list(self.conn.execute(select(s.reviews).order_by(s.reviews.c.id)))

    def review(self, review_id: int) -> Row[Any] | None:
        return self.conn.execute(select(s.reviews).where(s.reviews.c.id == review_id)).first()

    def drop_review(self, review_id: int) -> None:
        self.conn.execute(delete(s.reviews).where(s.reviews.c.id == review_id))

    # -- statuses -------------------------------------------------------------------------------------
    def add_status(self, uuid: str, party_id: int, now: int, body: bytes, *, audit_seq: int | None = None) -> None:
        """Keep a submission's status; ``audit_seq`` is its acceptance in the audit log."""
        self._exec(
            "INSERT INTO statuses (uuid, party_id, created, body, audit_seq) VALUES (?, ?, ?, ?, ?)",
            (uuid, party_id, now, body, audit_seq),
        )

    def status_audit_seq(self, uuid: str) -> int | None:
        """The audit entry of a status's acceptance, whoever's it is (the operator's receipts)."""
        seq = self._scalar("SELECT audit_seq FROM statuses WHERE uuid = ?", (uuid,))
        return None if seq is None else int(seq)

    def status(self, uuid: str, party_id: int) -> bytes | None:
        body = self._scalar("SELECT body FROM statuses WHERE uuid = ? AND party_id = ?", (uuid, party_id))
        return None if body is None else bytes(body)

    # -- audit ----------------------------------------------------------------------------------------
    def append_audit(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Append events to the log: contiguous seq numbers, and the Merkle tree's compact range kept in step.
        Returns the seq of each row.

        The range row is locked for the transaction (PostgreSQL; SQLite's writer lock does it already), so
        concurrent writers append one after the other.
        """
        if not rows:
            return []
        tree = self._audit_tree()
        start = tree.size
        for r in rows:  # one by one, noting the subtrees they complete (about 1 µs an entry, as a batch took)
            tree.append(leaf_hash(r["commitment"]), self._audit_nodes, TILE_LEVEL)
        self._audit_dirty = True
        seqs = list(range(start + 1, start + len(rows) + 1))
        self._audit_rows += [
            (r["at"], r["kind"], r["salt"], r["commitment"], r["event"], seq) for r, seq in zip(rows, seqs, strict=True)
        ]
        return seqs

    def _write_audit(self) -> None:
        """Write the audit rows appended so far (``append_audit``)."""
        if self._audit_rows:
            rows, self._audit_rows = self._audit_rows, []
            self._put("audit", "at, kind, salt, commitment, event, seq", rows)
        if self._audit_nodes:
            nodes, self._audit_nodes = self._audit_nodes, []
            self._put("audit_nodes", "level, position, hash", nodes)

    def _audit_tree(self) -> CompactRange:
        """The range, read (and on PostgreSQL locked) at the first use in this transaction."""
        if self._audit is None:
            lock = "" if self.is_sqlite else " FOR UPDATE"
            state = self._scalar(f"SELECT value FROM meta WHERE key = ?{lock}", ("audit_range",))
            self._audit = (_load_range(state), state is not None)
        return self._audit[0]

    def audit_seq_of(self, party_id: int, ref: str) -> int | None:
        """The latest audit entry a party may have a receipt for under ``ref``: the acceptance of one of its
        statuses, or the latest delivery of an object in its inbox."""
        found = self._exec(
            "SELECT max(audit_seq) FROM statuses WHERE uuid = ? AND party_id = ?"
            f" UNION ALL SELECT max(o.audit_seq) FROM objects o WHERE {_BY_INBOX[self._both()]} AND o.stix_id = ?",
            (ref, party_id, *(party_id, id_hash(ref)) * _levels(self._both()), ref),
        ).fetchall()
        seqs = [int(r[0]) for r in found if r[0] is not None]
        return max(seqs) if seqs else None

    def audit_range(self) -> CompactRange:
        """The log's range as this transaction sees it (with its own appends); the caller's to keep."""
        if self._audit is not None:
            return self._audit[0].copy()
        return _load_range(self.get_meta("audit_range"))

    def audit_rows(self) -> list[Row[Any]]:
        """The whole log at once, in ``seq`` order (the operator's view, and tests); ``audit_log`` to go through it."""
        return list(self.audit_log())

    def audit_log(self) -> Iterator[Row[Any]]:
        """Every audit row in ``seq`` order, read ``AUDIT_CHUNK`` rows at a time (after the last ``seq`` read:
        ``seq`` is the key), so that a caller going through the log holds one chunk of it, not all of it. On
        SQLite the chunks come from the transaction's one snapshot; on PostgreSQL, whose reads run in
        autocommit, each from its own: the log only grows (at its end) and retention only empties salts and
        events, so a later chunk can only hold more entries, or entries retired since."""
        self._write_audit()
        last: int | None = None
        while True:
            q = select(s.audit).order_by(s.audit.c.seq).limit(AUDIT_CHUNK)
            if last is not None:
                q = q.where(s.audit.c.seq > last)
            rows = list(self.conn.execute(q))
            yield from rows
            if len(rows) < AUDIT_CHUNK:
                return
            last = int(rows[-1].seq)

    def audit_row(self, seq: int) -> Row[Any] | None:
        self._write_audit()
        return self.conn.execute(select(s.audit).where(s.audit.c.seq == seq)).first()

    def audit_proof(self, index: int, size: int) -> list[bytes]:
        """The inclusion proof of leaf ``index`` (entry ``index + 1``) in the tree of the log's first ``size``
        entries: a few stored subtrees (``schema.audit_nodes``) and the commitments of at most two tiles, not the
        whole log (every receipt read it all: 21 ms at 3,313 entries, and growing with the log)."""
        self._write_audit()

        def leaves(lo: int, hi: int) -> list[bytes]:
            rows = self._exec("SELECT commitment FROM audit WHERE seq > ? AND seq <= ? ORDER BY seq", (lo, hi))
            return [leaf_hash(bytes(c)) for (c,) in rows.fetchall()]

        def node(level: int, position: int) -> bytes:
            found = self._scalar("SELECT hash FROM audit_nodes WHERE level = ? AND position = ?", (level, position))
            if found is not None:
                return bytes(found)
            # not stored (appended by a node of the version before migration 0010, say): the log has it, at the
            # cost of reading its entries; `cutout audit verify` names it
            log.warning(
                "the audit tree's node at level %d, position %d is not stored: computed from the log", level, position
            )
            return root(leaves(position << level, (position + 1) << level))

        def tile(t: int) -> list[bytes]:
            lo = t << TILE_LEVEL
            return leaves(lo, min(size, lo + (1 << TILE_LEVEL)))

        return tiled_inclusion_proof(index, size, node, tile)

    def audit_nodes(self) -> Iterator[Node]:
        """Every stored subtree of the audit tree (``schema.audit_nodes``), by level and position."""
        self._write_audit()
        for level, position, h in self._exec(
            "SELECT level, position, hash FROM audit_nodes ORDER BY level, position"
        ).fetchall():
            yield Node(int(level), int(position), bytes(h))

    def add_checkpoint(self, size: int, root: bytes, note: str, now: int) -> None:
        self.conn.execute(insert(s.audit_checkpoints).values(size=size, root=root, note=note, at=now))

    def checkpoints(self) -> list[Row[Any]]:
        return list(self.conn.execute(select(s.audit_checkpoints).order_by(s.audit_checkpoints.c.size)))

    def latest_checkpoint(self) -> Row[Any] | None:
        q = select(s.audit_checkpoints).order_by(s.audit_checkpoints.c.size.desc()).limit(1)
        return self.conn.execute(q).first()

    def forget_audit_before(self, before: int) -> int:
        """Retention: destroy the salt and event of entries older than ``before``; commitments stay."""
        self._write_audit()
        a = s.audit
        res = self.conn.execute(update(a).where(a.c.at < before, a.c.salt.is_not(None)).values(salt=None, event=None))
        return int(res.rowcount or 0)


def _sqlite_busy(exc: Exception) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "locked" in text or "busy" in text


def _load_range(state: str | None) -> CompactRange:
    if not state:
        return CompactRange()
    size, _, packed = state.partition(":")
    return CompactRange.from_bytes(int(size), bytes.fromhex(packed))


def _chunks(items: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


_PageRow = namedtuple("_PageRow", ["stix_id", "version", "date_added", "body", "spec_version"])

#: per table, its boolean columns (SQLite hands them back as 0 / 1)
_BOOLEANS: dict[str, frozenset[str]] = {
    t.name: frozenset(c.name for c in t.columns if isinstance(c.type, Boolean)) for t in s.metadata.tables.values()
}


@functools.cache
def _row_maker(table: str, names: tuple[str, ...], convert: bool) -> Callable[[Sequence[Any]], Any]:
    cls = namedtuple("Row", names)  # type: ignore[misc]
    flags = [i for i, n in enumerate(names) if n in _BOOLEANS.get(table, ())] if convert else []
    if not flags:
        return cls._make

    def make(raw: Sequence[Any]) -> Any:
        values = list(raw)
        for i in flags:
            if values[i] is not None:
                values[i] = bool(values[i])
        return cls._make(values)

    return make


_POSTGRES = postgresql.dialect()  # type: ignore[no-untyped-call]  # (SQLAlchemy leaves it untyped)


@functools.cache
def _pg_types(table: str, names: str) -> list[str]:
    """The PostgreSQL types of ``table``'s columns ``names`` (comma-separated), which a binary ``COPY`` must be
    told: the schema's (``tests/unit/test_migrations.py`` holds the migrations to it)."""
    columns = s.metadata.tables[table].columns
    return [columns[n.strip()].type.compile(dialect=_POSTGRES).partition("(")[0].lower() for n in names.split(",")]


@functools.cache
def _format_style(sql: str) -> str:
    """The qmark SQL written here in the driver's format style (psycopg: ``%s``)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _marks(items: Sized) -> str:
    return ", ".join("?" * len(items))


#: a copy planned in the transaction that reads it, not yet written: held, as its row will say
_HeldCopy = namedtuple(
    "_HeldCopy",
    "pk recipient_id sender_id orig_id orig_hash out_id created_out modified_out origin_version_us out_hash",
    defaults=(None, None, None, None, None),
)

#: ids per statement where each id takes two parameters (below SQLite's old limit of 999 parameters)
_IDS_PER_QUERY = 400

#: on PostgreSQL, rows from which an insert is a ``COPY`` (``Tx._put``)
_COPY_FROM = 16

#: on PostgreSQL, values beyond which a list is one array parameter (``_one_of``): a statement naming 24 ids
#: and their hashes still has at most 50 parameters, which psycopg converts once
_ARRAY_FROM = 24


def _one_of(sqlite: bool, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """The condition that ``column`` is one of ``values``, and its parameters: ``IN (?, …)``, a parameter per
    value; on PostgreSQL, for more than ``_ARRAY_FROM`` values, ``= ANY(?)`` of one array instead, so that the
    statement's text is the same whatever the number of values. psycopg converts a text with more than 50
    parameters anew every time and the server plans it anew; a few values in marks are cheaper than an
    array, whose statement the server plans again on every run (a lookup of one id: 53 against 100 µs; of
    64 ids: 962 against 841 µs; see docs/benchmarks.md, "The fifteenth round")."""
    if sqlite or len(values) <= _ARRAY_FROM:
        return f"{column} IN ({_marks(values)})", list(values)
    return f"{column} = ANY(?)", [list(values)]


def _in_both(lead: str, match: str, both: bool) -> str:
    """The condition that a row matches ``lead`` (equalities on the index's leading columns) and ``match`` (on
    its hash) in either level of its index: the rows added lately (``fresh``) and the rest, each through its
    partial index (``schema.objects.fresh``); its parameters are the lead's and the match's, once per level
    (``_levels``). SQLite takes both with its multi-index OR (``tests/api/test_query_plans.py``). The lead
    is inside each level's condition: outside, SQLite's planner (without statistics) took it for a better
    way in, and read a whole collection in the order it was added. Without ``both`` (the small level is
    empty: ``Tx._both``) the condition names the large level alone, one probe instead of two; on PostgreSQL
    it always is, every row being stored merged."""
    column = match.split()[0]
    fresh = column.rpartition(".")[0] + ".fresh" if "." in column else "fresh"
    merged = f"(NOT {fresh} AND {lead} AND {match})"
    return f"(({fresh} AND {lead} AND {match}) OR {merged})" if both else merged


def _levels(both: bool) -> int:
    """How many levels of an index ``_in_both`` names (each takes the parameters once)."""
    return 2 if both else 1


#: one id in either level (its parameters twice: the lead's, then the hash)
_BY_HASH = {both: _in_both("coll = ?", "id_hash = ?", both) for both in (True, False)}
_INBOX = "o.coll = (SELECT id FROM collections WHERE party_id = ? AND kind = 'inbox')"
_BY_INBOX = {both: _in_both(_INBOX, "o.id_hash = ?", both) for both in (True, False)}
_PAIR = "recipient_id = ? AND sender_id = ?"
_BY_ORIG = {both: _in_both(_PAIR, "orig_hash = ?", both) for both in (True, False)}


def _by_ids(
    sqlite: bool,
    ids: Sequence[str],
    lead: str,
    lead_params: Sequence[Any],
    hashed: str = "id_hash",
    exact: str = "stix_id",
    *,
    both: bool,
    hashes: Mapping[str, int] | None = None,
) -> tuple[str, list[Any]]:
    """The condition that a row matches ``lead`` (its parameters ``lead_params``) and its id (column ``exact``,
    its hash ``hashed``) is one of ``ids``, and its parameters: through the hashes' index, both its levels
    (``_in_both``; ``both``: its small level too), then exactly. ``hashes``: every id's hash, where the caller
    has them (``id_hash`` of each otherwise)."""
    by_hash, hashes_of = _one_of(
        sqlite, hashed, [hashes[i] for i in ids] if hashes is not None else [id_hash(i) for i in ids]
    )
    by_id, values = _one_of(sqlite, exact, ids)
    named = [*lead_params, *hashes_of]
    return f"{_in_both(lead, by_hash, both)} AND {by_id}", [*named * _levels(both), *values]
