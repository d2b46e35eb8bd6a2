"""The ``cutout`` command. Every command takes ``--json`` for scripts; errors print without a traceback."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from cutout.errors import BadRequest, CutoutError, InvalidContent, NotFound
from cutout.settings import load_settings

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["main"]


def _emit(ctx_json: bool, data: Any, human: str) -> None:
    if ctx_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False))
    else:
        click.echo(human)


def _fail(exc: CutoutError, as_json: bool) -> None:
    problems = [p.as_dict() for p in exc.problems] if isinstance(exc, InvalidContent) else []
    if as_json:
        click.echo(json.dumps({"error": {"code": exc.code, "message": exc.message, "problems": problems}}, indent=2))
    else:
        click.echo(f"error: {exc.message}", err=True)
        for p in problems:
            click.echo(f"  object {p['index']} ({p['id']}): {p['message']}", err=True)
    sys.exit(1)


def command(fn: F) -> F:
    """Adds ``--json`` and turns CutoutError into a clean message and exit status 1."""

    @click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
    @functools.wraps(fn)
    def wrapper(*args: Any, as_json: bool, **kwargs: Any) -> Any:
        try:
            return fn(*args, as_json=as_json, **kwargs)
        except CutoutError as exc:
            _fail(exc, as_json)

    return wrapper  # type: ignore[return-value]


data_option = click.option(
    "--data",
    "data",
    type=click.Path(path_type=Path),
    default=None,
    help="The broker's folder (default: $CUTOUT_DATA, else ./cutout-data).",
)
db_option = click.option("--db", "db", default=None, help="Database URL (default: SQLite in the data folder).")


def _settings(data: Path | None, **overrides: Any) -> Any:
    return load_settings(data, overrides)


@contextmanager
def _broker_store(data: Path | None, db: str | None) -> Iterator[tuple[Any, Any]]:
    """The settings and the store of the broker in ``data`` (NotInitialised if there is none), closed after."""
    from cutout.errors import NotInitialised
    from cutout.keys import Keys
    from cutout.store import Store

    settings = _settings(data, database_url=db)
    Keys.load(settings.data_dir)  # a broker lives here at all
    store = Store.for_settings(settings)
    try:
        if not store.is_initialised():
            raise NotInitialised(f"no broker database at {settings.db_url}; run 'cutout init' first")
        yield settings, store
    finally:
        store.close()


def _exchange(data: Path | None, db: str | None = None) -> Any:
    from cutout.service import Exchange

    return Exchange.open(_settings(data, database_url=db))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cutout")
def main() -> None:
    """cutout: an intelligence exchange between parties who must not deal with each other directly."""


@main.command()
@data_option
@db_option
@click.option("--name", default="cutout exchange", show_default=True, help="The broker's STIX identity name.")
@command
def init(data: Path | None, db: str | None, name: str, as_json: bool) -> None:
    """Create a broker: database, STIX identity and secret keys. Never overwrites one."""
    from cutout.service import Exchange

    settings = _settings(data, database_url=db)
    identity = Exchange.init(settings, name)
    _emit(
        as_json,
        {"data_dir": str(settings.data_dir), "identity": identity},
        f"broker {identity['name']!r} created in {settings.data_dir}\nidentity: {identity['id']}",
    )


# -- parties ------------------------------------------------------------------------------------------------
@main.group()
def party() -> None:
    """Register, list, revoke and re-key parties."""


@party.command("add")
@click.argument("name")
@click.option("--provider", is_flag=True, help="May submit intelligence.")
@click.option("--consumer", is_flag=True, help="May receive intelligence and send feedback.")
@data_option
@db_option
@command
def party_add(name: str, provider: bool, consumer: bool, data: Path | None, db: str | None, as_json: bool) -> None:
    """Add a party and print its API token (shown once; only a hash is kept)."""
    info, token = _exchange(data, db).add_party(name, provider, consumer)
    _emit(
        as_json,
        {"party": info, "token": token},
        f"party {info['name']!r} added ({', '.join(info['roles'])})\ntoken: {token}\n"
        "Give the token to the party now: it is not shown again.",
    )


def _party_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no parties"
    lines = [f"{'NAME':<30} {'ROLES':<18} {'CREATED':<25} REVOKED"]
    for r in rows:
        lines.append(f"{r['name']:<30} {','.join(r['roles']):<18} {r['created']:<25} {r['revoked'] or '-'}")
    return "\n".join(lines)


@party.command("list")
@data_option
@db_option
@command
def party_list(data: Path | None, db: str | None, as_json: bool) -> None:
    """List parties."""
    rows = _exchange(data, db).list_parties()
    _emit(as_json, {"parties": rows}, _party_table(rows))


@party.command("revoke")
@click.argument("name")
@data_option
@db_option
@command
def party_revoke(name: str, data: Path | None, db: str | None, as_json: bool) -> None:
    """Revoke a party: its token stops working and nothing more is released to it."""
    info = _exchange(data, db).revoke_party(name)
    _emit(as_json, {"party": info}, f"party {name!r} revoked")


@party.command("rotate")
@click.argument("name")
@data_option
@db_option
@command
def party_rotate(name: str, data: Path | None, db: str | None, as_json: bool) -> None:
    """Give a party a new token; the old one stops working at once."""
    info, token = _exchange(data, db).rotate_party(name)
    _emit(as_json, {"party": info, "token": token}, f"new token for {name!r}: {token}")


@party.command("terms")
@click.argument("name")
@click.option("--add", "add", multiple=True, help="A term to redact (repeatable): name, alias, domain, e-mail, CIDR.")
@click.option("--remove", "remove", multiple=True, help="A term to stop redacting (repeatable).")
@data_option
@db_option
@command
def party_terms(
    name: str, add: tuple[str, ...], remove: tuple[str, ...], data: Path | None, db: str | None, as_json: bool
) -> None:
    """Show or change the terms redacted from a party's free text (and whose objects are withheld)."""
    terms = _exchange(data, db).party_terms(name, add, remove)
    _emit(as_json, {"party": name, "terms": terms}, "\n".join(terms) or f"no terms for {name!r}")


# -- agreements ---------------------------------------------------------------------------------------------
@main.group()
def agreement() -> None:
    """Set which provider reaches which consumer, on what scope and with what delay."""


@agreement.command("add")
@click.option("--from", "provider", required=True, help="The provider's party name.")
@click.option("--to", "consumer", required=True, help="The consumer's party name.")
@click.option("--types", default=None, help="Comma-separated STIX types (default: every type the exchange releases).")
@click.option("--tlp-max", default="amber", show_default=True, help="clear, green, amber, amber+strict or red.")
@click.option("--area", default=None, help="MINLON,MINLAT,MAXLON,MAXLAT: objects with coordinates must lie inside.")
@click.option(
    "--delay", default=0, show_default=True, type=int, help="Seconds to hold each object (fixed), or the mean."
)
@click.option(
    "--release",
    type=click.Choice(["none", "fixed", "exponential", "pool"]),
    default=None,
    help="Release timing (default: fixed with --delay, else none).",
)
@click.option("--pool-k", default=0, type=int, help="pool: release only once items of K distinct providers wait.")
@click.option("--epoch", default=0, type=int, help="pool: seconds between release epochs.")
@click.option("--review", is_flag=True, help="Hold objects whose free text had to be redacted for review.")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="OPTION",
    help="Let more through than the strict profile: one of `cutout agreement options` (repeatable).",
)
@data_option
@db_option
@command
def agreement_add(
    provider: str,
    consumer: str,
    types: str | None,
    tlp_max: str,
    area: str | None,
    delay: int,
    release: str | None,
    pool_k: int,
    epoch: int,
    review: bool,
    allow: tuple[str, ...],
    data: Path | None,
    db: str | None,
    as_json: bool,
) -> None:
    """Add an agreement: objects flow from --from to --to while it matches them."""
    info = _exchange(data, db).add_agreement(
        provider,
        consumer,
        None if types is None else types.split(","),
        tlp_max,
        area,
        delay,
        release,
        pool_k,
        epoch,
        review,
        [a for value in allow for a in value.split(",")],
    )
    _emit(as_json, {"agreement": info}, f"agreement {info['id']} added: {_agreement_line(info)}")


def _agreement_line(a: dict[str, Any]) -> str:
    types = ",".join(a["types"]) if a["types"] else "all released types"
    area = ",".join(f"{v:g}" for v in a["area"]) if a["area"] else "anywhere"
    ended = f" (ended {a['ended']})" if a["ended"] else ""
    timing = {
        "none": "released at once",
        "fixed": f"held {a['delay']}s",
        "exponential": f"held a random delay of mean {a['delay']}s",
        "pool": f"pooled: released every {a['epoch']}s once {a['pool_k']} providers wait",
    }[a["release"]]
    review = "; redactions reviewed" if a["review"] else ""
    allow = f"; also allows {', '.join(a['allow'])}" if a.get("allow") else ""
    return f"{a['from']} -> {a['to']}: {types}; TLP up to {a['tlp_max']}; area {area}; {timing}{review}{allow}{ended}"


@agreement.command("options")
@command
def agreement_options(as_json: bool) -> None:
    """List the sanitizing options an agreement may allow (--allow), each with what it risks."""
    from cutout.sanitize.overrides import OPTIONS

    rows = [
        {
            "name": o.name,
            "releases_types": sorted(o.releases),
            "adds": {t: sorted(p) for t, p in o.adds.items()},
            "needs_one_of": sorted(o.needs_one_of),
            "risk": o.risk,
        }
        for o in OPTIONS.values()
    ]
    human = "\n".join(f"{r['name']}\n    {r['risk']}" for r in rows)
    _emit(as_json, {"options": rows}, human)


@agreement.command("list")
@click.option("--all", "include_ended", is_flag=True, help="Include ended agreements.")
@data_option
@db_option
@command
def agreement_list(include_ended: bool, data: Path | None, db: str | None, as_json: bool) -> None:
    """List agreements."""
    rows = _exchange(data, db).list_agreements(include_ended)
    human = "\n".join(f"{a['id']:>4}  {_agreement_line(a)}" for a in rows) or "no agreements"
    _emit(as_json, {"agreements": rows}, human)


@agreement.command("end")
@click.argument("agreement_id", type=int)
@data_option
@db_option
@command
def agreement_end(agreement_id: int, data: Path | None, db: str | None, as_json: bool) -> None:
    """End an agreement: nothing more flows under it, held items included."""
    info = _exchange(data, db).end_agreement(agreement_id)
    _emit(as_json, {"agreement": info}, f"agreement {agreement_id} ended")


# -- review -------------------------------------------------------------------------------------------------
@main.group()
def grade() -> None:
    """Providers' source reliability (Admiralty A-F): the operator's grade and what outcomes propose."""


def _grade_line(g: dict[str, Any]) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in g["outcomes"].items()) or "no outcomes yet"
    low, high = g["interval_80"]
    revoked = " (revoked)" if g["revoked"] else ""
    return (
        f"{g['party']}{revoked}: grade {g['grade']}, proposed {g['proposed']}; hit rate {g['hit_rate']:.2f} "
        f"(80% between {low:.2f} and {high:.2f}); {counts}"
    )


@grade.command("show")
@click.argument("party", required=False)
@data_option
@db_option
@command
def grade_show(party: str | None, data: Path | None, db: str | None, as_json: bool) -> None:
    """Each provider's grade, its track record from outcomes, and the grade the record proposes."""
    rows = [g for g in _exchange(data, db).grades() if party is None or g["party"] == party]
    if party is not None and not rows:
        raise NotFound(f"no provider named {party!r}")
    _emit(as_json, {"grades": rows}, "\n".join(_grade_line(g) for g in rows) or "no providers")


@grade.command("set")
@click.argument("party")
@click.argument("value", metavar="GRADE")
@data_option
@db_option
@command
def grade_set(party: str, value: str, data: Path | None, db: str | None, as_json: bool) -> None:
    """Give a provider a source reliability grade: A, B, C, D, E or F."""
    g = _exchange(data, db).set_grade(party, value)
    _emit(as_json, {"grade": g}, _grade_line(g))


@grade.command("adopt")
@click.argument("party")
@data_option
@db_option
@command
def grade_adopt(party: str, data: Path | None, db: str | None, as_json: bool) -> None:
    """Give a provider the grade its track record proposes."""
    g = _exchange(data, db).set_grade(party)
    _emit(as_json, {"grade": g}, _grade_line(g))


@main.group()
def review() -> None:
    """Objects held for the operator because their free text had to be redacted."""


@review.command("list")
@data_option
@db_option
@command
def review_list(data: Path | None, db: str | None, as_json: bool) -> None:
    """List held objects, each with the redacted copy as it would be released."""
    rows = _exchange(data, db).list_reviews()
    lines = []
    for r in rows:
        lines.append(f"{r['id']:>4}  {r['held']}  {r['from']} -> {r['to']}  {r['preview']['type']}")
        lines.append("      " + json.dumps(r["preview"], indent=2).replace("\n", "\n      "))
    _emit(as_json, {"reviews": rows}, "\n".join(lines) or "nothing held for review")


@review.command("release")
@click.argument("review_id", type=int)
@data_option
@db_option
@command
def review_release(review_id: int, data: Path | None, db: str | None, as_json: bool) -> None:
    """Release a held object, redacted as previewed."""
    result = _exchange(data, db).decide_review(review_id, release=True)
    _emit(as_json, result, f"held object {review_id} released")


@review.command("reject")
@click.argument("review_id", type=int)
@data_option
@db_option
@command
def review_reject(review_id: int, data: Path | None, db: str | None, as_json: bool) -> None:
    """Reject a held object: it is never released to that consumer."""
    result = _exchange(data, db).decide_review(review_id, release=False)
    _emit(as_json, result, f"held object {review_id} rejected")


# -- database -----------------------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """The broker's database schema."""


@db.command("upgrade")
@data_option
@db_option
@command
def db_upgrade(data: Path | None, db: str | None, as_json: bool) -> None:
    """Bring the database schema to this version of cutout (run it after an upgrade, on one node)."""
    from cutout.store.migrate import current_revision, head_revision, upgrade

    with _broker_store(data, db) as (_, store):
        before = current_revision(store)
        upgrade(store)
        after = current_revision(store)
    _emit(
        as_json,
        {"from": before, "to": after, "head": head_revision()},
        f"schema {before} is current" if before == after else f"schema upgraded from {before} to {after}",
    )


@db.command("repack")
@data_option
@db_option
@click.option(
    "--page-size",
    type=int,
    default=None,
    help="Bytes per page (a power of two, 512-65536; default: the sqlite_page_size setting).",
)
@command
def db_repack(data: Path | None, db: str | None, page_size: int | None, as_json: bool) -> None:
    """Rewrite a SQLite database with the configured page size (broker stopped; needs free space about its size)."""
    with _broker_store(data, db) as (settings, store):
        before, after = store.repack(page_size or settings.sqlite_page_size)
    _emit(
        as_json,
        {"page_size_before": before, "page_size": after},
        f"page size {after} is current" if before == after else f"repacked: page size {before} -> {after}",
    )


# -- audit --------------------------------------------------------------------------------------------------
@main.group()
def audit() -> None:
    """The tamper-evident log: verify it, sign checkpoints, issue and check receipts."""


@audit.command("verify")
@data_option
@db_option
@command
def audit_verify(data: Path | None, db: str | None, as_json: bool) -> None:
    """Recompute every commitment and the whole tree; check every checkpoint against the log and the next."""
    report = _exchange(data, db).verify_audit()
    payload = {
        "ok": report.ok,
        "entries": report.entries,
        "retired": report.retired,
        "checkpoints": report.checkpoints,
        "checkpoints_verified": report.checkpoints_verified,
        "covered": report.covered,
        "problems": [{"kind": p.kind, "message": p.message, "seq": p.seq, "size": p.size} for p in report.problems],
    }
    _emit(as_json, payload, report.summary())
    if not report.ok:
        sys.exit(1)


@audit.command("checkpoint")
@data_option
@db_option
@command
def audit_checkpoint(data: Path | None, db: str | None, as_json: bool) -> None:
    """Sign the log's current root now and print the signed checkpoint."""
    result = _exchange(data, db).checkpoint()
    _emit(as_json, result, result["note"].rstrip("\n"))


@audit.command("key")
@data_option
@db_option
@command
def audit_key(data: Path | None, db: str | None, as_json: bool) -> None:
    """Print the verifier key parties need to check checkpoints and receipts."""
    key = _exchange(data, db).audit_key()
    _emit(as_json, {"verifier_key": key}, key)


@audit.command("prove")
@click.argument("seq", type=int, required=False)
@click.option("--status", "status_id", default=None, help="The status id of a submission: prove its acceptance.")
@click.option("--out", default=None, help="Write the receipt to this file.")
@data_option
@db_option
@command
def audit_prove(
    seq: int | None, status_id: str | None, out: str | None, data: Path | None, db: str | None, as_json: bool
) -> None:
    """Issue a receipt for one audit entry: the event, its salt, an inclusion proof and a signed checkpoint."""
    receipt = _exchange(data, db).prove(seq, status_id)
    if out:
        Path(out).write_text(receipt + "\n")
    _emit(as_json, json.loads(receipt), receipt if not out else f"receipt written to {out}")


@audit.command("verify-receipt")
@click.argument("file")
@click.option("--key", "key", required=True, help="The broker's verifier key (cutout audit key).")
@command
def audit_verify_receipt(file: str, key: str, as_json: bool) -> None:
    """Check a receipt offline, with nothing but the receipt and the broker's verifier key."""
    from cutout.audit.receipt import verify_receipt

    raw = sys.stdin.read() if file == "-" else Path(file).read_text("utf-8")
    result = verify_receipt(raw, key)
    event = json.loads(result.event)
    _emit(
        as_json,
        {"ok": True, "event": event, "leaf_index": result.leaf_index, "tree_size": result.tree_size},
        f"OK: entry {result.leaf_index + 1} ({event.get('kind')}) is in the log of {result.tree_size} entries "
        f"signed by {result.checkpoint.origin}",
    )


# -- running ------------------------------------------------------------------------------------------------
@main.command()
@data_option
@db_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port to listen on (default 8700).")
@command
def serve(data: Path | None, db: str | None, host: str | None, port: int | None, as_json: bool) -> None:
    """Run the exchange (TAXII 2.1) on uvicorn."""
    import uvicorn

    from cutout.api import create_app
    from cutout.api.serving import few_arenas, hand_over_often, keep_freed_heap, server_config

    settings = _settings(data, database_url=db, host=host, port=port)
    keep_freed_heap()
    few_arenas()
    hand_over_often()
    app = create_app(settings)
    if as_json:
        click.echo(json.dumps({"url": f"http://{settings.host}:{settings.port}/taxii2/"}))
    else:
        click.echo(f"cutout serving TAXII 2.1 at http://{settings.host}:{settings.port}/taxii2/", err=True)
    uvicorn.Server(server_config(app, settings.host, settings.port)).run()


# -- the party's own client ---------------------------------------------------------------------------------
def client_options(fn: F) -> F:
    fn = click.option("--token", envvar="CUTOUT_TOKEN", default=None, help="API token [$CUTOUT_TOKEN].")(fn)
    fn = click.option("--party", envvar="CUTOUT_PARTY", default=None, help="Party name [$CUTOUT_PARTY].")(fn)
    fn = click.option(
        "--url", envvar="CUTOUT_URL", default=None, help="Exchange URL, e.g. http://host:8700 [$CUTOUT_URL]."
    )(fn)
    return fn


def _read_objects(path: str) -> list[Any]:
    from cutout.api.app import parse_envelope

    raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, list):
        raw = orjson.dumps({"objects": doc})
    elif isinstance(doc, dict) and "objects" not in doc and "type" in doc:
        raw = orjson.dumps({"objects": [doc]})
    return parse_envelope(raw)


@main.command()
@click.argument("file")
@client_options
@click.option(
    "--per",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many objects per envelope (default: one envelope if the file fits the exchange's size limit).",
)
@command
def send(file: str, url: str | None, party: str | None, token: str | None, per: int | None, as_json: bool) -> None:
    """Send STIX 2.1 (a bundle, an envelope, a list or one object; FILE or - for stdin) to your outbox.

    A file that fits the exchange's max_content_length (and --per) goes as one envelope, stored all or nothing.
    A larger one goes as several, one after another, each object after what it refers to; the whole file is
    validated here first, so that an invalid object stops it before anything is sent."""
    from cutout.client import Client, envelopes
    from cutout.model.validate import Validator

    objects = _read_objects(file)
    with Client(url or "", party or "", token or "") as client:
        posts = envelopes(objects, client.max_content_length(), per)
        if len(posts) > 1:
            problems = Validator(lazy=True).check_all(objects)
            if problems:
                raise InvalidContent(
                    f"{len(problems)} of {len(objects)} objects are not valid STIX 2.1; nothing was sent",
                    tuple(problems),
                )
        status = client.send_envelopes(posts)
    spread = f" in {len(posts)} envelopes" if len(posts) > 1 else ""
    _emit(as_json, status, f"accepted {status['success_count']} of {status['total_count']} objects{spread}")


@main.command()
@client_options
@click.option("--added-after", default=None, help="Only what was added after this time (a previous run's 'last').")
@click.option("--collection", type=click.Choice(["inbox", "outbox"]), default="inbox", show_default=True)
@click.option("--out", "out", default=None, help="Write the objects to this file as a STIX bundle.")
@command
def receive(
    url: str | None,
    party: str | None,
    token: str | None,
    added_after: str | None,
    collection: str,
    out: str | None,
    as_json: bool,
) -> None:
    """Fetch what is in your inbox (or outbox), page by page.

    Each page is printed (and added to --out) as it arrives, so a large inbox needs no more memory than a page.
    --out is written beside its name and moved there once complete; if the exchange stops answering midway, it
    holds everything before the point to carry on from, which is printed, and the command exits with 1."""
    from cutout.client import BundleFile, Client, Received

    with Client(url or "", party or "", token or "") as client:
        pages = client.pages(collection, added_after)
        # a refusal of the first page (credentials, URL) is the usual error: nothing is written
        page: Received | None = next(pages)
        try:
            bundle = BundleFile(Path(out)) if out else None
        except OSError as exc:
            raise BadRequest(f"cannot write {out}: {exc.strerror or exc}") from exc
        stdout = sys.stdout.buffer
        count, last = 0, added_after
        failed: CutoutError | None = None
        if as_json:
            stdout.write(b'{"objects": [')
        try:
            while page is not None:
                if bundle is not None:
                    bundle.add(page.objects)
                if as_json:
                    if page.objects:
                        lead = b",\n" if count else b"\n"
                        stdout.write(lead + b",\n".join(orjson.dumps(o) for o in page.objects))
                elif page.objects:
                    click.echo("\n".join(f"{o['type']:<16} {o['id']}  {o.get('name', '')}" for o in page.objects))
                count += len(page.objects)
                last = page.last_added or last
                try:
                    page = next(pages, None)
                except CutoutError as exc:
                    failed, page = exc, None
        except BaseException:
            if bundle is not None:
                bundle.discard()
            raise
        if bundle is not None:
            bundle.close()
    if as_json:
        tail: dict[str, Any] = {"last": last, "count": count}
        if failed is not None:
            tail["error"] = {"code": failed.code, "message": failed.message}
        stdout.write(b"\n], " + orjson.dumps(tail)[1:] + b"\n")
        stdout.flush()
    else:
        saved = f" (in {out})" if out else ""
        if failed is None:
            click.echo(f"{count} objects{saved}; next time use --added-after {last or '-'}")
        else:
            click.echo(f"error: {failed.message}", err=True)
            click.echo(
                f"received {count} objects{saved} before it; carry on with --added-after {last or '-'}", err=True
            )
    if failed is not None:
        sys.exit(1)


# -- configuration ------------------------------------------------------------------------------------------
@main.group()
def config() -> None:
    """Inspect settings."""


@config.command("check")
@data_option
@db_option
@command
def config_check(data: Path | None, db: str | None, as_json: bool) -> None:
    """Validate settings and the broker's files without starting anything."""
    with _broker_store(data, db) as (settings, store):
        notes: list[str] = []
        if store.is_sqlite and (pages := store.page_size()) != settings.sqlite_page_size:
            notes.append(
                f"the database has pages of {pages} bytes, not sqlite_page_size ({settings.sqlite_page_size}): it "
                "works as it is; to change it, stop the broker and run 'cutout db repack'"
            )
    values = settings.as_dict()
    _emit(
        as_json,
        {"ok": True, "settings": values, "notes": notes},
        "settings OK\n" + "\n".join(f"  {k} = {v}" for k, v in values.items()) + "".join(f"\nnote: {n}" for n in notes),
    )


@main.command()
@click.option("--keep", is_flag=True, help="Keep the temporary data folder and print where it is.")
@command
def demo(keep: bool, as_json: bool) -> None:
    """Run the whole exchange end to end on a temporary SQLite broker, and check for leaks."""
    from cutout.demo.run import run_demo

    ok = run_demo(keep=keep, as_json=as_json)
    sys.exit(0 if ok else 1)
