"""One typed, validated settings object, built once and passed in.

Sources, later ones winning: the defaults below, ``DATA/cutout.toml`` (a ``[cutout]`` table), ``CUTOUT_*``
environment variables, then explicit overrides (command-line options). Nothing is read at import time.
Every field is documented in docs/configuration.md (a test checks that).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutout.errors import ConfigError
from cutout.model.tlp import parse_tlp

__all__ = ["CLIENT_ENV", "SQLITE_PAGE_SIZE", "Settings", "is_page_size", "load_settings"]

#: environment variables of the party-side client (``cutout send``/``receive``), not broker settings
CLIENT_ENV = frozenset({"CUTOUT_URL", "CUTOUT_PARTY", "CUTOUT_TOKEN", "CUTOUT_DATA"})

#: the page size of a SQLite database the broker creates, unless set: copies of STIX objects are rows of
#: 1-2 KB, of which a 4 KiB page (SQLite's default) holds two with up to a third of the page unused, and an 8
#: KiB page about 88% full (docs/benchmarks.md, "The eighth round"). A commit writes each page it changed
#: whole, and a small one changes about 14 pages whatever their size: a one-object submission took 0.80-0.82
#: ms in process with 8 KiB pages against 0.90-1.03 ms with 16 KiB, which fill a page better and stored
#: 1,000-object envelopes and fan-out copies 4-6% faster ("The twenty-seventh round")
SQLITE_PAGE_SIZE = 8192


def is_page_size(size: int) -> bool:
    """Whether SQLite takes ``size`` as a page size: a power of two from 512 to 65536."""
    return 512 <= size <= 65536 and size & (size - 1) == 0


@dataclass(frozen=True)
class Settings:
    """Everything a broker node needs to know; see docs/configuration.md."""

    #: the broker's folder: database (SQLite), secret keys, optional cutout.toml
    data_dir: Path = field(default_factory=lambda: Path("cutout-data"))
    #: SQLAlchemy URL of the store; empty means SQLite in data_dir/cutout.db
    database_url: str = ""
    #: address and port ``cutout serve`` listens on
    host: str = "127.0.0.1"
    port: int = 8700
    #: the one API root's path segment (``/<api_root>/``)
    api_root: str = "exchange"
    #: largest request body accepted, in bytes (TAXII ``max_content_length``)
    max_content_length: int = 10 * 1024 * 1024
    #: objects per page when a client gives no ``limit``, and the most it may ask for
    page_size: int = 1000
    max_page_size: int = 10_000
    #: the TLP level an object without a TLP marking is treated as (clear, green, amber, amber+strict, red)
    unmarked_tlp: str = "red"
    #: released copies' ``created``/``modified`` are the release time rounded down to this many seconds
    release_granularity: int = 60
    #: operational timestamps (first_seen, valid_from, ...) are coarsened to this many seconds
    time_granularity: int = 60
    #: feedback towards providers waits at least this many seconds before release
    feedback_delay: int = 0
    #: feedback and requests for information are released in batches, at multiples of this many seconds
    #: (never one by one as they come: an automatic per-item receipt links the parties by its timing)
    feedback_epoch: int = 3600
    #: whether consumers see the providers' source reliability: always, never, or shared (only while at least
    #: grade_crowd active providers hold the same grade)
    grade_visibility: str = "shared"
    grade_crowd: int = 3
    #: how often (seconds) a node looks for held items whose release time has come
    scheduler_interval: float = 1.0
    #: a running node signs a checkpoint of the audit log this often (seconds) when it has grown; 0: only on demand
    audit_checkpoint_interval: int = 3600
    #: after this many days the salts (and events) of old audit entries are destroyed; 0 keeps them for ever
    audit_retention_days: int = 0
    #: SQLite durability: FULL makes every acknowledged submission survive power loss
    sqlite_synchronous: str = "FULL"
    #: bytes per page of a SQLite database this broker creates (a power of two, 512-65536); fixed once the
    #: database exists (``cutout db repack`` rewrites it with this size)
    sqlite_page_size: int = SQLITE_PAGE_SIZE
    #: how long (seconds) a request waits for a lock on the database (SQLite's one writer, PostgreSQL's locks)
    #: before it is answered 503 store-unavailable; a large envelope also waits up to this long for the checking
    #: process while another envelope uses it, and is then validated in the serving process instead
    lock_timeout: float = 30.0
    #: the exchange's label vocabulary, comma-separated: a label equal to one of them (after NFKC and case
    #: folding) is released as written here; every other label is dropped unless an agreement allows "labels"
    label_vocabulary: str = ""
    #: ``cutout serve`` validates an envelope of 8 objects or more, and its copies, in a second process on the
    #: machine's other core while it stores them, and makes a provider's copies there ahead of the transaction
    #: (an invalid object or copy sends the whole envelope back through the validation in process); false:
    #: everything is validated and sanitized in line
    check_process: bool = True

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cutout.db').resolve()}"

    @property
    def labels(self) -> tuple[str, ...]:
        """The label vocabulary as a tuple."""
        return tuple(lab.strip() for lab in self.label_vocabulary.split(",") if lab.strip())

    @property
    def unmarked_level(self) -> int:
        return parse_tlp(self.unmarked_tlp)

    def validate(self) -> Settings:
        """Check ranges and values; raise ConfigError naming the setting."""
        problems: list[str] = []
        if not (0 < self.port < 65536):
            problems.append(f"port must be 1-65535, not {self.port}")
        if not self.api_root or not all(c.isalnum() or c in "-_" for c in self.api_root):
            problems.append(f"api_root must be a non-empty path segment of letters, digits, - or _: {self.api_root!r}")
        if self.api_root == "taxii2":
            problems.append("api_root must not be 'taxii2' (that is the discovery path)")
        if self.max_content_length < 1024:
            problems.append("max_content_length must be at least 1024 bytes")
        if not (1 <= self.page_size <= self.max_page_size):
            problems.append("page_size must be between 1 and max_page_size")
        try:
            parse_tlp(self.unmarked_tlp)
        except ValueError as exc:
            problems.append(f"unmarked_tlp: {exc}")
        for name in (
            "release_granularity",
            "time_granularity",
            "feedback_delay",
            "audit_checkpoint_interval",
            "audit_retention_days",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        if self.feedback_epoch <= 0:
            problems.append("feedback_epoch must be positive: feedback is always released in batches")
        if self.grade_visibility not in {"always", "never", "shared"}:
            problems.append("grade_visibility must be always, never or shared")
        if self.grade_crowd < 1:
            problems.append("grade_crowd must be at least 1")
        if self.scheduler_interval <= 0:
            problems.append("scheduler_interval must be positive")
        if not (0 < self.lock_timeout <= 3600):
            problems.append("lock_timeout must be more than 0 and at most 3600 seconds")
        if self.sqlite_synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
            problems.append("sqlite_synchronous must be FULL, EXTRA or NORMAL")
        if not is_page_size(self.sqlite_page_size):
            problems.append(f"sqlite_page_size must be a power of two from 512 to 65536, not {self.sqlite_page_size}")
        if self.database_url and not self.database_url.startswith(("sqlite:", "postgresql")):
            problems.append("database_url must be a sqlite:/// or postgresql:// URL")
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["data_dir"] = str(self.data_dir)
        if "@" in self.database_url:  # never print a password
            scheme, _, rest = self.database_url.partition("://")
            out["database_url"] = f"{scheme}://***@{rest.rpartition('@')[2]}"
        return out


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, raw: Any) -> Any:
    kind = type(getattr(Settings(), name))
    try:
        if kind is Path:
            return Path(str(raw))
        if kind is bool:
            return raw if isinstance(raw, bool) else str(raw).lower() in {"1", "true", "yes", "on"}
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: expected {kind.__name__}, got {raw!r}") from exc


def load_settings(
    data_dir: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build and validate the settings: defaults < cutout.toml < CUTOUT_* environment < overrides."""
    env = os.environ if environ is None else environ
    if data_dir is None:
        data_dir = env.get("CUTOUT_DATA") or "cutout-data"
    values: dict[str, Any] = {"data_dir": Path(data_dir)}
    conf = Path(data_dir) / "cutout.toml"
    if conf.is_file():
        try:
            table = tomllib.loads(conf.read_text("utf-8")).get("cutout", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{conf}: {exc}") from exc
        for key, raw in table.items():
            if key not in _FIELDS or key == "data_dir":
                raise ConfigError(f"{conf}: unknown setting {key!r}")
            values[key] = _coerce(key, raw)
    for key, raw in env.items():
        if not key.startswith("CUTOUT_") or key in CLIENT_ENV or key.startswith("CUTOUT_TEST_"):
            continue
        name = key[len("CUTOUT_") :].lower()
        if name not in _FIELDS:
            raise ConfigError(f"unknown environment setting {key}")
        values[name] = _coerce(name, raw)
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, raw)
    return Settings(**values).validate()
