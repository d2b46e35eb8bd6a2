"""Fixtures of the integration tests: one broker per test module, served by a real ``cutout serve``.

A module may set ``BROKER_SETTINGS`` (written to the broker's cutout.toml, so the library and the server
agree) and ``BROKER_ENV`` (extra environment of the server process).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cutout.demo.server import start_server

from .support import Broker, make_broker


@pytest.fixture(scope="module")
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    data_dir = tmp_path_factory.mktemp("broker")
    b = make_broker(data_dir, getattr(request.module, "BROKER_SETTINGS", None))
    b.server = start_server(data_dir, extra_env=getattr(request.module, "BROKER_ENV", None))
    try:
        yield b
    finally:
        b.server.stop()
    b.check_log()
