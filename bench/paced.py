"""A latency sample's server work in process, back to back and paced: how much of its CPU is the machine's.

``cutout serve`` spends about twice the CPU per latency sample (a one-object POST and a poll) that the same
calls cost in a loop in process. Most of the difference is not uvicorn (the do-nothing server's whole sample
costs a quarter of a millisecond) but the pause: between its two requests a server waits while its client
works, and on a shared host the same work then costs more CPU when it resumes, whatever the process did
meanwhile (docs/benchmarks.md, "The twenty-sixth round").

This measures that directly. It calls the ASGI app that ``cutout serve`` runs (``cutout.api.app.create_app``,
the exchange in process, no uvicorn, no sockets) with the requests taxii2-client sends: the provider POSTs one
indicator to its outbox, then the consumer GETs its inbox ``added_after`` a moment before. Only the CPU inside
the app's calls is counted (``time.process_time`` around each), three ways, taken in turns:

- ``back_to_back``: one call after another;
- ``sleeping``: the process sleeps ``pause`` before each request, as a server blocked on its socket does while
  its client works;
- ``spinning``: the process spins through the same pause instead (reading the clock): it never leaves the CPU,
  so what the pause costs is not the process going idle and being woken.

    python -m bench.paced                   # 300 samples a way, 3 turns, 1 ms pause
    python -m bench.paced --samples 500 --turns 5 --pause 0.002
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.workload import Workload, chunks

WAYS = ("back_to_back", "sleeping", "spinning")
#: samples first taken and not counted
WARM_UP = 20
_MEDIA = b"application/taxii+json;version=2.1"


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _headers(auth: bytes, body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers taxii2-client (requests) sends."""
    headers = [
        (b"host", b"127.0.0.1:8700"),
        (b"user-agent", b"python-requests/2.32.3"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"accept", _MEDIA),
        (b"connection", b"keep-alive"),
        (b"authorization", auth),
    ]
    if body:
        headers += [(b"content-type", _MEDIA), (b"content-length", str(len(body)).encode())]
    return headers


def paced_work(
    warm: Sequence[dict[str, Any]],
    singles: Sequence[dict[str, Any]],
    pause: float = 0.001,
    turns: int = 3,
    warm_up: int = WARM_UP,
) -> dict[str, float]:
    """Seconds of this process's CPU per sample inside the app's calls, for each of ``WAYS``, on a new exchange
    in a temporary folder (one provider, one consumer under an agreement that releases at once, ``warm``
    submitted first in envelopes of 1,000). ``singles`` are the samples' objects, never the same twice: the
    first ``warm_up`` are not counted, the rest are shared out between the ways and ``turns`` turns."""
    return asyncio.run(_paced(warm, singles, pause, turns, warm_up))


async def _paced(
    warm: Sequence[dict[str, Any]], singles: Sequence[dict[str, Any]], pause: float, turns: int, warm_up: int
) -> dict[str, float]:
    from cutout.api.app import create_app
    from cutout.model.timestamps import format_us
    from cutout.service import Exchange
    from cutout.settings import load_settings

    counted = len(singles) - warm_up
    per_part = counted // (turns * len(WAYS))
    if per_part < 1:
        raise ValueError(f"{len(singles)} objects do not make a sample for each way and turn after {warm_up}")
    with tempfile.TemporaryDirectory(prefix="bench-paced-") as tmp:
        settings = load_settings(Path(tmp) / "broker", {}, environ={})
        Exchange.init(settings, "Paced Bench")
        ex = Exchange.open(settings)
        app = None
        try:
            _, provider_token = ex.add_party("Bench Provider", provider=True, consumer=False)
            _, consumer_token = ex.add_party("Bench Consumer", provider=False, consumer=True)
            ex.add_agreement("Bench Provider", "Bench Consumer", delay=0)
            provider = ex.authenticate(None, provider_token)
            consumer = ex.authenticate(None, consumer_token)
            outbox = next(c.uuid for c in ex.collections(provider) if c.kind == "outbox")
            inbox = next(c.uuid for c in ex.collections(consumer) if c.kind == "inbox")
            for chunk in chunks(warm, 1000):
                ex.submit(provider, outbox, chunk)
            ex.warm_up()  # what the app's lifespan does before it serves
            app = create_app(settings, ex, run_scheduler=False)
            as_provider = b"Basic " + base64.b64encode(f"Bench Provider:{provider_token}".encode())
            as_consumer = b"Basic " + base64.b64encode(f"Bench Consumer:{consumer_token}".encode())
            inside = [0.0]

            async def call(method: str, path: str, query: bytes, auth: bytes, body: bytes = b"") -> list[Any]:
                scope = {
                    "type": "http",
                    "asgi": {"version": "3.0", "spec_version": "2.3"},
                    "http_version": "1.1",
                    "server": ("127.0.0.1", 8700),
                    "client": ("127.0.0.1", 50000),
                    "scheme": "http",
                    "method": method,
                    "root_path": "",
                    "path": path,
                    "raw_path": path.encode(),
                    "query_string": query,
                    "headers": _headers(auth, body),
                    "state": {},
                }
                messages: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]
                sent: list[Any] = []

                async def receive() -> dict[str, Any]:
                    return messages.pop() if messages else {"type": "http.disconnect"}

                async def send(message: Any) -> None:
                    sent.append(message)

                start = time.process_time()
                await app(scope, receive, send)
                inside[0] += time.process_time() - start
                return sent

            async def sample(obj: dict[str, Any], wait: Callable[[float], None] | None) -> None:
                after = format_us(int(time.time() * 1_000_000) - 1).encode()
                if wait:
                    wait(pause)
                posted = await call(
                    "POST",
                    f"/{settings.api_root}/collections/{outbox}/objects/",
                    b"",
                    as_provider,
                    orjson.dumps({"objects": [obj]}),
                )
                if posted[0]["status"] != 202 or b'"success_count":1' not in posted[1]["body"]:
                    raise RuntimeError(f"the app refused a one-object envelope: {posted[1]['body'][:200]!r}")
                if wait:
                    wait(pause)
                got = await call(
                    "GET",
                    f"/{settings.api_root}/collections/{inbox}/objects/",
                    b"added_after=" + after,
                    as_consumer,
                )
                if got[0]["status"] != 200 or got[1]["body"].count(b'"id":"indicator--') != 1:
                    raise RuntimeError(f"the consumer did not receive the object: {got[1]['body'][:200]!r}")

            waits: dict[str, Callable[[float], None] | None] = {
                "back_to_back": None,
                "sleeping": time.sleep,
                "spinning": _spin,
            }
            objects = iter(singles)
            for obj in (next(objects) for _ in range(warm_up)):
                await sample(obj, None)
            spent = dict.fromkeys(WAYS, 0.0)
            for _ in range(turns):
                for way in WAYS:
                    inside[0] = 0.0
                    for obj in (next(objects) for _ in range(per_part)):
                        await sample(obj, waits[way])
                    spent[way] += inside[0]
        finally:
            if app is not None:  # its lifespan is not run: a worker thread it started would stay
                app.state.workers.close()
            ex.close()
    result = {way: spent[way] / (per_part * turns) for way in WAYS}
    result.update(samples=float(per_part * turns), pause=pause)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300, help="samples per way and turn")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.001, help="seconds before each request, paced")
    parser.add_argument("--warm", type=int, default=0, help="objects the exchange holds first (a multiple of ten)")
    args = parser.parse_args()
    workload = Workload()
    n = WARM_UP + args.samples * args.turns * len(WAYS)
    result = paced_work(workload.objects(args.warm) if args.warm else (), workload.singles(n), args.pause, args.turns)
    print(
        f"CPU per sample inside the app, {result['samples']:.0f} samples each: "
        + ", ".join(f"{way.replace('_', ' ')} {result[way] * 1e3:.2f} ms" for way in WAYS)
        + f" (pause {args.pause * 1e3:g} ms before each request)"
    )


if __name__ == "__main__":
    main()
