"""The paper path end to end against real PostgreSQL and a real OpenSSH sshd (chrooted SFTP user):
batches assigned and uploaded with their checksum file, the print house (simulated on sshd's tree)
answering, and the acknowledgement logic moving letters on. Includes a connection dropped in the
middle of an upload, a corrupt acknowledgement, the cut-off and the overdue alert."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import operator
import socket
import zipfile
from datetime import date, datetime, timedelta

import pytest

from demo import dataset
from include.dijlepost import pipeline
from include.dijlepost.clock import BRUSSELS
from include.dijlepost.clock import today as today_in_brussels
from include.dijlepost.intake import import_rows
from include.dijlepost.outbox import RunContext, claim
from include.dijlepost.printhouse import acks, handoff
from include.dijlepost.printhouse.hook import PrintHouseHook
from include.dijlepost.rendering import LetterRenderer
from include.dijlepost.rollout import read_state, set_phase
from include.dijlepost.waves import WAVES
from sandboxes.printhouse.simulator import PrinterBehaviour, process_inbox
from tests.support.work import chunk_work

pytestmark = pytest.mark.integration
KEY = b"test-pseudonym-key-not-secret"
RUN = "letters_finance:manual__print"
CTX = RunContext(dag_id="letters_finance", run_id="manual__print", task_id="test", map_index=-1, try_number=1)
ACK_CTX = RunContext(dag_id="print_house_acknowledgements", run_id="manual__ack", task_id="test")


@pytest.fixture(scope="module")
def renderer():
    return LetterRenderer(today=date(2026, 3, 2))


def paper_letters(db, renderer, tmp_path, n: int, seed_no: int, run: str = RUN) -> list[str]:
    """n finance letters decided for paper (phase `paper`) and rendered, as the wave DAG leaves them."""
    data = dataset.build(
        seed=seed_no,
        mix={"finance": n},
        today=date(2026, 3, 2),
        prefix=f"H{seed_no}",
        ebox_share=0.0,
        mistakes=False,
    )
    assert not import_rows(db, enumerate(data.letters, start=1)).errors
    set_phase(db, "finance", "paper", "print tests", "test")
    c = claim(
        db,
        chunk_work(run, ctx=CTX),
        batch_size=1000,
        chunk_size=1000,
        lease=timedelta(hours=3),
    )
    pipeline.decide_claim(
        db, chunk_work(run, wave=WAVES["finance"], key=KEY, ctx=CTX), state=read_state(db, "finance")
    )
    for chunk in c.chunks:
        pipeline.render_chunk(
            db, chunk_work(run, ctx=CTX, chunk=chunk), renderer=renderer, document_root=tmp_path / "docs"
        )
    return sorted(l["letter_id"] for l in data.letters)


def letter_states(db) -> dict[str, tuple]:
    rows = db.execute(
        "SELECT letter_id, status, print_status, print_reason, quarantine_reason FROM letters"
    ).fetchall()
    db.commit()
    return {r[0]: r[1:] for r in rows}


def hand_over(db, tmp_path, batches, sftp=None) -> list[dict]:
    hook = PrintHouseHook()
    if sftp is not None:
        return [handoff.hand_over_batch(db, sftp, hook.folders, tmp_path / "work", b, CTX) for b in batches]
    with hook.get_managed_conn() as sftp:
        return [handoff.hand_over_batch(db, sftp, hook.folders, tmp_path / "work", b, CTX) for b in batches]


def collect(db) -> list[acks.FileOutcome]:
    hook = PrintHouseHook()
    with hook.get_managed_conn() as sftp:
        return acks.collect(db, sftp, hook.outbox_dir, ACK_CTX)


def test_full_round_trip(db, renderer, tmp_path, printhouse):
    ids = paper_letters(db, renderer, tmp_path, 12, seed_no=51)
    batches = handoff.assign_print_batches(db, "finance", RUN, CTX, 5)
    assert len(batches) >= 3
    results = hand_over(db, tmp_path, batches)
    inbox = printhouse.root / "inbox"
    for r in results:
        zip_bytes = (inbox / f"{r['batch_id']}.zip").read_bytes()
        assert (
            inbox / f"{r['batch_id']}.zip.sha256"
        ).read_text() == f"{hashlib.sha256(zip_bytes).hexdigest()}  {r['batch_id']}.zip\n"
    assert {s[0] for s in letter_states(db).values()} == {"handed_to_print"}

    # The print house takes the batches, rejects every 4th letter of a batch, sees every 2nd accepted one returned.
    answered = printhouse.answer_as_print_house(PrinterBehaviour(reject_every=4, return_every=2))
    assert set(answered["batches"]) == set(batches) and not answered["left_in_inbox"]
    assert sorted(p.name for p in inbox.iterdir()) == []

    outcomes = collect(db)
    assert {o.outcome for o in outcomes} == {"applied"}
    states = letter_states(db)
    assert sorted(states) == ids
    rejected = {i for i, s in states.items() if s[1] == "rejected"}
    returned = {i for i, s in states.items() if s[1] == "returned"}
    posted = {i for i, s in states.items() if s[1] == "posted"}
    expected = answered["batches"].values()
    assert len(rejected) == sum(b["rejected"] for b in expected) > 0
    assert len(returned) == sum(b["returned"] for b in expected) > 0
    assert rejected | returned | posted == set(ids) and not (rejected & returned)
    for i in rejected:
        assert states[i][0] == "quarantined"
        assert states[i][3] == "print house rejected: address does not fit the envelope window"
    for i in returned | posted:
        assert states[i][0] == "handed_to_print"
    for i in returned:
        assert states[i][2] == "unknown_address"
    outbox = printhouse.root / "outbox"
    assert [p.name for p in outbox.iterdir() if p.is_file()] == []
    assert {p.name for p in (outbox / "processed").iterdir()} == {o.file_name for o in outcomes}
    unack = db.execute("SELECT count(*) FROM print_batches WHERE acknowledged_at IS NULL").fetchone()[0]
    assert unack == 0
    report = acks.reconciliation(db)
    assert report["unacknowledged"] == [] and {r["letter_id"] for r in report["returned"]} == returned

    # Idempotent: the same files read again (put back by the print house) change nothing.
    before = letter_states(db)
    events = db.execute("SELECT count(*) FROM letter_events").fetchone()[0]
    for f in (outbox / "processed").iterdir():
        f.rename(outbox / f.name)
    again = collect(db)
    assert {o.outcome for o in again} == {"seen_before"}
    assert letter_states(db) == before
    assert db.execute("SELECT count(*) FROM letter_events").fetchone()[0] == events
    db.commit()


class DroppingSftp:
    """Wraps a paramiko SFTPClient; the connection dies after half of the zip has been written."""

    def __init__(self, sftp):
        self.sftp = sftp

    def __getattr__(self, name):
        return getattr(self.sftp, name)

    def putfo(self, fl, remotepath, file_size=0, callback=None, confirm=True):
        data = fl.read()
        with self.sftp.open(remotepath, "wb") as remote:
            remote.write(data[: len(data) // 2])
            remote.flush()
            remote.stat()  # the first half is on the server
            transport_socket = self.sftp.get_channel().get_transport().sock
            transport_socket.shutdown(socket.SHUT_RDWR)
            transport_socket.close()
            remote.write(data[len(data) // 2 :])


def test_connection_dropped_mid_upload_then_rerun_hands_over_one_complete_batch(
    db, renderer, tmp_path, printhouse
):
    ids = paper_letters(db, renderer, tmp_path, 8, seed_no=53)
    batches = handoff.assign_print_batches(db, "finance", RUN, CTX, 100)
    assert len(batches) == 1
    hook = PrintHouseHook()
    sftp = hook.get_conn()
    with pytest.raises(Exception):  # noqa: B017 - whatever paramiko raises for a dead connection
        handoff.hand_over_batch(db, DroppingSftp(sftp), hook.folders, tmp_path / "work", batches[0], CTX)
    db.rollback()
    inbox = printhouse.root / "inbox"
    assert [p.name for p in inbox.iterdir()] == [f"{batches[0]}.zip.part"]
    assert {s[0] for s in letter_states(db).values()} == {"processing"}
    assert handoff.pending_print_batches(db, "finance") == batches

    # The task is retried on a new connection (and from a fresh work directory: another worker).
    [result] = hand_over(db, tmp_path / "retry", handoff.pending_print_batches(db, "finance"))
    assert result["already_present"] is False
    assert sorted(p.name for p in inbox.iterdir()) == [f"{batches[0]}.zip", f"{batches[0]}.zip.sha256"]
    with zipfile.ZipFile(inbox / f"{batches[0]}.zip") as z:
        assert z.testzip() is None
        manifest = list(csv.DictReader(io.StringIO(z.read("manifest.csv").decode())))
    assert sorted(r["letter_id"] for r in manifest) == ids
    assert {s[0] for s in letter_states(db).values()} == {"handed_to_print"}
    assert handoff.pending_print_batches(db, "finance") == []
    # A later rerun sends nothing again.
    assert hand_over(db, tmp_path, batches)[0]["letters"] == 0
    assert process_inbox(printhouse.root)["batches"][batches[0]] == {
        "accepted": 8,
        "rejected": 0,
        "returned": 0,
    }


def test_corrupt_ack_is_refused_kept_and_nothing_changes(db, renderer, tmp_path, printhouse):
    paper_letters(db, renderer, tmp_path, 4, seed_no=57)
    [batch] = handoff.assign_print_batches(db, "finance", RUN, CTX, 100)
    hand_over(db, tmp_path, [batch])
    before = letter_states(db)
    outbox = printhouse.root / "outbox"
    corrupt = b"letter_id;status\r\n" + b"\x00\x01garbage" * 10
    (outbox / f"{batch}.ack.csv").write_bytes(corrupt)
    (outbox / "invoice-scan.pdf").write_bytes(b"%PDF-1.4 not for us")
    big = b"%PDF-1.4 a scan sent by mistake\n" + bytes(range(256)) * 2000  # 512 KiB
    (outbox / "big-scan.pdf").write_bytes(big)

    outcomes = {o.file_name: o for o in collect(db)}
    assert outcomes[f"{batch}.ack.csv"].outcome == "refused"
    assert "NUL" in outcomes[f"{batch}.ack.csv"].error or "header" in outcomes[f"{batch}.ack.csv"].error
    assert outcomes["invoice-scan.pdf"].outcome == "refused"
    assert "unknown file name" in outcomes["invoice-scan.pdf"].error
    assert letter_states(db) == before
    # Nothing lost: a refused file is recorded by its hash, size and first bytes (at most 4 KiB, what
    # shows the print house which file it was) and moved aside, whole, on the server.
    kept = db.execute(
        "SELECT content, error, size_bytes, sha256 FROM print_house_files WHERE file_name = %s",
        (f"{batch}.ack.csv",),
    ).fetchone()
    assert bytes(kept[0]) == corrupt and kept[1] and kept[2] == len(corrupt)
    content, size, sha = db.execute(
        "SELECT content, size_bytes, sha256 FROM print_house_files WHERE file_name = 'big-scan.pdf'"
    ).fetchone()
    db.commit()
    assert bytes(content) == big[:4096] and size == len(big) and sha == hashlib.sha256(big).hexdigest()
    assert (outbox / "refused" / "big-scan.pdf").read_bytes() == big
    assert (outbox / "refused" / f"{batch}.ack.csv").read_bytes() == corrupt
    assert not (outbox / f"{batch}.ack.csv").exists()

    # An ack that misses a letter is refused as a whole too: no letter of it is applied.
    members = sorted(before)
    partial = "letter_id,result,reason\r\n" + "".join(f"{m},accepted,\r\n" for m in members[:-1])
    (outbox / f"{batch}.ack.csv").write_text(partial)
    [o] = collect(db)
    assert o.outcome == "refused" and "no answer for 1 letter" in o.error and members[-1] in o.error
    assert letter_states(db) == before

    # The print house sends a correct file: applied; the refused ones stay on record.
    process_inbox(printhouse.root)
    [o] = collect(db)
    assert (o.outcome, o.counts) == ("applied", {"accepted": 4, "rejected": 0, "unchanged": 0})
    assert {s[1] for s in letter_states(db).values()} == {"posted"}
    assert {p.name for p in (outbox / "refused").iterdir()} >= {f"{batch}.ack.csv", "invoice-scan.pdf"}


def test_ack_for_unknown_batch_or_letters_is_refused(db, renderer, tmp_path, printhouse):
    paper_letters(db, renderer, tmp_path, 2, seed_no=59)
    [batch] = handoff.assign_print_batches(db, "finance", RUN, CTX, 100)
    hand_over(db, tmp_path, [batch])
    members = sorted(letter_states(db))
    unknown = acks.apply_file(
        db, "finance-prior-00000000deadbeef.ack.csv", b"letter_id,result,reason\nX-1,accepted,\n", ACK_CTX
    )
    assert unknown.outcome == "refused" and "no batch finance-prior-00000000deadbeef" in unknown.error
    extra = "letter_id,result,reason\n" + "".join(f"{m},accepted,\n" for m in members) + "X-9,accepted,\n"
    o = acks.apply_file(db, f"{batch}.ack.csv", extra.encode(), ACK_CTX)
    assert o.outcome == "refused" and "not in batch" in o.error and "X-9" in o.error
    returns = acks.apply_file(db, "returned-1.csv", b"letter_id,reason\nNOPE-1,refused\n", ACK_CTX)
    assert returns.outcome == "refused" and "unknown letter(s): NOPE-1" in returns.error
    assert {s[1] for s in letter_states(db).values()} == {None}
    # A second, different ack for an acknowledged batch is refused.
    good = "letter_id,result,reason\n" + "".join(f"{m},accepted,\n" for m in members)
    assert acks.apply_file(db, f"{batch}.ack.csv", good.encode(), ACK_CTX).outcome == "applied"
    other = "letter_id,result,reason\n" + "".join(f"{m},rejected,torn\n" for m in members)
    o = acks.apply_file(db, f"{batch}.ack.csv", other.encode(), ACK_CTX)
    assert o.outcome == "refused" and "already acknowledged" in o.error
    assert {s[1] for s in letter_states(db).values()} == {"posted"}


def test_overdue_batch_alert_and_reconciliation(db, renderer, tmp_path, printhouse):
    ids = paper_letters(db, renderer, tmp_path, 3, seed_no=61)
    [batch] = handoff.assign_print_batches(db, "finance", RUN, CTX, 100)
    hand_over(db, tmp_path, [batch])
    assert acks.overdue_batches(db, "finance", 24) == []
    db.execute("UPDATE print_batches SET uploaded_at = now() - interval '25 hours'")
    db.commit()
    [late] = acks.overdue_batches(db, "finance", 24)
    assert (late["batch_id"], late["letters"]) == (batch, 3)
    assert acks.overdue_batches(db, "finance", 48) == [] and acks.overdue_batches(db, "gas", 24) == []
    collected = {"refused_files": [], "refused_in": "outbox/refused"}
    assert acks.acknowledgement_problems(db, {"finance": 48, "gas": 24}, collected) == []
    assert acks.acknowledgement_problems(db, {"finance": 24}, {**collected, "refused_files": ["x.csv"]}) == [
        "refused print-house file(s) ['x.csv'], kept in the database and in outbox/refused "
        "(reasons in the alert_print_house_file_refused lines)",
        "1 print batch(es) without acknowledgement past the alert delay",
    ]
    report = acks.reconciliation(db)
    assert sorted(r["letter_id"] for r in report["unacknowledged"]) == ids
    path = acks.write_reconciliation_report(report, tmp_path / "rec", date(2026, 3, 3))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["issue"] for r in rows} == {"no_acknowledgement"} and sorted(
        r["letter_id"] for r in rows
    ) == ids
    counts = acks.reconcile(db, tmp_path / "daily", date(2026, 3, 4))
    assert (counts["unacknowledged"], counts["returned"]) == (3, 0)
    with open(counts["report"], newline="") as f:
        assert sorted(r["letter_id"] for r in csv.DictReader(f)) == ids

    process_inbox(printhouse.root)
    collect(db)
    assert acks.overdue_batches(db, "finance", 24) == []
    assert acks.reconciliation(db)["unacknowledged"] == []


def test_letters_decided_after_the_cutoff_wait_for_the_next_day(db, renderer, tmp_path, printhouse):
    ids = paper_letters(db, renderer, tmp_path, 6, seed_no=63)
    day = today_in_brussels()
    early, late = ids[:2], ids[2:]
    at = lambda h: datetime(day.year, day.month, day.day, h, 0, tzinfo=BRUSSELS)  # noqa: E731
    db.execute("UPDATE letters SET decided_at = %s WHERE letter_id = ANY(%s)", (at(9), early))
    db.execute("UPDATE letters SET decided_at = %s WHERE letter_id = ANY(%s)", (at(16), late))
    db.commit()
    batches = handoff.assign_print_batches(db, "finance", RUN, CTX, 100, max_mb=50, cutoff="15:00")
    assert len(batches) == 2
    rows = dict(db.execute("SELECT batch_id, hand_over_on FROM print_batches").fetchall())
    members = dict(db.execute("SELECT letter_id, print_batch_id FROM letters").fetchall())
    db.commit()
    today_batch = {members[i] for i in early}
    tomorrow_batch = {members[i] for i in late}
    assert len(today_batch) == len(tomorrow_batch) == 1
    [b_today], [b_tomorrow] = today_batch, tomorrow_batch
    assert (rows[b_today], rows[b_tomorrow]) == (day, day + timedelta(days=1))
    # Today only the early batch is due; the late letters stay rendered, in their recorded batch.
    assert handoff.pending_print_batches(db, "finance") == [b_today]
    hand_over(db, tmp_path, handoff.pending_print_batches(db, "finance"))
    states = letter_states(db)
    assert {states[i][0] for i in early} == {"handed_to_print"} and {states[i][0] for i in late} == {
        "processing"
    }
    # A retry the same evening assigns nothing new; tomorrow the same batch (same id) goes out.
    assert handoff.assign_print_batches(db, "finance", RUN, CTX, 100, max_mb=50, cutoff="15:00") == []
    assert handoff.pending_print_batches(db, "finance", day + timedelta(days=1)) == [b_tomorrow]
    hand_over(db, tmp_path, [b_tomorrow])
    assert {s[0] for s in letter_states(db).values()} == {"handed_to_print"}
    assert sorted(p.name for p in (printhouse.root / "inbox").glob("*.zip")) == sorted(
        [f"{b_today}.zip", f"{b_tomorrow}.zip"]
    )


def test_batches_split_by_megabytes_at_pipeline_level(db, renderer, tmp_path, printhouse):
    ids = paper_letters(db, renderer, tmp_path, 6, seed_no=67)
    biggest = max((tmp_path / "docs").rglob("*.pdf"), key=lambda p: p.stat().st_size).stat().st_size
    max_mb = (2 * biggest + 4096) / (1024 * 1024)  # room for two letters, never three
    batches = handoff.assign_print_batches(db, "finance", RUN, CTX, 100, max_mb=max_mb)
    assert len(batches) == 3
    results = hand_over(db, tmp_path, batches)
    assert all(r["bytes"] <= max_mb * 1024 * 1024 for r in results)
    assert sorted(
        functools.reduce(
            operator.iadd,
            (list(zipfile.ZipFile(tmp_path / "work" / f"{b}.zip").namelist()) for b in batches),
            [],
        )
    ) == sorted([f"{i}.pdf" for i in ids] + ["manifest.csv"] * 3)


def test_an_ack_arriving_before_the_upload_is_recorded_waits_and_is_applied_later(
    db, renderer, tmp_path, printhouse, monkeypatch
):
    paper_letters(db, renderer, tmp_path, 3, seed_no=69)
    [batch] = handoff.assign_print_batches(db, "finance", RUN, CTX, 100)

    def crash(*args, **kwargs):
        raise SystemExit("worker killed after the upload, before the database was updated")

    real_mark = handoff._record_handed_over
    monkeypatch.setattr(handoff, "_record_handed_over", crash)
    with pytest.raises(SystemExit):
        hand_over(db, tmp_path, [batch])
    monkeypatch.setattr(handoff, "_record_handed_over", real_mark)
    process_inbox(printhouse.root)  # the print house is quick: it answers before our rerun

    [o] = collect(db)
    assert o.outcome == "deferred" and "not recorded yet" in o.error
    assert (printhouse.root / "outbox" / f"{batch}.ack.csv").exists()  # left in place, not refused
    assert {s[0] for s in letter_states(db).values()} == {"processing"}

    hand_over(db, tmp_path, [batch])  # the wave's rerun recognises the upload and records it
    [o] = collect(db)
    assert o.outcome == "applied"
    assert {s[:2] for s in letter_states(db).values()} == {("handed_to_print", "posted")}
