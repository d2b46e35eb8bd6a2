"""verify_log finds tampering and says where: edited events, deleted, reordered or inserted rows, forks."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cutout.audit import audit_row
from cutout.audit.checkpoint import public_key_of, sign_checkpoint, verifier_key
from cutout.audit.errors import KeyFormatError
from cutout.audit.merkle import MerkleTree, leaf_hash
from cutout.audit.verify import LogEntry, Problem, verify_log
from tests.unit.audit._log import ORIGIN, Log, StoredCheckpoint

SIZES = (10, 25, 40, 55, 60)


def signed_log(n: int = 60, sizes: tuple[int, ...] = SIZES) -> tuple[Log, list[StoredCheckpoint]]:
    log = Log(n)
    return log, [log.checkpoint(s) for s in sizes]


LOG, CHECKPOINTS = signed_log()


def messages(problems: tuple[Problem, ...]) -> list[str]:
    return [p.message for p in problems]


def kinds(problems: tuple[Problem, ...]) -> list[str]:
    return [p.kind for p in problems]


def test_an_untouched_log_verifies() -> None:
    report = verify_log(LOG.entries, CHECKPOINTS, LOG.vkey, origin=ORIGIN)
    assert report.ok, report.summary()
    assert (report.entries, report.commitments_checked, report.retired) == (60, 60, 0)
    assert (report.checkpoints, report.checkpoints_verified, report.covered) == (5, 5, 60)
    assert report.root == LOG.tree().root()
    assert report.summary().startswith("OK: 60 entries")


def test_retired_salts_and_events_still_verify() -> None:
    entries = [e._replace(salt=None, event=None) if e.seq <= 20 else e for e in LOG.entries]
    entries = [e._replace(salt=None) if 20 < e.seq <= 30 else e for e in entries]
    report = verify_log(entries, CHECKPOINTS, LOG.vkey)
    assert report.ok, report.summary()
    assert (report.commitments_checked, report.retired) == (30, 30)


def test_an_empty_log_with_no_checkpoints_verifies() -> None:
    report = verify_log([], [], LOG.vkey)
    assert report.ok and report.entries == 0 and report.covered == 0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 59), st.integers(0, 10_000), st.integers(0, 7))
def test_any_flipped_byte_of_an_event_is_found_at_its_entry(index: int, where: int, bit: int) -> None:
    entries = list(LOG.entries)
    event = bytearray(entries[index].event or b"")
    event[where % len(event)] ^= 1 << bit
    entries[index] = entries[index]._replace(event=bytes(event))
    report = verify_log(entries, CHECKPOINTS, LOG.vkey)
    seq = index + 1
    assert messages(report.problems) == [f"entry {seq}: commitment does not match its event"]
    assert report.problems[0].seq == seq and report.problems[0].kind == "commitment"


def test_a_flipped_salt_or_commitment_is_found_at_its_entry() -> None:
    entries = list(LOG.entries)
    entries[16] = entries[16]._replace(salt=b"\x00" * 16)
    report = verify_log(entries, CHECKPOINTS, LOG.vkey)
    assert messages(report.problems) == ["entry 17: commitment does not match its event"]
    # a changed commitment also changes the tree: the checkpoints from then on fail, after the last good one
    entries = list(LOG.entries)
    entries[16] = entries[16]._replace(commitment=bytes(32))
    report = verify_log(entries, CHECKPOINTS, LOG.vkey)
    assert messages(report.problems) == [
        "entry 17: commitment does not match its event",
        "checkpoint at size 25: root differs from the log; the log differs within entries 11–25",
        "checkpoint at size 40: root differs from the log; the log differs within entries 11–40",
        "checkpoint at size 55: root differs from the log; the log differs within entries 11–55",
        "checkpoint at size 60: root differs from the log; the log differs within entries 11–60",
    ]
    assert report.covered == 10


def test_a_rewritten_event_with_a_matching_commitment_is_found_between_checkpoints() -> None:
    log, checkpoints = signed_log()
    log.rewrite(33, b'{"at":1,"kind":"release","object":"something else"}')
    report = verify_log(log.entries, checkpoints, log.vkey)
    assert messages(report.problems)[0] == (
        "checkpoint at size 40: root differs from the log; the log differs within entries 26–40"
    )
    assert report.problems[0].size == 40
    assert report.covered == 25


def test_a_deleted_entry_is_a_gap_at_its_seq() -> None:
    entries = [e for e in LOG.entries if e.seq != 12]
    report = verify_log(entries, CHECKPOINTS, LOG.vkey)
    assert messages(report.problems)[:2] == [
        "gap at seq 12: no entry between seq 11 and seq 13",
        "checkpoint at size 25: root differs from the log; the log differs within entries 11–26",
    ]
    assert report.problems[0].seq == 12
    assert "checkpoint at size 60: the log has only 59 entries; entries after seq 60 are missing" in messages(
        report.problems
    )


def test_deleted_entries_at_the_start_and_end() -> None:
    report = verify_log(LOG.entries[3:], CHECKPOINTS, LOG.vkey)
    assert messages(report.problems)[0] == "gap at seqs 1–3: the log starts at seq 4"
    report = verify_log(LOG.entries[:-2], CHECKPOINTS, LOG.vkey)
    assert messages(report.problems) == [
        "checkpoint at size 60: the log has only 58 entries; entries after seq 58 are missing"
    ]
    assert report.covered == 55


def test_a_run_of_deleted_entries_is_one_gap() -> None:
    entries = [e for e in LOG.entries if not 41 <= e.seq <= 44]
    report = verify_log(entries, CHECKPOINTS, LOG.vkey)
    assert messages(report.problems)[0] == "gap at seqs 41–44: no entry between seq 40 and seq 45"
    assert report.covered == 40


def test_reordered_entries_are_found() -> None:
    entries = list(LOG.entries)
    entries[30], entries[31] = entries[31], entries[30]
    report = verify_log(entries, CHECKPOINTS, LOG.vkey)
    assert messages(report.problems)[0] == "entries out of order at seq 31: it comes after seq 32"
    assert report.problems[0].seq == 31
    assert "checkpoint at size 40: root differs from the log; the log differs within entries 26–40" in messages(
        report.problems
    )


def test_swapped_contents_under_the_same_seqs_are_found_between_checkpoints() -> None:
    entries = list(LOG.entries)
    a, b = entries[30], entries[31]
    entries[30], entries[31] = b._replace(seq=a.seq), a._replace(seq=b.seq)
    report = verify_log(entries, CHECKPOINTS, LOG.vkey)
    assert kinds(report.problems) == ["root", "root", "root"]
    assert messages(report.problems)[0].endswith("the log differs within entries 26–40")


def test_an_inserted_entry_is_found() -> None:
    row = audit_row("release", {"object": "indicator--forged"}, 1_700_000_030)
    forged = LogEntry(30, row["salt"], row["event"], row["commitment"])
    entries = [*LOG.entries[:30], forged, *LOG.entries[30:]]
    report = verify_log(entries, CHECKPOINTS, LOG.vkey)
    assert messages(report.problems)[0] == "entry 30 appears 2 times"
    assert "checkpoint at size 40: root differs from the log; the log differs within entries 26–39" in messages(
        report.problems
    )
    # the same insertion with every later seq renumbered leaves no seq trace, but the tree still tells
    renumbered = [*LOG.entries[:30], forged._replace(seq=31), *(e._replace(seq=e.seq + 1) for e in LOG.entries[30:])]
    report = verify_log(renumbered, CHECKPOINTS, LOG.vkey)
    assert kinds(report.problems) == ["root", "root", "root"]
    assert messages(report.problems)[0] == (
        "checkpoint at size 40: root differs from the log; the log differs within entries 26–40"
    )


def test_two_checkpoints_that_fork_are_named() -> None:
    """The broker signed size 40, then rewrote entry 33 and signed size 55 over the new history."""
    log = Log(60)
    before = log.checkpoint(40)
    log.rewrite(33, b'{"at":1,"kind":"release","object":"rewritten"}')
    after = log.checkpoint(55)
    report = verify_log(log.entries, [before, after], log.vkey)
    assert messages(report.problems) == [
        "checkpoint at size 40: root differs from the log; the log differs within entries 1–40",
        "checkpoints at sizes 40 and 55 fork: the log matches size 55, and the tree signed at size 40 "
        "is not a prefix of it",
    ]
    fork = report.problems[1]
    assert (fork.kind, fork.size, fork.other_size) == ("fork", 40, 55)


def test_two_checkpoints_of_one_size_with_different_roots_fork() -> None:
    log = Log(40)
    first = log.checkpoint(40)
    log.rewrite(7, b'{"at":1,"kind":"release"}')
    second = log.checkpoint(40)
    report = verify_log(log.entries, [first, second], log.vkey)
    assert "checkpoints at sizes 40 and 40 fork: the same size with different roots" in messages(report.problems)


def test_checkpoints_with_bad_signatures_or_stored_values_are_reported() -> None:
    other = Log(0)
    foreign = LOG.checkpoint(25, key=other.key)
    tampered = replace(CHECKPOINTS[2], text=CHECKPOINTS[2].text.replace("\n40\n", "\n41\n"))
    mislabeled = replace(CHECKPOINTS[0], root=bytes(32))
    report = verify_log(LOG.entries, [mislabeled, foreign, tampered, CHECKPOINTS[3]], LOG.vkey)
    assert messages(report.problems) == [
        "checkpoint at size 10: the stored size and root differ from its signed text (which says size 10)",
        f"checkpoint at size 25: the note has no signature by key {LOG.vkey.split('+')[0]}+{LOG.vkey.split('+')[1]}",
        f"checkpoint at size 40: invalid signature for key {ORIGIN}+{LOG.vkey.split('+')[1]}",
    ]
    assert kinds(report.problems) == ["stored", "signature", "signature"]
    assert report.checkpoints_verified == 2


def test_a_checkpoint_for_another_origin_is_reported() -> None:
    root = LOG.tree().root(10)
    elsewhere = StoredCheckpoint(10, root, sign_checkpoint("elsewhere.example", 10, root, LOG.key, ORIGIN))
    report = verify_log(LOG.entries, [elsewhere], LOG.vkey, origin=ORIGIN)
    assert messages(report.problems) == [
        f"checkpoint at size 10: the checkpoint is for origin 'elsewhere.example', not '{ORIGIN}'"
    ]


def test_gaps_can_be_allowed_and_the_first_seq_chosen() -> None:
    entries = [e for e in LOG.entries if e.seq % 7 != 0]
    size = len(entries)
    tree = MerkleTree([leaf_hash(e.commitment) for e in entries])
    cp = StoredCheckpoint(size, tree.root(), sign_checkpoint(ORIGIN, size, tree.root(), LOG.key, ORIGIN))
    assert verify_log(entries, [cp], LOG.vkey, allow_gaps=True).ok
    assert kinds(verify_log(entries, [cp], LOG.vkey).problems) == ["gap"] * 8
    assert verify_log(LOG.entries[5:], [], LOG.vkey, first_seq=6).ok
    assert verify_log(LOG.entries[5:], [], LOG.vkey, first_seq=None).ok


def test_a_malformed_commitment_is_reported_not_raised() -> None:
    entries = list(LOG.entries)
    entries[4] = entries[4]._replace(commitment=b"short")
    report = verify_log(entries, CHECKPOINTS, LOG.vkey)
    assert messages(report.problems)[0] == "entry 5: the commitment is not 32 bytes"


def test_too_many_problems_are_counted_not_listed() -> None:
    entries = [e._replace(event=b"{}") for e in LOG.entries]
    report = verify_log(entries, CHECKPOINTS, LOG.vkey, max_problems=10)
    assert len(report.problems) == 11
    assert report.problems[-1].message == "… and 50 more problems"
    assert report.summary().startswith("FAILED: 60 entries")


def test_a_bad_verifier_key_is_a_caller_error() -> None:
    with pytest.raises(KeyFormatError):
        verify_log(LOG.entries, CHECKPOINTS, "not a key")
    assert verify_log(LOG.entries, CHECKPOINTS, verifier_key(ORIGIN, public_key_of(LOG.key))).ok


def test_repeated_checkpoints_are_checked_once_and_forks_reported_once() -> None:
    log = Log(40)
    first = log.checkpoint(40)
    log.rewrite(7, b'{"at":1,"kind":"release"}')
    second = log.checkpoint(40)
    report = verify_log(log.entries, [first, second, first, second, log.checkpoint(20)], log.vkey)
    assert kinds(report.problems) == ["root", "fork"]
    assert report.checkpoints_verified == 3  # both copies of the second, and size 20
