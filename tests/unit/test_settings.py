from __future__ import annotations

from pathlib import Path

import pytest

from cutout.errors import ConfigError
from cutout.settings import Settings, load_settings


def test_defaults(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={})
    assert s.data_dir == tmp_path
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("cutout.db")
    assert s.unmarked_level == 4
    assert s.lock_timeout == 30.0


def test_layers(tmp_path: Path) -> None:
    (tmp_path / "cutout.toml").write_text('[cutout]\nport = 9000\nunmarked_tlp = "amber"\npage_size = 10\n')
    env = {"CUTOUT_PORT": "9100", "CUTOUT_URL": "http://client-side", "CUTOUT_TEST_POSTGRES": "x"}
    s = load_settings(tmp_path, {"page_size": 20}, environ=env)
    assert (s.port, s.unmarked_tlp, s.page_size) == (9100, "amber", 20)


def test_data_dir_from_environment(tmp_path: Path) -> None:
    assert load_settings(environ={"CUTOUT_DATA": str(tmp_path)}).data_dir == tmp_path


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[cutout]\nprot = 1\n", {}, "unknown setting 'prot'"),
        ("", {"CUTOUT_UNMARKED_TPL": "red"}, "unknown environment setting CUTOUT_UNMARKED_TPL"),
        ("", {"CUTOUT_PORT": "eighty"}, "expected int"),
        ("", {"CUTOUT_PORT": "0"}, "port must be"),
        ("", {"CUTOUT_UNMARKED_TLP": "purple"}, "unknown TLP"),
        ("", {"CUTOUT_API_ROOT": "taxii2"}, "discovery"),
        ("[cutout\n", {}, "cutout.toml"),
        ("", {"CUTOUT_LOCK_TIMEOUT": "0"}, "lock_timeout must be more than 0"),
        ("", {"CUTOUT_LOCK_TIMEOUT": "7200"}, "at most 3600 seconds"),
    ],
)
def test_refuses_bad_settings(tmp_path: Path, toml: str, env: dict[str, str], message: str) -> None:
    (tmp_path / "cutout.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ=env)


def test_password_is_never_shown() -> None:
    s = Settings(database_url="postgresql://cutout:hunter2@db.example/cutout")
    assert "hunter2" not in str(s.as_dict())
