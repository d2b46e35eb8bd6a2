"""The one TAXII error envelope (§3.6.1), built in one place; statuses are chosen here, not in the domain."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from cutout.errors import (
    AuthError,
    BadRequest,
    Conflict,
    CutoutError,
    Forbidden,
    InvalidContent,
    NotAcceptable,
    NotFound,
    StoreUnavailable,
    TooLarge,
    UnsupportedMediaType,
)

__all__ = ["RETRY_AFTER", "TAXII_MEDIA", "error_body", "error_response", "status_for"]

TAXII_MEDIA = "application/taxii+json;version=2.1"

_STATUS: tuple[tuple[type[CutoutError], int], ...] = (
    (AuthError, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (NotAcceptable, 406),
    (Conflict, 409),
    (TooLarge, 413),
    (UnsupportedMediaType, 415),
    (InvalidContent, 422),
    (BadRequest, 400),
    (StoreUnavailable, 503),
)
#: seconds a client is asked to wait before retrying after a 503 (a PostgreSQL restart takes a few)
RETRY_AFTER = 2


def status_for(exc: CutoutError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(status: int, title: str, description: str, code: str, details: dict[str, Any] | None = None) -> bytes:
    """The TAXII error message resource: title, description, error_code, http_status, details."""
    body: dict[str, Any] = {
        "title": title,
        "description": description,
        "error_code": code,
        "http_status": str(status),
    }
    if details:
        body["details"] = details
    return orjson.dumps(body)


def error_response(exc: CutoutError) -> Response:
    status = status_for(exc)
    if status == 500:  # an internal fault: say nothing of it to the client
        return Response(
            error_body(500, "Internal error", "the exchange could not complete the request", "internal"),
            status_code=500,
            media_type=TAXII_MEDIA,
        )
    details = None
    if isinstance(exc, InvalidContent) and exc.problems:
        details = {"problems": [p.as_dict() for p in exc.problems]}
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": 'Basic realm="cutout", Bearer realm="cutout"'}
    elif status == 503:
        headers = {"Retry-After": str(RETRY_AFTER)}
    return Response(
        error_body(status, exc.title, exc.message, exc.code, details),
        status_code=status,
        media_type=TAXII_MEDIA,
        headers=headers,
    )
