"""A print batch is printed once, whenever the hand-over dies.

The hand-over runs in its own process against real PostgreSQL and a real OpenSSH sshd, and is killed
(SIGKILL, as the OOM killer or a lost worker would) at one point of its way: after `uploading` is
committed, before and after the zip's rename into the inbox, before and after the checksum file's
rename, before the final commit, after it. The print house (the simulator on sshd's tree) then
consumes its inbox as a print house does: every complete batch is taken out of the inbox, printed
and acknowledged. The task's retry runs, the print house consumes again, a later rerun runs, and
the print house's own log of printed letters must list every letter exactly once."""

from __future__ import annotations

import hashlib
import io
import signal
import subprocess
import sys
import textwrap
from collections import Counter

import pytest
from pypdf import PdfWriter

from include.dijlepost.outbox import RunContext
from include.dijlepost.printhouse import acks, handoff
from include.dijlepost.printhouse.hook import PrintHouseHook
from include.dijlepost.settings import PROJECT_ROOT
from include.dijlepost.waves import WAVES
from tests.support.work import chunk_work

pytestmark = pytest.mark.integration
RUN = "letters_finance:manual__crash"
CTX = RunContext(
    dag_id="letters_finance",
    run_id="manual__crash",
    task_id="chunk.hand_over_to_print",
    map_index=0,
    try_number=2,
)
ACK_CTX = RunContext(dag_id="print_house_acknowledgements", run_id="manual__ack", task_id="test")
LETTERS = 6

# Where the killed attempt dies, and what the retry must find there once the print house has consumed
# its inbox: nothing complete (it uploads), or the batch taken by the print house (it only records).
KILL_POINTS = {
    "after_uploading_committed": "uploaded",
    "before_zip_rename": "uploaded",
    "after_zip_rename": "uploaded",
    "before_checksum_rename": "uploaded",
    "after_checksum_rename": "taken_by_print_house",
    "before_commit": "taken_by_print_house",
    "after_commit": None,  # nothing left for the retry
}

# Runs one hand-over, as the wave's task does, and kills itself at the named point.
KILLED_ATTEMPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import psycopg
    from include.dijlepost import outbox
    from include.dijlepost.outbox import RunContext
    from include.dijlepost.printhouse import handoff, upload
    from include.dijlepost.printhouse.hook import PrintHouseHook
    from include.dijlepost.waves import WAVES
    from include.dijlepost.work import ChunkWork

    url, point, claim_id, work_dir = sys.argv[1:5]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(module, name, before=None, after=None):
        real = getattr(module, name)
        def wrapper(*args, **kwargs):
            if before and before(*args):
                die()
            result = real(*args, **kwargs)
            if after and after(*args):
                die()
            return result
        setattr(module, name, wrapper)

    zip_rename = lambda sftp, source, target: target.endswith(".zip")
    checksum_rename = lambda sftp, source, target: target.endswith(".zip.sha256")
    always = lambda *args: True
    if point == "after_uploading_committed":
        wrap(handoff, "_record_uploading", after=always)
    elif point == "before_zip_rename":
        wrap(upload, "rename", before=zip_rename)
    elif point == "after_zip_rename":
        wrap(upload, "rename", after=zip_rename)
    elif point == "before_checksum_rename":
        wrap(upload, "rename", before=checksum_rename)
    elif point == "after_checksum_rename":
        wrap(upload, "rename", after=checksum_rename)
    elif point == "before_commit":      # the marking statements ran, their transaction is not committed
        wrap(outbox, "mark_handed_to_print", after=always)
    elif point == "after_commit":
        wrap(handoff, "_record_handed_over", after=always)
    ctx = RunContext(dag_id="letters_finance", run_id="manual__crash", task_id="chunk.hand_over_to_print",
                     map_index=0, try_number=1)
    work = ChunkWork(ctx=ctx, claim_id=claim_id, wave=WAVES["finance"], pseudonym_key=b"", chunk=0)
    with psycopg.connect(url) as conn:
        handoff.hand_over(conn, work, hook=PrintHouseHook(), work_dir=Path(work_dir))
    sys.exit(3)   # not killed: the point was never reached
""")


def one_page_pdf(letter_id: str) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": letter_id})
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def rendered_paper_letters(db, tmp_path, n: int) -> list[str]:
    """n finance letters of chunk 0 of the claim, decided for paper and rendered, as the wave leaves them."""
    ids = [f"CRASH-{i:03d}" for i in range(n)]
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, letter_id in enumerate(ids):
        pdf = one_page_pdf(letter_id)
        path = docs / f"{letter_id}.pdf"
        path.write_bytes(pdf)
        db.execute(
            "INSERT INTO letters (letter_id, department, letter_type, recipient_kind, recipient_id, recipient_name, "
            "street, postal_code, city, country, language, status, claim_run_id, claim_chunk, claimed_at, attempts, "
            "channel, decision_rule, decided_at, pdf_path, pdf_sha256, pdf_pages, rendered_at) VALUES "
            "(%s, 'finance', 'tax_assessment', 'citizen', %s, 'An Peeters', 'Bruul 12', '2800', 'Mechelen', 'BE', "
            "'nl', 'processing', %s, 0, now(), 1, 'paper', 'phase_paper', now(), %s, %s, 1, now())",
            (letter_id, f"R{i}", RUN, str(path), hashlib.sha256(pdf).hexdigest()),
        )
    db.commit()
    return ids


def killed_attempt(pg_url: str, point: str, work_dir) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_ATTEMPT, pg_url, point, RUN, str(work_dir)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, (
        f"the attempt was not killed at {point}:\n{proc.stderr[-3000:]}"
    )
    return proc.returncode


def retry(db, tmp_path, name: str) -> dict:
    """The task's retry (another worker: its own work directory)."""
    return handoff.hand_over(
        db,
        chunk_work(RUN, wave=WAVES["finance"], ctx=CTX, chunk=0),
        hook=PrintHouseHook(),
        work_dir=tmp_path / name,
    )


def states(db) -> Counter:
    rows = db.execute("SELECT status, print_status FROM letters").fetchall()
    db.commit()
    return Counter(rows)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_batch_is_printed_once_whenever_the_hand_over_is_killed(db, pg_url, tmp_path, printhouse, point):
    ids = rendered_paper_letters(db, tmp_path, LETTERS)
    killed_attempt(pg_url, point, tmp_path / "work-1")
    [batch_id] = db.execute("SELECT batch_id FROM print_batches").fetchone()
    db.commit()

    printhouse.answer_as_print_house()  # the print house consumes its inbox meanwhile
    first = retry(db, tmp_path, "work-2")
    printhouse.answer_as_print_house()
    again = retry(db, tmp_path, "work-3")  # a later rerun of the wave
    printhouse.answer_as_print_house()

    assert printhouse.printed_letters() == Counter(dict.fromkeys(ids, 1))
    expected = KILL_POINTS[point]
    if expected is None:
        assert first["batches"] == [] and first["letters"] == 0
    else:
        [result] = first["batches"]
        assert (result["batch_id"], result["evidence"], result["letters"]) == (batch_id, expected, LETTERS)
    assert again["batches"] == []
    assert states(db) == Counter({("handed_to_print", None): LETTERS})
    status, evidence = db.execute("SELECT status, handover_evidence FROM print_batches").fetchone()
    db.commit()
    assert status == "uploaded" and evidence == (expected or "uploaded")
    # Nothing is left in the inbox, and the print house's answer is applied to every letter.
    assert sorted(p.name for p in (printhouse.root / "inbox").iterdir()) == []
    hook = PrintHouseHook()
    with hook.get_managed_conn() as sftp:
        outcomes = acks.collect(db, sftp, hook.outbox_dir, ACK_CTX)
    assert [(o.outcome, o.batch_id, o.counts["accepted"]) for o in outcomes] == [
        ("applied", batch_id, LETTERS)
    ]
    assert states(db) == Counter({("handed_to_print", "posted"): LETTERS})


def test_a_batch_taken_and_cleared_away_is_recognised_by_its_acknowledgement(
    db, pg_url, tmp_path, printhouse
):
    """The print house has taken and answered the batch and no longer lists it among what it took: its
    acknowledgement, still waiting in its outbox (it cannot be applied before the hand-over is
    recorded), is what the retry finds."""
    ids = rendered_paper_letters(db, tmp_path, LETTERS)
    killed_attempt(pg_url, "before_commit", tmp_path / "work-1")
    printhouse.answer_as_print_house()
    for taken in (printhouse.root / "printed").iterdir():
        taken.unlink()
    hook = PrintHouseHook()
    with hook.get_managed_conn() as sftp:
        [deferred] = acks.collect(db, sftp, hook.outbox_dir, ACK_CTX)
    assert deferred.outcome == "deferred"

    [result] = retry(db, tmp_path, "work-2")["batches"]
    printhouse.answer_as_print_house()
    assert result["evidence"] == "acknowledged" and result["letters"] == LETTERS
    assert printhouse.printed_letters() == Counter(dict.fromkeys(ids, 1))
    with hook.get_managed_conn() as sftp:
        [applied] = acks.collect(db, sftp, hook.outbox_dir, ACK_CTX)
    assert applied.outcome == "applied"
    assert states(db) == Counter({("handed_to_print", "posted"): LETTERS})


def test_a_batch_still_in_the_inbox_is_not_sent_again(db, pg_url, tmp_path, printhouse):
    """Killed after the checksum file arrived, before the print house came by: the retry finds the
    complete batch in the inbox and only records the hand-over."""
    ids = rendered_paper_letters(db, tmp_path, LETTERS)
    killed_attempt(pg_url, "after_checksum_rename", tmp_path / "work-1")
    inbox = printhouse.root / "inbox"
    before = {p.name: p.stat().st_mtime_ns for p in inbox.iterdir()}
    [result] = retry(db, tmp_path, "work-2")["batches"]
    assert result["evidence"] == "found_in_inbox"
    assert {p.name: p.stat().st_mtime_ns for p in inbox.iterdir()} == before  # untouched
    printhouse.answer_as_print_house()
    assert printhouse.printed_letters() == Counter(dict.fromkeys(ids, 1))


def test_an_upload_that_died_and_was_never_retried_is_reported_overdue(db, pg_url, tmp_path, printhouse):
    rendered_paper_letters(db, tmp_path, 2)
    killed_attempt(pg_url, "before_zip_rename", tmp_path / "work-1")
    assert acks.overdue_batches(db, "finance", 24) == []
    db.execute("UPDATE print_batches SET upload_started_at = now() - interval '25 hours'")
    db.commit()
    [late] = acks.overdue_batches(db, "finance", 24)
    assert (late["status"], late["letters"]) == ("uploading", 2)
    retry(db, tmp_path, "work-2")
    assert acks.overdue_batches(db, "finance", 24) == []
