"""A TAXII server that does nothing: the floor under the latency measurement.

Run as ``python -m bench.stub PORT``: uvicorn with the settings ``cutout serve`` uses, and a bare ASGI app
that answers a collection resource, any POST with a complete one-object status and any GET of objects with
a one-object envelope, without looking at the request. ``measure.latency`` against it times only what
every sample pays whatever the server does: taxii2-client, requests, HTTP on loopback and uvicorn.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import uvicorn

from cutout.api.serving import server_config

_MEDIA = b"application/taxii+json;version=2.1"
_OBJECT = {
    "type": "indicator",
    "spec_version": "2.1",
    "id": "indicator--00000000-0000-4000-8000-000000000001",
    "created": "2026-01-01T00:00:00.000Z",
    "modified": "2026-01-01T00:00:00.000Z",
    "pattern": "[ipv4-addr:value = '198.51.100.7']",
    "pattern_type": "stix",
    "valid_from": "2026-01-01T00:00:00.000Z",
}
_COLLECTION = orjson.dumps(
    {
        "id": "00000000-0000-4000-8000-000000000000",
        "title": "stub",
        "can_read": True,
        "can_write": True,
        "media_types": ["application/stix+json;version=2.1"],
    }
)
_STATUS = orjson.dumps(
    {
        "id": "00000000-0000-4000-8000-000000000002",
        "status": "complete",
        "request_timestamp": "2026-01-01T00:00:00.000000Z",
        "total_count": 1,
        "success_count": 1,
        "successes": [{"id": _OBJECT["id"], "version": _OBJECT["modified"]}],
        "failure_count": 0,
        "pending_count": 0,
    }
)
_ENVELOPE = orjson.dumps({"more": False, "objects": [_OBJECT]})
_HEADERS = [
    (b"content-type", _MEDIA),
    (b"x-taxii-date-added-first", b"2026-01-01T00:00:00.000000Z"),
    (b"x-taxii-date-added-last", b"2026-01-01T00:00:00.000000Z"),
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the body (and ignore it)
        message = await receive()
        more = message.get("more_body", False)
    if scope["method"] == "POST":
        status, body = 202, _STATUS
    elif scope["path"].rstrip("/").endswith("/objects"):
        status, body = 200, _ENVELOPE
    else:
        status, body = 200, _COLLECTION
    headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    uvicorn.Server(server_config(app, "127.0.0.1", int(sys.argv[1]), lifespan="off")).run()


if __name__ == "__main__":
    main()
