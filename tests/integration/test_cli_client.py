"""`cutout demo`, `cutout serve`, `cutout send` and `cutout receive` as a user runs them: real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cutout.demo.run import find_canaries
from cutout.demo.server import start_server

pytestmark = pytest.mark.integration


def cutout(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}
    return subprocess.run(
        [sys.executable, "-m", "cutout", *args],
        env={**base, **(env or {})},
        input=stdin.decode() if stdin else None,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_passes_and_reports_json() -> None:
    done = cutout("demo", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert all(report["checks"].values())
    assert report["outsider_received"] == []
    assert len(report["provider_received"]) == 2


def test_the_leak_check_finds_what_it_looks_for() -> None:
    transcript = [b"HTTP 200\r\nX-Thing: Northern Watch\r\n\r\n{}", b'{"name": "\xef\xbd\x8eorthern"}']
    assert find_canaries(transcript, ["northern watch", "absent"]) == ["northern watch"]


def test_send_and_receive_through_a_real_server(tmp_path: Path) -> None:
    data = tmp_path / "broker"
    assert cutout("init", "--data", str(data)).returncode == 0
    prov = json.loads(cutout("party", "add", "Bank A", "--provider", "--data", str(data), "--json").stdout)
    cons = json.loads(cutout("party", "add", "CERT", "--consumer", "--data", str(data), "--json").stdout)
    agreement = cutout("agreement", "add", "--from", "Bank A", "--to", "CERT", "--data", str(data))
    assert agreement.returncode == 0, agreement.stderr
    assert cutout("config", "check", "--data", str(data)).returncode == 0
    server = start_server(data)
    try:
        bundle = {
            "type": "bundle",
            "id": "bundle--5d0f6a32-9d54-4d8e-9f3e-2a1b3c4d5e6f",
            "objects": [
                {
                    "type": "indicator",
                    "spec_version": "2.1",
                    "id": "indicator--7d0f6a32-9d54-4d8e-9f3e-2a1b3c4d5e61",
                    "created": "2026-11-20T05:00:00.000Z",
                    "modified": "2026-11-20T05:00:00.000Z",
                    "name": "C2 seen by Bank A",
                    "pattern": "[ipv4-addr:value = '198.51.100.9']",
                    "pattern_type": "stix",
                    "valid_from": "2026-11-20T05:00:00.000Z",
                    "object_marking_refs": ["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"],
                }
            ],
        }
        path = tmp_path / "bundle.json"
        path.write_text(json.dumps(bundle))
        as_provider = {"CUTOUT_URL": server.url, "CUTOUT_PARTY": "Bank A", "CUTOUT_TOKEN": prov["token"]}
        sent = cutout("send", str(path), "--json", env=as_provider)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["success_count"] == 1
        # one object on stdin works too, and an invalid one is refused with its reason
        bad = dict(bundle["objects"][0], pattern="not a pattern")  # type: ignore[arg-type]
        refused = cutout("send", "-", env=as_provider, stdin=json.dumps(bad).encode())
        assert refused.returncode == 1
        assert "pattern" in refused.stderr

        out = tmp_path / "inbox.json"
        got = cutout(
            "receive", "--url", server.url, "--party", "CERT", "--token", cons["token"], "--out", str(out), "--json"
        )
        assert got.returncode == 0, got.stderr
        received = json.loads(got.stdout)
        assert len(received["objects"]) == 1
        assert received["objects"][0]["name"] == "C2 seen by [REDACTED]"
        assert json.loads(out.read_text())["objects"] == received["objects"]
        again = cutout(
            "receive", "--url", server.url, "--party", "CERT", "--token", cons["token"],
            "--added-after", received["last"], "--json",
        )  # fmt: skip
        assert json.loads(again.stdout)["objects"] == []
        wrong = cutout("receive", "--url", server.url, "--party", "CERT", "--token", "ct_wrong")
        assert wrong.returncode == 1
        assert "unknown or revoked credentials" in wrong.stderr
    finally:
        server.stop()


def test_send_cuts_a_file_over_the_size_limit_into_envelopes(tmp_path: Path) -> None:
    """A file larger than the exchange's max_content_length goes as several envelopes, each object after what it
    refers to, so every sighting's copy still names its indicator; an invalid object stops it before any is sent."""
    data = tmp_path / "broker"
    assert cutout("init", "--data", str(data)).returncode == 0
    prov = json.loads(cutout("party", "add", "Bank A", "--provider", "--data", str(data), "--json").stdout)
    cons = json.loads(cutout("party", "add", "CERT", "--consumer", "--data", str(data), "--json").stdout)
    assert cutout("agreement", "add", "--from", "Bank A", "--to", "CERT", "--data", str(data)).returncode == 0
    server = start_server(data, extra_env={"CUTOUT_MAX_CONTENT_LENGTH": "4096"})
    green = ["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"]
    at = "2026-11-20T05:00:00.000Z"
    indicators = [
        {
            "type": "indicator", "spec_version": "2.1", "id": f"indicator--7d0f6a32-9d54-4d8e-9f3e-2a1b3c4d{n:04d}",
            "created": at, "modified": at, "name": f"C2 server {n}", "pattern": f"[ipv4-addr:value = '198.51.100.{n}']",
            "pattern_type": "stix", "valid_from": at, "object_marking_refs": green,
        }
        for n in range(12)
    ]  # fmt: skip
    sightings = [
        {
            "type": "sighting", "spec_version": "2.1", "id": f"sighting--8d0f6a32-9d54-4d8e-9f3e-2a1b3c4d{n:04d}",
            "created": at, "modified": at, "sighting_of_ref": indicator["id"], "count": n + 1,
            "object_marking_refs": green,
        }
        for n, indicator in enumerate(indicators)
    ]  # fmt: skip
    objects = sightings + indicators  # each sighting before what it names: sent as is, its copy could not name it
    path = tmp_path / "bundle.json"
    path.write_text(
        json.dumps({"type": "bundle", "id": "bundle--5d0f6a32-9d54-4d8e-9f3e-2a1b3c4d5e6f", "objects": objects})
    )
    assert path.stat().st_size > 4096
    as_provider = {"CUTOUT_URL": server.url, "CUTOUT_PARTY": "Bank A", "CUTOUT_TOKEN": prov["token"]}
    as_consumer = ["--url", server.url, "--party", "CERT", "--token", cons["token"], "--json"]
    try:
        # an invalid object, last in the file: refused before anything is sent
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps([*objects, dict(indicators[0], id=indicators[0]["id"][:-4] + "beef", pattern="no")]))
        refused = cutout("send", str(bad), "--json", env=as_provider)
        assert refused.returncode == 1
        error = json.loads(refused.stdout)["error"]
        assert error["message"] == "1 of 25 objects are not valid STIX 2.1; nothing was sent"
        assert [p["index"] for p in error["problems"]] == [24]
        assert json.loads(cutout("receive", *as_consumer).stdout)["objects"] == []

        sent = cutout("send", str(path), "--json", env=as_provider)
        assert sent.returncode == 0, sent.stderr
        status = json.loads(sent.stdout)
        assert status["envelopes"] > 1 and len(status["statuses"]) == status["envelopes"]
        assert (status["total_count"], status["success_count"], status["status"]) == (24, 24, "complete")
        assert sorted(s["id"] for s in status["successes"]) == sorted(o["id"] for o in objects)
        human = cutout("send", str(path), "--per", "5", env=as_provider)  # again: each object is stored once
        assert human.returncode == 0, human.stderr
        assert human.stdout.strip() == "accepted 24 of 24 objects in 5 envelopes"

        received = json.loads(cutout("receive", *as_consumer).stdout)["objects"]
        got_indicators = [o for o in received if o["type"] == "indicator"]
        got_sightings = [o for o in received if o["type"] == "sighting"]
        assert len(got_indicators) == 12 and len(got_sightings) == 12
        # every sighting names an indicator the consumer has, each a different one
        assert {o["sighting_of_ref"] for o in got_sightings} == {o["id"] for o in got_indicators}
    finally:
        server.stop()
