"""The table: cutout, medallion, their ratio, the project's target and PASS/MISS; as text and as Markdown.

Nothing here enforces a target: a MISS is reported, never raised.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

MB = 1024 * 1024


@dataclass
class Row:
    name: str
    cutout: str
    medallion: str
    ratio: str
    target: str
    verdict: str


def _rate(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}/s"


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v * 1000:,.1f} ms" if v < 10 else f"{v:,.1f} s"


def _cpu_ms(v: float | None) -> str:
    return "—" if v is None else f"{v * 1000:.2f}"


def _mb(v: int | None) -> str:
    return "—" if v is None else f"{v / MB:,.0f} MB"


def _times(x: float) -> str:
    return f"{x:,.0f}×" if x >= 100 else f"{x:,.1f}×" if x >= 10 else f"{x:,.2f}×"


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else "PASS" if ok else "MISS"


def _cpu(t: Any, what: str = "object") -> str:
    """The server's CPU time per object of a run, and the rate one core busy with nothing else would give."""
    per = t.cpu_per("server") if t is not None else None
    if not per:
        return "—"
    return f"{per * 1e6:,.0f} µs per {what} (one core: ≤ {1 / per:,.0f}/s)"


#: the row beside the machine limit's share: what that share leaves per object, and what validation takes of it
_BUDGET_LABEL = (
    "CPU per object that 40% of the machine limit leaves on the machine's cores; validating one object once:"
    " cutout's validator / stix2-validator (OASIS)"
)


#: the row under the latency's CPU rows: the server's work of a sample without uvicorn or sockets (bench.paced)
_PACED_LABEL = (
    "the server's work per sample in process (its ASGI app called directly), back to back / with a {pause:g} ms"
    " pause before each request, sleeping / spinning"
)


def _paced(work: dict[str, float]) -> str:
    """CPU per sample of the three ways, and how much more the paced ones cost than back to back."""
    base = work["back_to_back"]
    more = ", ".join(f"{work[way] / base:.2f}×" for way in ("sleeping", "spinning")) if base else "—"
    return (
        f"{_cpu_ms(base)} / {_cpu_ms(work['sleeping'])} / {_cpu_ms(work['spinning'])} ms ({more};"
        f" {work['samples']:,.0f} samples each)"
    )


def _budget(limit_rate: float, checked: dict[str, float], share: float = 0.40, cores: int | None = None) -> str:
    """The CPU time per object that ingest at ``share`` of the machine limit's rate allows on ``cores`` cores (the
    most any ingest could spend there, had one client's envelopes every core to themselves), and the validation
    that must fit in it: an object checked once with cutout's validator (the exchange checks each object and
    each copy it releases, so twice) and with stix2-validator."""
    n = cores or os.cpu_count() or 1
    allowed = n / (share * limit_rate)
    ours, oasis = checked["cutout"], checked["oasis"]
    return (
        f"{allowed * 1e6:,.1f} µs; {ours * 1e6:,.1f} / {oasis * 1e6:,.0f} µs (an object and its copy with cutout's:"
        f" {2 * ours * 1e6:,.1f} µs, {2 * ours / allowed:.0%} of it)"
    )


def _split(t: Any, cores: int | None = None) -> str:
    """Where a run's CPU went, per object: cutout's serving process (which holds the write lock), its checking
    process and the client; and the rates that bounds: the serving process on one core, and the three
    together on the machine's cores (client and server share them)."""
    total, own, client = (t.cpu_per(who) for who in ("server", "process", "client"))
    if not total or not own or client is None:
        return "—"
    n = cores or os.cpu_count() or 1
    return (
        f"{own * 1e6:,.0f} / {(total - own) * 1e6:,.0f} / {client * 1e6:,.0f} µs per object (the serving process"
        f" on one core: ≤ {1 / own:,.0f}/s; the three on {n} cores: ≤ {n / (total + client):,.0f}/s)"
    )


def build_rows(r: dict[str, Any], sizes: Any) -> list[Row]:
    rows: list[Row] = []

    def cpu_row(label: str, t: Any, what: str = "object") -> None:
        if t is not None and t.cpu_per("server"):
            rows.append(Row(f"  {label}", _cpu(t, what), "", "", "", ""))

    def get(key: str) -> Any:
        return r.get(key)

    def throughput(name: str, ck: str, mk: str | None, target: str, check: Callable[[float], bool] | None) -> None:
        c, m = get(ck), get(mk) if mk else None
        cv = c.rate if c is not None else None
        mtext, ratio = "—", "—"
        if m is not None:
            if m.finished:
                mtext = _rate(m.rate)
                if cv is not None and m.rate > 0:
                    ratio = _times(cv / m.rate)
            else:
                bound = m.extra.get("wanted", m.objects) / m.seconds
                mtext = f"< {bound:,.0f}/s ({m.note})"
                if cv is not None and bound > 0:
                    ratio = "> " + _times(cv / bound)
        elif mk and r.get(mk + ".skipped"):
            mtext = r[mk + ".skipped"]
        elif mk is None:
            mtext = "n/a"
        rows.append(
            Row(name, _rate(cv), mtext, ratio, target, _verdict(None if cv is None or not check else check(cv)))
        )

    n_ing = sizes.ingest_objects
    for per, want in ((100, 5000), (1000, 20000)):
        throughput(
            f"ingest {n_ing:,} objects, {per:,}/envelope",
            f"ingest.{per}.cutout",
            f"ingest.{per}.medallion",
            f"≥ {want:,}/s",
            partial(operator.le, want),
        )
    for per in (100, 1000):
        ingested = get(f"ingest.{per}.cutout")
        cpu_row(f"server CPU, ingest at {per:,}/envelope", ingested)
        split = _split(ingested) if ingested is not None else "—"
        if split != "—":
            label = f"  CPU of the serving process / its checking process / the client, ingest at {per:,}/envelope"
            rows.append(Row(label, split, "", "", "", ""))
    limit = get("machine")
    c1000 = get("ingest.1000.cutout")
    frac = c1000.rate / limit["rate"] if (limit and c1000) else None
    rows.append(
        Row(
            "machine limit (orjson parse + serialise, SQLite executemany/1,000, WAL, FULL)",
            _rate(limit["rate"]) if limit else "—",
            "",
            "",
            "",
            "",
        )
    )
    m1000 = get("ingest.1000.medallion")
    rows.append(
        Row(
            "ingest at 1,000/envelope as a share of the machine limit",
            "—" if frac is None else f"{frac:.1%}",
            "—" if not (limit and m1000) else f"{m1000.rate / limit['rate']:.1%}",
            "",
            "≥ 40%",
            _verdict(None if frac is None else frac >= 0.40),
        )
    )
    checked = get("machine.validation")
    if limit and checked:
        rows.append(Row("  " + _BUDGET_LABEL, _budget(limit["rate"], checked), "", "", "", ""))

    k, n_once, per_once = sizes.ingest_writers, sizes.ingest_at_once_objects, sizes.ingest_per[-1]
    throughput(
        f"ingest {n_once:,} objects, {k} providers at once, {per_once:,}/envelope",
        "ingest.at_once.cutout",
        "ingest.at_once.medallion",
        "",
        None,
    )
    once_c, once_m = get("ingest.at_once.cutout"), get("ingest.at_once.medallion")
    # cutout: one provider with the same objects, taken in turns with the runs at once (bench.run); medallion,
    # and results without it: the one client's run of the ingest rows
    one_c = get("ingest.one.cutout") or get(f"ingest.{per_once}.cutout")
    one_m = get(f"ingest.{per_once}.medallion")

    def against_one(at_once: Any, one: Any) -> str:
        if at_once is None or one is None or not (at_once.finished and one.finished) or not one.rate:
            return "—"
        return f"{at_once.rate / one.rate:.2f}×"

    if once_c is not None:
        rows.append(
            Row(
                f"  {k} providers at once against one, {per_once:,}/envelope"
                + (
                    f" (cutout: the same {n_once:,} objects, the best of each, in turns)"
                    if get("ingest.one.cutout")
                    else ""
                ),
                against_one(once_c, one_c),
                against_one(once_m, one_m) if once_m is not None else "",
                "",
                "",
                "",
            )
        )
        split = _split(once_c)
        if split != "—":
            rows.append(
                Row(
                    f"  CPU of the serving process / its checking process / the client, {k} at once",
                    split,
                    "",
                    "",
                    "",
                    "",
                )
            )

    small, big = sizes.fetch_sizes
    f_small, f_big = get(f"fetch.{small}.cutout"), get(f"fetch.{big}.cutout")
    throughput(
        f"fetch {small:,} objects (limit {sizes.page})",
        f"fetch.{small}.cutout",
        f"fetch.{small}.medallion",
        "≥ 50,000/s",
        lambda v: v >= 50_000,
    )
    flat = f_small.rate if f_small else None
    throughput(
        f"fetch {big:,} objects (limit {sizes.page})",
        f"fetch.{big}.cutout",
        f"fetch.{big}.medallion",
        "≥ 50,000/s, flat (≥ 80% of the small one)",
        lambda v: v >= 50_000 and (flat is None or v >= 0.8 * flat),
    )
    if f_small and f_big:
        rows.append(
            Row(
                f"fetch {big:,} ÷ fetch {small:,} (the best of each; their runs taken in turn, a server each)",
                f"{f_big.rate / f_small.rate:.2f}",
                "",
                "",
                "",
                "",
            )
        )
    for size, t in ((small, f_small), (big, f_big)):
        cpu_row(f"server CPU, fetch {size:,}", t)
        client = t.cpu_per("client") if t is not None else None
        if client:
            rows.append(
                Row(
                    f"  client CPU (taxii2-client), fetch {size:,}",
                    f"{client * 1e6:,.0f} µs per object (one core: ≤ {1 / client:,.0f}/s)",
                    "",
                    "",
                    "",
                    "",
                )
            )

    # latency
    parties, each = sizes.members
    members = f"empty exchange of {parties:,} more parties and {parties // 2 * each:,} agreements"
    for label, ck, mk in (
        ("empty exchange (the samples add theirs)", "latency.empty.cutout", "latency.empty.medallion"),
        (f"{big:,}-object exchange", "latency.big.cutout", "latency.big.medallion"),
        (members, "latency.members.cutout", "latency.members.medallion"),
    ):
        c, m = get(ck), get(mk)
        for stat, bound in (("p50", 0.003), ("p99", 0.015)):
            cv = getattr(c, stat) if c is not None and c.samples else None
            mv = getattr(m, stat) if m is not None and m.samples else None
            mtext, ratio = _ms(mv), "—"
            if mk == "latency.members.medallion":
                mtext = "n/a (no parties)"
            if m is not None:
                notes = []
                if c is not None and m.size_before != c.size_before:
                    notes.append(f"at {m.size_before:,}")
                if not m.complete:
                    notes.append(f"{len(m.samples)} sample{'s' if len(m.samples) != 1 else ''}")
                if notes:
                    mtext += f" ({', '.join(notes)})"
            if cv and mv:
                ratio = _times(mv / cv)
                if m is not None and c is not None and m.size_before < c.size_before:
                    ratio = "> " + ratio
            rows.append(
                Row(
                    f"POST one object → consumer has it, {stat}, {label}",
                    _ms(cv),
                    mtext,
                    ratio,
                    f"≤ {bound * 1000:.0f} ms",
                    _verdict(None if cv is None else cv <= bound),
                )
            )
    floor, commit = get("latency.floor"), get("machine.commit")
    if floor is not None and floor.samples:
        rows.append(
            Row(
                "  floor: the same POST → GET against a server that does nothing (taxii2-client, HTTP), p50 / p99",
                f"{_ms(floor.p50)} / {_ms(floor.p99)}",
                "",
                "",
                "",
                "",
            )
        )
    sampled = [get(k) for k in ("latency.empty.cutout", "latency.big.cutout", "latency.members.cutout")]
    for who, what in (("server", "cutout serve"), ("client", "taxii2-client")):
        per_case = [getattr(lat, f"{who}_cpu", None) if lat is not None else None for lat in sampled]
        under = getattr(floor, f"{who}_cpu", None) if floor is not None else None
        if any(x is not None for x in per_case):
            rows.append(
                Row(
                    f"  {who} CPU per sample ({what}), the three cases above; against the floor's server",
                    " / ".join(_cpu_ms(x) for x in per_case) + f" ms; {_cpu_ms(under)} ms",
                    "",
                    "",
                    "",
                    "",
                )
            )
    work = get("latency.paced")
    if work is not None:
        rows.append(Row("  " + _PACED_LABEL.format(pause=work["pause"] * 1e3), _paced(work), "", "", "", ""))
    if commit is not None:
        rows.append(
            Row(
                "  floor: one durable commit (SQLite WAL, FULL: one fsync) on this disk, p50 / p99",
                f"{_ms(commit['p50'])} / {_ms(commit['p99'])}",
                "",
                "",
                "",
                "",
            )
        )
    for extra in r.get("latency.medallion.extra", []):
        rows.append(
            Row(
                f"  medallion latency at {extra.size_before:,} objects",
                "",
                f"p50 {_ms(extra.p50)}, p99 {_ms(extra.p99)}"
                + (f" ({len(extra.samples)} samples)" if not extra.complete else ""),
                "",
                "",
                "",
            )
        )
    for size, why in r.get("latency.medallion.skipped", []):
        rows.append(Row(f"  medallion latency at {size:,} objects", "", why, "", "", ""))

    def p50_p99(lat: Any) -> str:
        text = f"{_ms(lat.p50)} / {_ms(lat.p99)}" if lat.samples else "—"
        return text + (f" ({lat.note})" if lat.note else "")

    burst = get("burst.cutout")
    if burst is not None:
        envelope = f"{sizes.burst_per:,}"
        for what, busy, idle in (
            ("a consumer's poll (ten objects)", burst.polls_busy, burst.polls_idle),
            ("a one-object POST (until acknowledged)", burst.posts_busy, burst.posts_idle),
        ):
            rows.append(
                Row(
                    f"{what} while the provider POSTs {envelope}-object envelopes, p50 / p99",
                    p50_p99(busy),
                    "not measured (its poll alone grows with the collection: above)",
                    "",
                    "",
                    "",
                )
            )
            rows.append(Row("  the same with the exchange idle, p50 / p99", p50_p99(idle), "", "", "", ""))
        rows.append(Row("  the provider's ingest during the burst", _rate(burst.rate), "", "", "", ""))
    at_once = get("burst.at_once.cutout")
    if at_once is not None:
        envelope, k = f"{sizes.burst_per:,}", sizes.burst_providers
        for what, busy in (
            ("a consumer's poll (ten objects)", at_once.polls_busy),
            ("a one-object POST (until acknowledged)", at_once.posts_busy),
        ):
            rows.append(
                Row(
                    f"{what} while {k} providers POST {envelope}-object envelopes at once, p50 / p99",
                    p50_p99(busy),
                    "not measured",
                    "",
                    "",
                    "",
                )
            )
        rows.append(Row("  the providers' ingest during that burst", _rate(at_once.rate), "", "", "", ""))

    fan = get("fanout.cutout")
    rows.append(
        Row(
            f"fan-out: 1 provider → {sizes.fanout_consumers} consumers, released copies",
            _rate(fan.rate) if fan else "—",
            "n/a (no agreements)",
            "",
            "≥ 20,000/s",
            _verdict(None if fan is None else fan.rate >= 20_000),
        )
    )
    cpu_row("server CPU, fan-out", fan, "copy")

    # memory
    ing_c, ing_m = get("ingest.1000.cutout"), get("ingest.1000.medallion")
    rows.append(
        Row(
            f"server peak RSS, ingest {n_ing:,} at 1,000/envelope",
            _mb(ing_c.peak_rss) if ing_c else "—",
            _mb(ing_m.peak_rss) if ing_m else "—",
            _times(ing_m.peak_rss / ing_c.peak_rss) if ing_c and ing_m else "—",
            "",
            "",
        )
    )
    fm_small = get(f"fetch.{small}.medallion")
    rows.append(
        Row(
            f"server peak RSS, fetch {small:,}",
            _mb(f_small.peak_rss) if f_small else "—",
            (_mb(fm_small.peak_rss) + ("" if fm_small.finished else " (unfinished)")) if fm_small else "—",
            _times(fm_small.peak_rss / f_small.peak_rss) if f_small and fm_small else "—",
            "",
            "",
        )
    )
    load_big = get(f"load.{big}.cutout")
    mem = r.get("memory.cutout")
    if mem:
        rows.append(
            Row(
                f"server peak RSS, loading to and fetching {big:,}",
                _mb(mem["big_peak"]),
                "—",
                "",
                "bounded by the batch",
                _verdict(mem["bounded"]),
            )
        )
        rows.append(
            Row(
                f"  growth from the {small:,} phases (allowed: 25% of the added objects' JSON, ≥ 16 MB)",
                f"{mem['growth'] / MB:+,.0f} MB (allowed {mem['allowed'] / MB:,.0f} MB)",
                "",
                "",
                "",
                "",
            )
        )
    if load_big:
        rows.append(
            Row(
                f"  ingest while growing to {big:,} (1,000/envelope)",
                _rate(load_big.rate),
                "",
                "",
                "",
                "",
            )
        )
    return rows


def text_table(rows: list[Row]) -> str:
    head = ("measurement", "cutout", "medallion 3.0.0", "ratio", "target", "")
    cells = [head, *[(r.name, r.cutout, r.medallion, r.ratio, r.target, r.verdict) for r in rows]]
    widths = [min(70, max(len(c[i]) for c in cells)) for i in range(len(head))]
    lines = []
    for i, c in enumerate(cells):
        lines.append(
            "  ".join(v.ljust(w) if j == 0 else v.rjust(w) for j, (v, w) in enumerate(zip(c, widths, strict=True)))
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    out = [
        "| measurement | cutout | medallion 3.0.0 | ratio (cutout better when > 1) | target | |",
        "|---|--:|--:|--:|---|---|",
    ]
    for r in rows:
        name = r.name.replace("  ", "&nbsp;&nbsp;", 1) if r.name.startswith("  ") else r.name
        out.append(f"| {name} | {r.cutout} | {r.medallion} | {r.ratio} | {r.target} | {r.verdict} |")
    return "\n".join(out)
