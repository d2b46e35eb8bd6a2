"""`cutout receive` and `cutout send` as a party runs them against a real server: an inbox of several pages
taken page by page, an exchange that goes away midway, one that cannot be reached, and an answer that is not
TAXII. The broker's pages hold four objects, so ten objects are three pages."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support import Broker, Party, indicator, read_all, send

pytestmark = pytest.mark.integration

BROKER_SETTINGS = {"page_size": 4, "max_page_size": 4}
OBJECTS = 10


def cutout(*args: str, party: Party, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}
    env.update(CUTOUT_URL=url, CUTOUT_PARTY=party.name, CUTOUT_TOKEN=party.token)
    return subprocess.run([sys.executable, "-m", "cutout", *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def inbox(broker: Broker) -> tuple[Party, list[dict[str, Any]]]:
    """A consumer whose inbox holds ten released objects, and those objects as the inbox lists them."""
    provider, consumer = broker.pair("Receive")
    send(broker, provider, [indicator(n) for n in range(OBJECTS)])
    got = read_all(broker, consumer)
    assert len(got) == OBJECTS
    return consumer, got


class _Relay(http.server.BaseHTTPRequestHandler):
    """Forwards the first ``server.budget`` requests to the exchange, then hangs up on every request without
    an answer: an exchange (or the network to it) that goes away between two pages."""

    server: _RelayServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.budget -= 1
            forward = self.server.budget >= 0
        if not forward:
            self.close_connection = True
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept", "host")}
        r = httpx.get(self.server.target + self.path, headers=headers, timeout=30)
        self.send_response(r.status_code)
        for k, v in r.headers.items():
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(r.content)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(r.content)

    def log_message(self, *args: Any) -> None:
        pass


class _RelayServer(http.server.ThreadingHTTPServer):
    def __init__(self, target: str, budget: int, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.target = target
        self.budget = budget
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _NotTaxii(http.server.BaseHTTPRequestHandler):
    """A web server that is not an exchange: an HTML page for every request."""

    def do_GET(self) -> None:
        body = b"<html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _serving(server: _RelayServer) -> Iterator[_RelayServer]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def relay(broker: Broker) -> Iterator[_RelayServer]:
    # discovery, the collections and two pages reach the exchange; the third page finds it gone
    yield from _serving(_RelayServer(broker.url, 4, _Relay))


@pytest.fixture
def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _bundle(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text("utf-8"))
    assert doc["type"] == "bundle" and doc["id"].startswith("bundle--")
    objects: list[dict[str, Any]] = doc["objects"]
    return objects


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_every_page_reaches_the_bundle_and_the_output(
    broker: Broker, inbox: tuple[Party, list[dict[str, Any]]], tmp_path: Path
) -> None:
    consumer, expected = inbox
    out = tmp_path / "inbox.json"
    got = cutout("receive", "--out", str(out), "--json", party=consumer, url=broker.url)
    assert got.returncode == 0, got.stderr
    doc = json.loads(got.stdout)
    assert doc["objects"] == expected  # every page, in the inbox's order, byte for byte the same JSON values
    assert doc["count"] == OBJECTS
    assert "error" not in doc
    assert _bundle(out) == expected
    assert _leftovers(tmp_path) == []

    human = cutout("receive", party=consumer, url=broker.url)
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == [o["id"] for o in expected]
    assert lines[-1] == f"{OBJECTS} objects; next time use --added-after {doc['last']}"

    again = cutout("receive", "--added-after", doc["last"], "--json", party=consumer, url=broker.url)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"objects": [], "last": doc["last"], "count": 0}


def test_an_exchange_gone_midway_leaves_what_came_and_where_to_carry_on(
    broker: Broker, inbox: tuple[Party, list[dict[str, Any]]], relay: _RelayServer, tmp_path: Path
) -> None:
    consumer, expected = inbox
    out = tmp_path / "inbox.json"
    cut = cutout("receive", "--out", str(out), party=consumer, url=relay.url)
    assert cut.returncode == 1
    assert "Traceback" not in cut.stderr
    assert f"cannot reach the exchange at {relay.url}" in cut.stderr
    # the two pages that came are in the bundle, which is whole JSON, and nothing half-written is left beside it
    first = _bundle(out)
    assert first == expected[:8]
    assert _leftovers(tmp_path) == []
    assert [line.split()[1] for line in cut.stdout.splitlines()] == [o["id"] for o in first]
    resume = cut.stderr.rsplit("--added-after ", 1)[1].strip()
    assert f"received 8 objects (in {out}) before it" in cut.stderr

    # carrying on from there gives exactly the rest: no gap, no repeat
    rest = cutout("receive", "--added-after", resume, "--json", party=consumer, url=broker.url)
    assert rest.returncode == 0, rest.stderr
    assert first + json.loads(rest.stdout)["objects"] == expected


def test_cut_off_midway_the_json_output_is_still_one_document(
    broker: Broker, inbox: tuple[Party, list[dict[str, Any]]], relay: _RelayServer
) -> None:
    consumer, expected = inbox
    cut = cutout("receive", "--json", party=consumer, url=relay.url)
    assert cut.returncode == 1
    doc = json.loads(cut.stdout)
    assert doc["objects"] == expected[:8]
    assert doc["count"] == 8
    assert doc["error"]["code"] == "exchange-unreachable"
    rest = cutout("receive", "--added-after", doc["last"], "--json", party=consumer, url=broker.url)
    assert json.loads(rest.stdout)["objects"] == expected[8:]


def test_a_refused_receive_leaves_an_existing_bundle_as_it_was(
    broker: Broker, inbox: tuple[Party, list[dict[str, Any]]], tmp_path: Path
) -> None:
    consumer, _ = inbox
    out = tmp_path / "inbox.json"
    out.write_text("yesterday's bundle")
    wrong = cutout("receive", "--out", str(out), party=Party(consumer.name, "ct_wrong"), url=broker.url)
    assert wrong.returncode == 1
    assert "unknown or revoked credentials" in wrong.stderr
    assert out.read_text() == "yesterday's bundle"
    assert _leftovers(tmp_path) == []

    nowhere = cutout("receive", "--out", str(tmp_path / "no" / "such" / "inbox.json"), party=consumer, url=broker.url)
    assert nowhere.returncode == 1
    assert "Traceback" not in nowhere.stderr
    assert f"error: cannot write {tmp_path / 'no' / 'such' / 'inbox.json'}: No such file or directory" in nowhere.stderr


def test_an_exchange_that_cannot_be_reached_is_an_error_not_a_traceback(
    inbox: tuple[Party, list[dict[str, Any]]], closed_port: str, tmp_path: Path
) -> None:
    consumer, _ = inbox
    out = tmp_path / "inbox.json"
    got = cutout("receive", "--out", str(out), party=consumer, url=closed_port)
    assert got.returncode == 1
    assert "Traceback" not in got.stderr
    assert got.stderr.startswith(f"error: cannot reach the exchange at {closed_port} (ConnectError")
    assert not out.exists() and _leftovers(tmp_path) == []

    as_json = cutout("receive", "--json", party=consumer, url=closed_port)
    assert json.loads(as_json.stdout)["error"]["code"] == "exchange-unreachable"

    report = tmp_path / "report.json"
    report.write_text(json.dumps(indicator(1)))
    sent = cutout("send", str(report), party=consumer, url=closed_port)
    assert sent.returncode == 1
    assert "Traceback" not in sent.stderr
    assert "cannot reach the exchange" in sent.stderr


def test_a_web_server_that_is_not_an_exchange_is_named_as_such(
    inbox: tuple[Party, list[dict[str, Any]]],
) -> None:
    consumer, _ = inbox
    for server in _serving(_RelayServer("", 0, _NotTaxii)):
        got = cutout("receive", party=consumer, url=server.url)
        assert got.returncode == 1
        assert "Traceback" not in got.stderr
        assert "is not TAXII JSON (HTTP 200, text/html)" in got.stderr
        assert "is this the exchange's URL?" in got.stderr
