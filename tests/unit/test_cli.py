"""The operator CLI in process (click's runner) over a real SQLite broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cutout.cli.main import main


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for key in ("CUTOUT_DATA", "CUTOUT_URL", "CUTOUT_PARTY", "CUTOUT_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CUTOUT_DATA", str(tmp_path / "broker"))
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    return invoke


def test_init_party_agreement_round(run) -> None:  # type: ignore[no-untyped-def]
    code, out = run("init", "--name", "Test Exchange", "--json")
    assert code == 0
    assert json.loads(out)["identity"]["name"] == "Test Exchange"
    code, out = run("init")
    assert code == 1 and "already exists" in out

    code, out = run("party", "add", "Bank A", "--provider", "--json")
    assert code == 0
    added = json.loads(out)
    assert added["token"].startswith("ct_") and added["party"]["roles"] == ["provider"]
    code, out = run("party", "add", "CERT", "--consumer")
    assert code == 0 and "token: ct_" in out
    code, out = run("party", "add", "CERT", "--consumer")
    assert code == 1 and "already exists" in out
    code, out = run("party", "add", "Nobody")
    assert code == 1 and "provider, a consumer, or both" in out

    code, out = run(
        "agreement", "add", "--from", "Bank A", "--to", "CERT", "--types", "indicator,sighting",
        "--tlp-max", "green", "--area", "30,44,36,48", "--delay", "60", "--json",
    )  # fmt: skip
    assert code == 0
    agreement = json.loads(out)["agreement"]
    assert agreement["types"] == ["indicator", "sighting"] and agreement["tlp_max"] == "green"
    code, out = run("agreement", "add", "--from", "CERT", "--to", "Bank A")
    assert code == 1 and "not an active provider" in out
    code, out = run("agreement", "add", "--from", "Bank A", "--to", "CERT", "--types", "identity")
    assert code == 1 and "never released" in out
    code, out = run("agreement", "add", "--from", "Bank A", "--to", "CERT", "--types", "x-made-up")
    assert code == 1 and "unknown STIX type" in out
    code, out = run("agreement", "add", "--from", "Bank A", "--to", "CERT", "--area", "1,2,3")
    assert code == 1 and "four numbers" in out
    code, out = run("agreement", "add", "--from", "Bank A", "--to", "CERT", "--allow", "x_acme_field")
    assert code == 1 and "unknown sanitizing option(s): x_acme_field" in out
    add = ("agreement", "add", "--from", "Bank A", "--to", "CERT")
    code, out = run(*add, "--allow", "artifact,lang", "--allow", "labels", "--json")
    assert code == 0 and json.loads(out)["agreement"]["allow"] == ["artifact", "labels", "lang"]
    code, out = run("agreement", "list")
    assert "also allows artifact, labels, lang" in out
    code, out = run("agreement", "end", str(json.loads(run("agreement", "list", "--json")[1])["agreements"][-1]["id"]))
    assert code == 0
    code, out = run("agreement", "options", "--json")
    options = {o["name"]: o for o in json.loads(out)["options"]}
    assert options["artifact"]["releases_types"] == ["artifact"] and options["artifact"]["risk"]
    assert "identity" not in options

    code, out = run("agreement", "list")
    assert code == 0 and "Bank A -> CERT" in out
    code, out = run("agreement", "end", str(agreement["id"]))
    assert code == 0
    code, out = run("agreement", "list", "--json")
    assert json.loads(out)["agreements"] == []
    code, out = run("agreement", "list", "--all", "--json")
    assert json.loads(out)["agreements"][0]["ended"] is not None

    code, out = run("party", "terms", "Bank A", "--add", "Project Heron", "--add", "198.51.100.0/24", "--json")
    assert code == 0
    assert json.loads(out)["terms"] == ["198.51.100.0/24", "Project Heron"]
    code, out = run("party", "terms", "Bank A", "--add", "10.0.0.0/99")
    assert code == 1
    assert "not an address range" in out
    code, out = run("party", "terms", "Bank A", "--remove", "Project Heron")
    assert out.strip() == "198.51.100.0/24"

    code, out = run("party", "rotate", "Bank A", "--json")
    assert code == 0 and json.loads(out)["token"] != added["token"]
    code, out = run("party", "revoke", "Bank A")
    assert code == 0
    code, out = run("party", "list", "--json")
    revoked = {p["name"]: p["revoked"] for p in json.loads(out)["parties"]}
    assert revoked["Bank A"] is not None and revoked["CERT"] is None


def test_config_check(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out = run("config", "check")
    assert code == 1 and "cutout init" in out
    run("init")
    code, out = run("config", "check", "--json")
    assert code == 0 and json.loads(out)["ok"] is True and json.loads(out)["notes"] == []
    assert run("db", "repack", "--page-size", "4096")[0] == 0  # as a database made before the setting
    code, out = run("config", "check")
    assert code == 0 and "note: the database has pages of 4096 bytes, not sqlite_page_size (8192)" in out
    assert "run 'cutout db repack'" in out
    (tmp_path / "broker" / "cutout.toml").write_text("[cutout]\nport = 0\n")
    code, out = run("config", "check")
    assert code == 1 and "port must be" in out


def test_client_needs_credentials(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "x.json"
    f.write_text('[{"type": "indicator"}]')
    code, out = run("send", str(f), "--url", "http://127.0.0.1:9")
    assert code == 1 and "no credentials" in out


def test_review_commands(run) -> None:  # type: ignore[no-untyped-def]
    run("init")
    code, out = run("review", "list")
    assert code == 0
    assert out.strip() == "nothing held for review"
    code, out = run("review", "list", "--json")
    assert json.loads(out) == {"reviews": []}
    code, out = run("review", "release", "7")
    assert code == 1
    assert "no held object 7" in out
    code, out = run("review", "reject", "7", "--json")
    assert code == 1
    assert json.loads(out)["error"]["code"] == "not-found"


def test_audit_commands(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("init")
    run("party", "add", "Bank A", "--provider")
    code, out = run("audit", "verify")
    assert code == 0
    assert out.startswith("OK: 2 entries")
    code, out = run("audit", "key", "--json")
    key = json.loads(out)["verifier_key"]
    code, out = run("audit", "checkpoint")
    assert code == 0
    assert out.splitlines()[1] == "2"  # origin, size, root, blank line, signature
    receipt = tmp_path / "receipt.json"
    code, out = run("audit", "prove", "2", "--out", str(receipt))
    assert code == 0
    code, out = run("audit", "verify-receipt", str(receipt), "--key", key)
    assert code == 0
    assert "entry 2 (party-add)" in out
    receipt.write_text(receipt.read_text().replace("party-add", "party-del"))
    code, out = run("audit", "verify-receipt", str(receipt), "--key", key)
    assert code == 1
    code, out = run("audit", "prove", "99")
    assert code == 1
    assert "no audit entry 99" in out


def test_db_upgrade(run) -> None:  # type: ignore[no-untyped-def]
    code, out = run("db", "upgrade")
    assert code == 1
    assert "cutout init" in out
    run("init")
    code, out = run("db", "upgrade", "--json")
    assert code == 0
    assert json.loads(out)["from"] == json.loads(out)["to"] == json.loads(out)["head"]


def test_db_repack(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out = run("db", "repack")
    assert code == 1 and "cutout init" in out
    run("init")
    code, out = run("db", "repack")
    assert code == 0 and out.strip() == "page size 8192 is current"
    code, out = run("db", "repack", "--page-size", "16384")
    assert code == 0 and out.strip() == "repacked: page size 8192 -> 16384"
    code, out = run("db", "repack", "--page-size", "4096", "--json")
    assert code == 0 and json.loads(out) == {"page_size_before": 16384, "page_size": 4096}
    code, out = run("db", "repack", "--page-size", "3000")
    assert code == 1 and "power of two" in out
    code, out = run("party", "add", "Bank A", "--provider")  # the broker works on after it
    assert code == 0


def test_grade_commands(run) -> None:  # type: ignore[no-untyped-def]
    assert run("init", "--name", "Test Exchange")[0] == 0
    assert run("party", "add", "Bank A", "--provider")[0] == 0
    assert run("party", "add", "CERT", "--consumer")[0] == 0
    code, out = run("grade", "show", "--json")
    assert code == 0
    (g,) = json.loads(out)["grades"]
    assert (g["party"], g["grade"], g["proposed"], g["outcomes"]) == ("Bank A", "F", "F", {})
    code, out = run("grade", "set", "Bank A", "c")
    assert code == 0 and "Bank A: grade C, proposed F" in out
    code, out = run("grade", "adopt", "Bank A", "--json")
    assert code == 0 and json.loads(out)["grade"]["grade"] == "F"
    code, out = run("grade", "set", "CERT", "A")
    assert code == 1 and "only providers are graded" in out
    code, out = run("grade", "set", "Bank A", "Z")
    assert code == 1 and "a grade is one of A, B, C, D, E, F" in out
    code, out = run("grade", "show", "Nobody")
    assert code == 1 and "no provider named 'Nobody'" in out
