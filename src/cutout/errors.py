"""The one error tree of cutout.

Errors carry data (a message, and for invalid input the per-object problems); they never carry HTTP
status codes. The API maps each class to a TAXII error envelope in ``cutout.api.errors``; the CLI prints
the message without a traceback.

::

    CutoutError
    ├── ConfigError             settings or data directory are wrong; nothing was started
    ├── BrokerExists            ``init`` would overwrite an existing broker
    ├── NotInitialised          no broker in the data directory / database
    ├── AuthError               no credentials, or unknown / revoked ones
    ├── NotFound                the thing does not exist *for this caller* (never "exists, but not yours")
    ├── Forbidden               the caller may see the thing but not do this to it
    ├── Conflict                a party or agreement change that contradicts what is stored
    ├── BadRequest              a malformed request parameter
    ├── UnsupportedMediaType    the request body is not a TAXII/STIX 2.1 media type
    ├── NotAcceptable           the client accepts no media type we can produce
    ├── TooLarge                the request body is over ``max_content_length``
    ├── StoreUnavailable        the database cannot be reached or did not grant a lock in time; retry
    ├── Unreachable             (party client) the exchange cannot be reached or did not answer in TAXII
    │   └── WouldWait           (internal) a call that may not wait found a lock taken; nothing was done
    └── InvalidContent          the body is not a valid envelope or holds invalid STIX (``problems``)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AuthError",
    "BadRequest",
    "BrokerExists",
    "ConfigError",
    "Conflict",
    "CutoutError",
    "Forbidden",
    "InvalidContent",
    "NotAcceptable",
    "NotFound",
    "NotInitialised",
    "Problem",
    "StoreUnavailable",
    "TooLarge",
    "Unreachable",
    "UnsupportedMediaType",
    "WouldWait",
]


class CutoutError(Exception):
    """Base of every error cutout raises on purpose."""

    #: a short, stable, machine-readable code; documented in docs/errors.md
    code = "error"
    #: a short human title
    title = "Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(CutoutError):
    code = "config-invalid"
    title = "Invalid configuration"


class BrokerExists(CutoutError):
    code = "broker-exists"
    title = "A broker already exists here"


class NotInitialised(CutoutError):
    code = "not-initialised"
    title = "No broker here"


class AuthError(CutoutError):
    code = "unauthorized"
    title = "Authentication required"


class NotFound(CutoutError):
    code = "not-found"
    title = "Not found"


class Forbidden(CutoutError):
    code = "forbidden"
    title = "Forbidden"


class Conflict(CutoutError):
    code = "conflict"
    title = "Conflict"


class BadRequest(CutoutError):
    code = "bad-request"
    title = "Bad request"


class UnsupportedMediaType(CutoutError):
    code = "unsupported-media-type"
    title = "Unsupported media type"


class NotAcceptable(CutoutError):
    code = "not-acceptable"
    title = "Not acceptable"


class TooLarge(CutoutError):
    code = "too-large"
    title = "Request too large"


class StoreUnavailable(CutoutError):
    """The database is down, restarting or overloaded. Whether the request was committed is unknown (a
    connection may drop during COMMIT); resending it is safe."""

    code = "store-unavailable"
    title = "Temporarily unavailable"


class WouldWait(StoreUnavailable):
    """Inside ``Store.no_wait``: a transaction found SQLite's lock taken and gave up at once instead of waiting.
    It is raised before the call changed anything durable (see ``Store.no_wait``), so the caller runs the same
    call again where it may wait; should one ever escape, the client hears store-unavailable and resends."""


class Unreachable(CutoutError):
    """The party's own client (``cutout send`` / ``receive``) could not reach the exchange, or what answered
    was not a TAXII server: connection refused, a timeout, a dropped connection, an answer that is not JSON.
    A submission may or may not have been stored; resending it is safe (each object is stored once)."""

    code = "exchange-unreachable"
    title = "Exchange unreachable"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one object of a submitted envelope."""

    index: int
    object_id: str | None
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "id": self.object_id, "message": self.message}


class InvalidContent(CutoutError):
    code = "invalid-content"
    title = "Invalid content"

    def __init__(self, message: str, problems: tuple[Problem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems
