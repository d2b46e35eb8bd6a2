"""``cutout serve`` validates a large envelope's copies in its checking process: a real server, taxii2-client."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from taxii2client.v21 import Collection

from cutout.demo.server import start_server

from .support import TAXII, Broker, Party, coll_path, indicator, make_broker, read_all

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _checking_process(pid: int, wait: float = 60.0) -> int:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for child in _children(pid):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"cutout.model.offload" in cmdline:
                return child
        time.sleep(0.05)
    raise AssertionError("cutout serve started no checking process")


def test_the_server_checks_copies_in_a_second_process_and_ends_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "broker"
    data_dir.mkdir()  # make_broker writes cutout.toml there first when the suite runs on PostgreSQL
    broker: Broker = make_broker(data_dir)
    provider, consumer = broker.pair("Offload")
    broker.server = start_server(broker.data_dir)
    try:
        child = _checking_process(broker.server.proc.pid)
        objects = [indicator(n) for n in range(200)]
        outbox = broker.root + coll_path(broker, provider, "outbox", "")
        with Collection(outbox, user=provider.name, password=provider.token) as coll:
            status = coll.add_objects(orjson.dumps({"objects": objects}).decode())
        assert status.status == "complete" and status.success_count == 200
        got = read_all(broker, consumer)
        assert len(got) == 200
        assert {o["name"] for o in got} == {o["name"] for o in objects}
        assert Path(f"/proc/{child}").exists()  # the same child served the envelope: it did not fail
        with broker.http(consumer) as h:
            assert h.get("collections/", headers={"Accept": TAXII}).status_code == 200
    finally:
        broker.server.stop()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists(), "the checking process outlived the server"
    broker.check_log()  # nothing went wrong on either side (the child writes to the server's log)


def test_providers_sending_large_envelopes_at_once_are_each_stored_and_released_whole(tmp_path: Path) -> None:
    """Three providers POST 100-object envelopes at the same time (taxii2-client, a thread each): every envelope
    is acknowledged whole, the consumer receives every object once, under ids of its own, and the checking
    process is still the one that started. (That an envelope which finds the checking process busy waits for it
    is tested in tests/api/test_check_process.py.)"""
    data_dir = tmp_path / "broker"
    data_dir.mkdir()
    broker: Broker = make_broker(data_dir)
    consumer = broker.add_party("At Once Consumer", consumer=True)
    providers = [broker.add_party(f"At Once Provider {i}", provider=True) for i in range(3)]
    for provider in providers:
        broker.add_agreement(provider, consumer)
    broker.server = start_server(broker.data_dir)
    try:
        child = _checking_process(broker.server.proc.pid)
        sent: dict[str, list[dict[str, Any]]] = {p.name: [] for p in providers}
        statuses: list[tuple[str, str, int]] = []
        failed: list[BaseException] = []
        start = threading.Barrier(len(providers))

        def send(provider: Party, first: int) -> None:
            try:
                outbox = broker.root + coll_path(broker, provider, "outbox", "")
                with Collection(outbox, user=provider.name, password=provider.token) as coll:
                    start.wait()
                    for envelope in range(4):
                        objects = [indicator(first + 100 * envelope + i) for i in range(100)]
                        sent[provider.name] += objects
                        status = coll.add_objects(orjson.dumps({"objects": objects}).decode())
                        statuses.append((provider.name, status.status, status.success_count))
            except BaseException as exc:
                failed.append(exc)

        threads = [threading.Thread(target=send, args=(p, 1000 * i)) for i, p in enumerate(providers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failed, failed
        assert sorted(statuses) == sorted((p.name, "complete", 100) for p in providers for _ in range(4))
        got = read_all(broker, consumer)
        names = sorted(o["name"] for o in got)
        assert names == sorted(o["name"] for objects in sent.values() for o in objects)  # each once
        theirs = {o["id"] for objects in sent.values() for o in objects}
        assert not theirs & {o["id"] for o in got}  # the consumer's own ids, none of the providers'
        assert len({o["id"] for o in got}) == len(got)
        assert Path(f"/proc/{child}").exists()  # the same checking process served them all
    finally:
        broker.server.stop()
    broker.check_log()
