"""The page size of the SQLite file: a new broker's database has ``sqlite_page_size``, one that exists keeps
its own and works on, and ``Store.repack`` (``cutout db repack``) rewrites it, refusing while the database is in
use. Real SQLite files throughout."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from cutout.errors import ConfigError, Conflict
from cutout.service import Exchange
from cutout.settings import SQLITE_PAGE_SIZE, Settings, load_settings
from cutout.store import Store
from cutout.store.sql import CHECKPOINT_BYTES, PageQuery
from tests.api.conftest import indicator


def _broker(tmp_path: Path, **overrides: object) -> tuple[Settings, Exchange]:
    settings = load_settings(tmp_path / "broker", dict(overrides), environ={})
    Exchange.init(settings, "page size")
    return settings, Exchange.open(settings)


def _file_page_size(settings: Settings) -> tuple[int, str]:
    """What the file itself says, read by a connection of the test's own."""
    db = sqlite3.connect(settings.db_url.removeprefix("sqlite:///"))
    try:
        return db.execute("PRAGMA page_size").fetchone()[0], db.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        db.close()


def _fill(ex: Exchange, n: int) -> list[str]:
    """A provider and a consumer under an agreement; ``n`` indicators submitted and released. Their names."""
    _, pt = ex.add_party("Provider", provider=True, consumer=False)
    ex.add_party("Consumer", provider=False, consumer=True)
    ex.add_agreement("Provider", "Consumer", tlp_max="amber", release="none")
    provider = ex.authenticate(None, pt)
    outbox = next(c for c in ex.collections(provider) if c.kind == "outbox")
    objs = [indicator(i, description="x" * 1500) for i in range(n)]  # rows larger than a 4 KiB page's third
    for i in range(0, n, 50):
        ex.submit(provider, outbox.uuid, objs[i : i + 50])
    return sorted(o["name"] for o in objs)


def _inbox_names(settings: Settings) -> list[str]:
    db = sqlite3.connect(settings.db_url.removeprefix("sqlite:///"))
    try:
        rows = db.execute(
            "SELECT o.body FROM objects o JOIN collections c ON c.id = o.coll WHERE c.kind = 'inbox'"
        ).fetchall()
    finally:
        db.close()
    return sorted(orjson.loads(body)["name"] for (body,) in rows)


def test_a_new_brokers_database_has_the_configured_page_size(tmp_path: Path) -> None:
    settings, ex = _broker(tmp_path)
    ex.close()
    assert settings.sqlite_page_size == SQLITE_PAGE_SIZE == 8192
    assert _file_page_size(settings) == (8192, "wal")
    other, ex = _broker(tmp_path / "other", sqlite_page_size=16384)
    ex.close()
    assert _file_page_size(other) == (16384, "wal")


def test_an_existing_database_keeps_its_page_size_and_works_on(tmp_path: Path) -> None:
    _, ex = _broker(tmp_path, sqlite_page_size=4096)  # as every broker before the setting made them
    names = _fill(ex, 40)
    ex.close()
    settings = load_settings(tmp_path / "broker", environ={})
    ex = Exchange.open(settings)
    try:
        assert ex.store.page_size() == 4096
        provider = ex.authenticate(None, ex.rotate_party("Provider")[1])
        outbox = next(c for c in ex.collections(provider) if c.kind == "outbox")
        ex.submit(provider, outbox.uuid, [indicator(999)])
    finally:
        ex.close()
    assert _file_page_size(settings) == (4096, "wal")
    assert _inbox_names(settings) == sorted([*names, "indicator 999"])


def test_repack_rewrites_the_file_with_the_new_page_size_and_keeps_every_row(tmp_path: Path) -> None:
    settings, ex = _broker(tmp_path, sqlite_page_size=4096)
    names = _fill(ex, 60)
    audit_before = ex.audit_rows()
    ex.close()
    store = Store.for_settings(settings)
    try:
        assert store.repack(16384) == (4096, 16384)
        assert store.repack(16384) == (16384, 16384)  # nothing to do
    finally:
        store.close()
    assert _file_page_size(settings) == (16384, "wal")
    assert _inbox_names(settings) == names
    ex = Exchange.open(settings)
    try:
        assert ex.audit_rows() == audit_before
        ex.verify_audit()
        provider = ex.authenticate(None, ex.rotate_party("Provider")[1])
        outbox = next(c for c in ex.collections(provider) if c.kind == "outbox")
        ex.submit(provider, outbox.uuid, [indicator(999)])
        page = ex.page(provider, outbox.uuid, PageQuery(limit=1000), None)
        assert len(page.rows) == 61
    finally:
        ex.close()


def test_repack_refuses_a_database_in_use_and_changes_nothing(tmp_path: Path) -> None:
    settings, ex = _broker(tmp_path, sqlite_page_size=4096)  # a running broker: its connections are open
    try:
        _fill(ex, 10)
        store = Store.for_settings(settings)
        with pytest.raises(Conflict, match="the database is in use: stop every 'cutout serve'"):
            store.repack(16384)
        store.close()
        assert _file_page_size(settings) == (4096, "wal")
        provider = ex.authenticate(None, ex.rotate_party("Provider")[1])
        outbox = next(c for c in ex.collections(provider) if c.kind == "outbox")
        ex.submit(provider, outbox.uuid, [indicator(999)])  # the broker writes on, in WAL mode
    finally:
        ex.close()
    assert len(_inbox_names(settings)) == 11


def test_repack_refuses_what_is_not_a_sqlite_page_size(tmp_path: Path) -> None:
    settings, ex = _broker(tmp_path)
    ex.close()
    store = Store.for_settings(settings)
    try:
        with pytest.raises(ConfigError, match="power of two from 512 to 65536, not 5000"):
            store.repack(5000)
    finally:
        store.close()
    with pytest.raises(ConfigError, match="sqlite_page_size must be a power of two from 512 to 65536, not 100"):
        load_settings(tmp_path / "broker", {"sqlite_page_size": 100}, environ={})
    pg = Store("postgresql://nobody@127.0.0.1:1/none")  # not connected: refused before any connection
    try:
        with pytest.raises(ConfigError, match="only a SQLite database has a page size"):
            pg.repack(16384)
    finally:
        pg.close()


@pytest.mark.parametrize("page_size", [4096, 8192, 16384])
def test_the_wal_is_checkpointed_at_the_same_bytes_whatever_the_page_size(tmp_path: Path, page_size: int) -> None:
    """SQLite counts its checkpoint threshold in pages (1,000): the store sets it so that the WAL is copied
    back at about 4 MB with 16 KiB pages as with 4 KiB ones (a larger threshold made each checkpoint a longer
    stall of the commit that ran it)."""
    _, ex = _broker(tmp_path, sqlite_page_size=page_size)
    try:
        with ex.store.write() as tx:
            (pages,) = tx.conn.exec_driver_sql("PRAGMA wal_autocheckpoint").one()
        with ex.no_wait(), ex.store.read() as tx:  # the event loop's connection too
            (no_wait_pages,) = tx.conn.exec_driver_sql("PRAGMA wal_autocheckpoint").one()
    finally:
        ex.close()
    assert CHECKPOINT_BYTES == 4 << 20
    assert pages == no_wait_pages == CHECKPOINT_BYTES // page_size
