"""``cutout demo``: the whole exchange end to end on a temporary SQLite broker, then a leak check.

A real server runs in a subprocess; the provider and both consumers talk to it over TAXII 2.1 only. At the
end every byte each side received (status lines, headers, bodies) is searched for the other side's
canaries; the demo fails (exit 1) if any is found, or if the outcome does not make it back.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from cutout.client import Client
from cutout.demo import scenario as sc
from cutout.demo.server import start_server
from cutout.service import Exchange
from cutout.settings import load_settings

__all__ = ["find_canaries", "run_demo"]


def find_canaries(transcript: list[bytes], canaries: list[str]) -> list[str]:
    """The canaries that appear anywhere in the transcript (case-insensitive)."""
    blob = b"\n".join(transcript).decode("utf-8", errors="replace").casefold()
    return [c for c in canaries if c.casefold() in blob]


def _say(as_json: bool, text: str = "", **style: Any) -> None:
    if not as_json:
        click.secho(text, **style)


def _show(as_json: bool, title: str, objects: list[dict[str, Any]]) -> None:
    _say(as_json, title, bold=True)
    for o in objects:
        summary = o.get("name") or o.get("explanation") or o.get("abstract") or o.get("description") or ""
        _say(as_json, f"  {o['type']:<15} {o['id']}  {str(summary)[:70]}")


def _await(client: Client, since: str | None, what: str, ready: Any, timeout: float = 30.0) -> tuple[list[Any], str]:
    """Poll a party's inbox after ``since`` until ``ready(objects)`` (a batch falls due on the server)."""
    deadline = time.monotonic() + timeout
    while True:
        got = client.receive("inbox", since)
        if ready(got.objects):
            return got.objects, got.last_added or since or ""
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not arrive within {timeout:.0f} s")
        time.sleep(0.2)


def run_demo(keep: bool = False, as_json: bool = False) -> bool:
    tmp = Path(tempfile.mkdtemp(prefix="cutout-demo-"))
    server = None
    report: dict[str, Any] = {}
    try:
        # the demo batches feedback every 2 seconds instead of every hour (feedback_epoch), so it ends soon
        (tmp / "cutout.toml").write_text("[cutout]\nfeedback_epoch = 2\nscheduler_interval = 0.2\n")
        settings = load_settings(tmp, environ={})
        Exchange.init(settings, "Liaison Cell Exchange")
        ex = Exchange.open(settings)
        try:
            _, provider_token = ex.add_party(sc.PROVIDER, provider=True, consumer=False)
            _, consumer_token = ex.add_party(sc.CONSUMER, provider=False, consumer=True)
            _, outsider_token = ex.add_party(sc.OUTSIDER, provider=False, consumer=True)
            agreement = ex.add_agreement(sc.PROVIDER, sc.CONSUMER, tlp_max="amber", area=sc.AREA, delay=0)
        finally:
            ex.close()
        _say(as_json, "cutout demo: a provider, a consumer under an agreement, and one outside it", bold=True)
        _say(
            as_json,
            f"  agreement {agreement['id']}: {sc.PROVIDER} -> {sc.CONSUMER}, TLP up to amber, area {sc.AREA}",
        )
        _say(as_json, "  feedback and requests go in batches every 2 s here (feedback_epoch; an hour by default)")
        server = start_server(tmp)
        _say(as_json, f"  exchange running at {server.url}/taxii2/ (data in {tmp})\n")

        provider_rx: list[bytes] = []
        consumer_rx: list[bytes] = []
        outsider_rx: list[bytes] = []
        provider = Client(server.url, sc.PROVIDER, provider_token, record=provider_rx)
        consumer = Client(server.url, sc.CONSUMER, consumer_token, record=consumer_rx)
        outsider = Client(server.url, sc.OUTSIDER, outsider_token, record=outsider_rx)

        sent = sc.provider_objects()
        status = provider.send(sent)
        _show(as_json, f"1. {sc.PROVIDER} sends {len(sent)} objects ({status['status']}):", sent)

        received = consumer.receive("inbox")
        got, consumer_mark = received.objects, received.last_added
        _show(as_json, f"\n2. {sc.CONSUMER} receives {len(got)} objects over TAXII:", got)
        by_name = {o.get("name"): o for o in got}
        depot = by_name.get("Ashen Vale arms depot")
        meeting = next((o for o in got if o["type"] == "note"), None)
        if depot is None or meeting is None:
            raise RuntimeError("the consumer did not receive the depot and the meeting")
        sample = next(o for o in got if o["type"] == "sighting")
        _say(as_json, "\n   the convoy sighting as the consumer sees it:")
        _say(as_json, "   " + json.dumps(sample, indent=2).replace("\n", "\n   "))

        outcome = sc.feedback(depot["id"], meeting["id"])
        consumer.send(outcome)
        _show(as_json, f"\n3. {sc.CONSUMER} strikes and reports back:", outcome)

        back, provider_mark = _await(provider, None, "the outcomes", lambda objs: len(objs) >= 2)
        _show(as_json, f"\n4. {sc.PROVIDER} receives {len(back)} outcomes in the next batch, about its own ids:", back)

        # requests for information: one that the agreement covers, one that nothing covers
        expires = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        asks = sc.requests(expires)
        consumer.send(asks)
        _show(as_json, f"\n5. {sc.CONSUMER} asks for information:", [{**a, "name": a["question"]} for a in asks])

        no_route, consumer_mark = _await(
            consumer, consumer_mark, "the no-route answer", lambda objs: any(o["type"] == "note" for o in objs)
        )
        _show(as_json, "   the request nothing covers is answered at once:", no_route)

        routed, provider_mark = _await(
            provider, provider_mark, "the request", lambda objs: any(o["type"] == sc.REQUEST_TYPE for o in objs)
        )
        request_copy = next(o for o in routed if o["type"] == sc.REQUEST_TYPE)
        _say(as_json, f"\n6. {sc.PROVIDER} receives the request, from the exchange, without the requester:")
        _say(as_json, "   " + json.dumps(request_copy, indent=2).replace("\n", "\n   "))

        reply = sc.answer(request_copy["id"])
        provider.send(reply)
        _show(as_json, f"\n7. {sc.PROVIDER} answers, referencing the request:", reply)
        answered, consumer_mark = _await(
            consumer,
            consumer_mark,
            "the answer",
            lambda objs: any(o.get("abstract") == "Convoy position" for o in objs),
        )
        answer_note = next(o for o in answered if o.get("abstract") == "Convoy position")
        _show(as_json, f"   {sc.CONSUMER} receives the answer, naming its own request:", answered)

        # the operator's view of the provider's record, before and after the outcomes of the strikes
        acted = [
            depot["id"],
            meeting["id"],
            sample["id"],
            *[r for r in answer_note["object_refs"] if r != asks[0]["id"]],
        ]
        acted += [o["id"] for o in got if o["type"] == "location"][:1]
        before = _grade(tmp)
        consumer.send(sc.outcomes(acted))
        more, provider_mark = _await(provider, provider_mark, "the outcomes", lambda objs: len(objs) >= len(acted))
        after = _grade(tmp)
        _say(as_json, f"\n8. {sc.CONSUMER} reports {len(acted)} confirmed hits; the batch reaches {sc.PROVIDER}.")
        _say(
            as_json,
            f"   the operator's view (cutout grade show): grade {before['grade']}, proposed {before['proposed']} "
            f"before; {after['hits']} hits, hit rate {after['hit_rate']}, proposed {after['proposed']} after",
        )
        adopted = _adopt(tmp)
        _say(as_json, f"   cutout grade adopt '{sc.PROVIDER}': the provider's grade is now {adopted['grade']}")

        nothing = outsider.receive("inbox").objects
        _say(as_json, f"\n9. {sc.OUTSIDER} (no agreement) receives {len(nothing)} objects.")
        for c in (provider, consumer, outsider):
            c.close()

        provider_leaks = find_canaries(consumer_rx + outsider_rx, sc.CANARIES["provider"])
        consumer_leaks = find_canaries(provider_rx, sc.CANARIES["consumer"])
        own_ids = {o["id"] for o in sent}
        refs_back = {r for o in back for r in o.get("object_refs", [])}
        checks = {
            "consumer received the report": len(got) >= 7,
            "outsider received nothing": not nothing,
            "both outcomes reached the provider": len(back) == 2,
            "outcomes name the provider's own objects": refs_back <= own_ids and len(refs_back) == 2,
            "the request reached the provider from the exchange": request_copy.get("created_by_ref") == _identity(tmp),
            "the answer names the consumer's own request": asks[0]["id"] in answer_note["object_refs"],
            "a request nothing covers got an honest no route": any(
                o.get("abstract") == "no route" and asks[1]["id"] in o["object_refs"] for o in no_route
            ),
            "the proposed grade moved with the outcomes": before["proposed"] == "F" and after["proposed"] != "F",
            "the operator adopted it": adopted["grade"] == after["proposed"],
            "nothing of the provider reached a consumer": not provider_leaks,
            "nothing of the consumer reached the provider": not consumer_leaks,
        }
        report = {
            "checks": checks,
            "provider_leaks": provider_leaks,
            "consumer_leaks": consumer_leaks,
            "sent": sent,
            "consumer_received": got,
            "provider_received": back,
            "request_as_provider_sees_it": request_copy,
            "answer_as_consumer_sees_it": answered,
            "no_route": no_route,
            "outcomes_received": more,
            "grade_before": before,
            "grade_after": after,
            "outsider_received": nothing,
        }
        _say(
            as_json,
            "\n10. Leak check over every byte each side received (status lines, headers, bodies):",
            bold=True,
        )
        for name, ok in checks.items():
            _say(as_json, f"  {'PASS' if ok else 'FAIL'}  {name}", fg="green" if ok else "red")
        for leak in provider_leaks + consumer_leaks:
            _say(as_json, f"        leaked: {leak!r}", fg="red")
        ok = all(checks.values())
        _say(as_json, "\ndemo passed" if ok else "\ndemo FAILED", bold=True, fg="green" if ok else "red")
        if as_json:
            click.echo(json.dumps({"ok": ok, **report}, indent=2))
        return ok
    finally:
        if server is not None:
            server.stop()
        if keep:
            _say(as_json, f"data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _grade(data: Path) -> dict[str, Any]:
    ex = Exchange.open(load_settings(data, environ={}))
    try:
        return next(g for g in ex.grades() if g["party"] == sc.PROVIDER)
    finally:
        ex.close()


def _adopt(data: Path) -> dict[str, Any]:
    ex = Exchange.open(load_settings(data, environ={}))
    try:
        return ex.set_grade(sc.PROVIDER)
    finally:
        ex.close()


def _identity(data: Path) -> str:
    ex = Exchange.open(load_settings(data, environ={}))
    try:
        return str(ex.identity["id"])
    finally:
        ex.close()
