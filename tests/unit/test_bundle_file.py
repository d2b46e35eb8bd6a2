"""``cutout.client.BundleFile``: the bundle ``cutout receive --out`` writes page by page."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from cutout.client import BundleFile


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".partial")]


def test_a_closed_bundle_is_one_json_document_in_the_order_added(tmp_path: Path) -> None:
    out = tmp_path / "inbox.json"
    bundle = BundleFile(out)
    pages = [[{"type": "note", "id": f"note--{n}", "content": "a\nb \u00e9"} for n in range(k, k + 3)] for k in (0, 3)]
    for page in pages:
        bundle.add(page)
    bundle.add([])
    bundle.close()
    doc = json.loads(out.read_text("utf-8"))
    assert doc["type"] == "bundle" and doc["id"].startswith("bundle--")
    assert doc["objects"] == pages[0] + pages[1]
    assert bundle.count == 6
    assert len(out.read_text("utf-8").splitlines()) == 6 + 2  # one object per line
    assert _partials(tmp_path) == []


def test_an_empty_bundle_is_valid(tmp_path: Path) -> None:
    out = tmp_path / "inbox.json"
    bundle = BundleFile(out)
    bundle.close()
    assert json.loads(out.read_text("utf-8"))["objects"] == []


def test_the_file_is_replaced_only_when_the_bundle_is_closed(tmp_path: Path) -> None:
    out = tmp_path / "inbox.json"
    out.write_text("yesterday")
    bundle = BundleFile(out)
    bundle.add([{"type": "note", "id": "note--1"}])
    assert out.read_text() == "yesterday"  # meanwhile, as if this process were killed here
    assert len(_partials(tmp_path)) == 1
    bundle.discard()
    assert out.read_text() == "yesterday"
    assert _partials(tmp_path) == []

    bundle = BundleFile(out)
    bundle.add([{"type": "note", "id": "note--2"}])
    bundle.close()
    assert json.loads(out.read_text())["objects"] == [{"type": "note", "id": "note--2"}]


def test_the_file_has_the_mode_the_umask_gives(tmp_path: Path) -> None:
    before = os.umask(0o027)
    try:
        bundle = BundleFile(tmp_path / "inbox.json")
        bundle.close()
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "inbox.json").stat().st_mode) == 0o640
