"""Kill -9 the server in the middle of a burst of submissions: nothing acknowledged is lost or half-stored, the
audit log still verifies with a leaf for every acknowledged submission, and the unacknowledged ones can be
sent again idempotently."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cutout.demo.server import start_server

from .support import TAXII, Broker, indicator, make_broker, read_all

pytestmark = pytest.mark.integration

ENVELOPES = 60
PER_ENVELOPE = 25


def _burst(
    broker: Broker, token: str, outbox: str, envelopes: list[list[dict[str, Any]]], acked: dict[int, str]
) -> None:
    """Post envelopes one after another until the server dies; record the status id of each 202."""
    headers = {"Authorization": f"Bearer {token}", "Accept": TAXII, "Content-Type": TAXII}
    with httpx.Client(base_url=broker.root, headers=headers, timeout=10.0) as h:
        for i, objs in enumerate(envelopes):
            try:
                r = h.post(f"collections/{outbox}/objects/", json={"objects": objs})
            except httpx.HTTPError:
                return
            if r.status_code == 202:
                acked[i] = r.json()["id"]


def test_kill_during_ingest_loses_nothing_acknowledged(tmp_path: Path) -> None:
    broker = make_broker(tmp_path)
    provider = broker.add_party("Crash Provider", provider=True)
    consumer = broker.add_party("Crash Consumer", consumer=True)
    broker.add_agreement(provider, consumer)
    broker.server = start_server(tmp_path)
    outbox = broker.collection_ids(provider)["outbox"]
    envelopes = [[indicator(i * PER_ENVELOPE + j) for j in range(PER_ENVELOPE)] for i in range(ENVELOPES)]
    acked: dict[int, str] = {}
    worker = threading.Thread(target=_burst, args=(broker, provider.token, outbox, envelopes, acked))
    worker.start()
    deadline = time.monotonic() + 60
    while len(acked) < 5 and time.monotonic() < deadline:  # let a few land, then pull the plug
        time.sleep(0.01)
    os.kill(broker.server.proc.pid, signal.SIGKILL)
    broker.server.proc.wait()
    worker.join(timeout=30)
    assert 5 <= len(acked) < ENVELOPES, "the kill must fall in the middle of the burst"

    broker.server = start_server(tmp_path)
    try:
        stored = {o["id"] for o in read_all(broker, provider, "outbox")}
        for i in acked:
            assert {o["id"] for o in envelopes[i]} <= stored, f"acknowledged envelope {i} lost objects"
        # nothing half-stored: every envelope is there whole or not at all
        for i, objs in enumerate(envelopes):
            present = {o["id"] for o in objs} & stored
            assert present in (set(), {o["id"] for o in objs}), f"envelope {i} is half-stored"
        # everything stored was released exactly once (delay 0: in the same transaction)
        names = [o["name"] for o in read_all(broker, consumer, "inbox")]
        assert len(names) == len(set(names)) == len(stored)
        # resend everything: the unacknowledged land, the acknowledged are ordinary duplicates
        again: dict[int, str] = {}
        _burst(broker, provider.token, outbox, envelopes, again)
        assert len(again) == ENVELOPES
        assert len(read_all(broker, provider, "outbox")) == ENVELOPES * PER_ENVELOPE
        names = [o["name"] for o in read_all(broker, consumer, "inbox")]
        assert len(names) == len(set(names)) == ENVELOPES * PER_ENVELOPE
    finally:
        broker.server.stop()
    with broker.exchange() as ex:
        report = ex.verify_audit()
        assert report.ok, report.summary()
        for status_id in [*acked.values(), *again.values()]:
            assert ex.prove(status_id=status_id)  # every acknowledged submission has its leaf
