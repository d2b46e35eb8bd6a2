"""The broker's secret keys, kept in ``DATA/keys.json`` (mode 0600), never in the database."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from cutout.errors import ConfigError, NotInitialised

__all__ = ["Keys"]

KEYS_FILE = "keys.json"


@dataclass(frozen=True)
class Keys:
    #: HMAC key that mints every reader's ids
    id_key: bytes
    #: AES-GCM key that seals pagination cursors
    cursor_key: bytes
    #: Ed25519 private key (raw 32 bytes) the broker signs with
    signing_key: bytes

    @classmethod
    def generate(cls) -> Keys:
        signing = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(id_key=os.urandom(32), cursor_key=os.urandom(32), signing_key=signing)

    def save(self, data_dir: Path) -> None:
        path = data_dir / KEYS_FILE
        payload = {
            "id_key": base64.b64encode(self.id_key).decode(),
            "cursor_key": base64.b64encode(self.cursor_key).decode(),
            "signing_key": base64.b64encode(self.signing_key).decode(),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())

    @classmethod
    def load(cls, data_dir: Path) -> Keys:
        path = data_dir / KEYS_FILE
        if not path.is_file():
            raise NotInitialised(f"no broker keys at {path}; run 'cutout init' first")
        try:
            raw = json.loads(path.read_text("utf-8"))
            keys = cls(
                id_key=base64.b64decode(raw["id_key"]),
                cursor_key=base64.b64decode(raw["cursor_key"]),
                signing_key=base64.b64decode(raw["signing_key"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not a valid keys file: {exc}") from exc
        if len(keys.id_key) != 32 or len(keys.cursor_key) != 32 or len(keys.signing_key) != 32:
            raise ConfigError(f"{path}: every key must be 32 bytes")
        return keys
