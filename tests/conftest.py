"""Shared fixtures: a fresh broker on SQLite in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cutout.service import Exchange
from cutout.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path / "broker", environ={})


@pytest.fixture
def exchange(settings: Settings) -> Iterator[Exchange]:
    Exchange.init(settings, "test exchange")
    ex = Exchange.open(settings)
    yield ex
    ex.close()
