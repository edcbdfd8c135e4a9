"""The wave stages against real PostgreSQL, the eBox sandbox over HTTPS and sshd, including crashes
in the middle of a step: nothing may be lost and nothing may be sent twice."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from demo import dataset
from include.dijlepost import documents, pipeline
from include.dijlepost.ebox import delivery
from include.dijlepost.ebox.client import EboxClient, EboxOutageError
from include.dijlepost.intake import import_rows
from include.dijlepost.outbox import RunContext, claim
from include.dijlepost.printhouse import handoff
from include.dijlepost.printhouse.hook import PrintHouseHook
from include.dijlepost.rendering import LetterRenderer
from include.dijlepost.rollout import read_state, set_phase
from include.dijlepost.waves import WAVES
from tests.support.work import chunk_work

pytestmark = pytest.mark.integration
KEY = b"test-pseudonym-key-not-secret"
WAVE = WAVES["finance"]
RUN = "letters_finance:manual__1"
CTX = RunContext(dag_id="letters_finance", run_id="manual__1", task_id="test", map_index=-1, try_number=1)


@pytest.fixture(scope="module")
def renderer():
    return LetterRenderer(today=date(2026, 3, 2))


@pytest.fixture
def client(ebox):
    return EboxClient(ebox.config(backoff_base_seconds=0.01, max_attempts=2, timeout_seconds=5))


def seed(db, ebox, n: int, active_share: float, seed_no: int = 3):
    data = dataset.build(
        seed=seed_no,
        mix={"finance": n},
        today=date(2026, 3, 2),
        prefix=f"P{seed_no}",
        ebox_share=active_share,
        mistakes=False,
    )
    data.no_digital_user.clear()
    data.paper_exempt.clear()
    assert not import_rows(db, enumerate(data.letters, start=1)).errors
    for (kind, rid), exclusive in data.ebox_active.items():
        ebox.state.register_recipient(kind, rid, active=True, exclusively_ebox=exclusive)
    return data


def prepare(db, client, renderer, tmp_path, run=RUN, lease=timedelta(hours=3)):
    """claim -> activation -> decide -> render, as the DAG does before branching."""
    c = claim(db, chunk_work(run, wave="finance", ctx=CTX), batch_size=1000, chunk_size=1000, lease=lease)
    delivery.check_activation(
        db, chunk_work(run, key=KEY, ctx=CTX), client=client, freshness=timedelta(days=7)
    )
    pipeline.decide_claim(db, chunk_work(run, wave=WAVE, key=KEY, ctx=CTX), state=read_state(db, "finance"))
    for chunk in c.chunks:
        pipeline.render_chunk(
            db, chunk_work(run, ctx=CTX, chunk=chunk), renderer=renderer, document_root=tmp_path / "docs"
        )
    return c


def statuses(db) -> dict[str, tuple]:
    rows = db.execute("SELECT letter_id, status, channel, decision_rule, ebox_state FROM letters").fetchall()
    db.commit()
    return {r[0]: r[1:] for r in rows}


def ebox_copies(ebox) -> dict[str, int]:
    copies: dict[str, int] = {}
    for p in ebox.state.publications():
        copies[p["idempotency_key"]] = copies.get(p["idempotency_key"], 0) + 1
    return copies


class CrashAfterPublishing:
    """The eBox accepts the letter, then the worker dies before the answer is recorded."""

    def __init__(self, real: EboxClient, survive: int):
        self.real, self.left = real, survive

    def publish(self, pub):
        outcome = self.real.publish(pub)
        self.left -= 1
        if self.left < 0:
            raise SystemExit("worker killed after the eBox accepted the letter")
        return outcome


class LookupLog:
    """The real client; remembers which ids each activation lookup asked the eBox about."""

    def __init__(self, real: EboxClient):
        self.real, self.asked = real, []

    def lookup_activation(self, kind, ids):
        self.asked.append(set(ids))
        return self.real.lookup_activation(kind, ids)


def test_a_chunk_checks_and_decides_only_its_own_letters_and_reuses_fresh_answers(
    db, ebox, client, renderer, tmp_path
):
    from include.dijlepost.recipients import normalize_recipient_id

    seed(db, ebox, 40, active_share=0.5)
    c = claim(
        db, chunk_work(RUN, wave="finance", ctx=CTX), batch_size=1000, chunk_size=10, lease=timedelta(hours=3)
    )
    assert c.chunks == [0, 1, 2, 3]
    recipients = {
        chunk: {
            normalize_recipient_id(k, r)
            for k, r in db.execute(
                "SELECT recipient_kind, recipient_id FROM letters WHERE claim_chunk = %s", (chunk,)
            ).fetchall()
        }
        for chunk in c.chunks
    }
    spy = LookupLog(client)
    state = read_state(db, "finance")

    checked = delivery.check_activation(
        db, chunk_work(RUN, key=KEY, ctx=CTX, chunk=1), client=spy, freshness=timedelta(days=7)
    )
    decided = pipeline.decide_claim(db, chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX, chunk=1), state=state)
    assert set().union(*spy.asked) == recipients[1] and checked["recipients"] == len(recipients[1])
    assert decided["decided"] == 10
    undecided = dict(
        db.execute("SELECT claim_chunk, count(*) FROM letters WHERE decided_at IS NULL GROUP BY 1").fetchall()
    )
    assert undecided == {0: 10, 2: 10, 3: 10}
    assert (
        pipeline.render_chunk(
            db, chunk_work(RUN, ctx=CTX, chunk=1), renderer=renderer, document_root=tmp_path / "docs"
        )["rendered"]
        == 10
    )

    # A retried chunk, and the next chunk, ask only about recipients whose answer is not cached yet.
    spy.asked.clear()
    retried = delivery.check_activation(
        db, chunk_work(RUN, key=KEY, ctx=CTX, chunk=1), client=spy, freshness=timedelta(days=7)
    )
    assert spy.asked == [] and retried["cached_fresh"] == len(recipients[1])
    nxt = delivery.check_activation(
        db, chunk_work(RUN, key=KEY, ctx=CTX, chunk=2), client=spy, freshness=timedelta(days=7)
    )
    assert set().union(set(), *spy.asked) == recipients[2] - recipients[1]
    assert nxt["cached_fresh"] == len(recipients[2] & recipients[1])


def test_a_chunk_is_decided_page_by_page_each_letter_once(db, ebox, client, monkeypatch):
    seed(db, ebox, 10, active_share=0.5)
    c = claim(
        db,
        chunk_work(RUN, wave="finance", ctx=CTX),
        batch_size=1000,
        chunk_size=1000,
        lease=timedelta(hours=3),
    )
    monkeypatch.setattr(pipeline, "_DECIDE_PAGE", 3)  # pages of 3, 3, 3 and 1
    delivery.check_activation(
        db, chunk_work(RUN, key=KEY, ctx=CTX, chunk=c.chunks[0]), client=client, freshness=timedelta(days=7)
    )
    result = pipeline.decide_claim(
        db, chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX, chunk=c.chunks[0]), state=read_state(db, "finance")
    )
    assert result["decided"] == 10
    assert db.execute("SELECT count(*) FROM letters WHERE decided_at IS NULL").fetchone()[0] == 0
    per_letter = db.execute(
        "SELECT letter_id, count(*) FROM letter_events WHERE event = 'decided' GROUP BY 1"
    ).fetchall()
    db.commit()
    assert len(per_letter) == 10 and {n for _, n in per_letter} == {1}


def _render_first_chunk_recording_syncs(
    db, ebox, client, renderer, tmp_path, monkeypatch, syncfs, sync_each_file=False
):
    """Render a 4-letter chunk into a new document root; return what was synced, in order:
    (kind, path, letters recorded as rendered by then), kind 'syncfs' or 'fsync'."""
    import os

    seed(db, ebox, 4, active_share=0.5, seed_no=8)
    c = claim(
        db,
        chunk_work(RUN, wave="finance", ctx=CTX),
        batch_size=1000,
        chunk_size=1000,
        lease=timedelta(hours=3),
    )
    delivery.check_activation(
        db, chunk_work(RUN, key=KEY, ctx=CTX), client=client, freshness=timedelta(days=7)
    )
    pipeline.decide_claim(db, chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX), state=read_state(db, "finance"))
    synced: list[tuple[str, str, int]] = []

    def recorded():
        return db.execute("SELECT count(*) FROM letters WHERE rendered_at IS NOT NULL").fetchone()[0]

    def fsync(fd, real=os.fsync):
        real(fd)
        synced.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}"), recorded()))

    def recording_syncfs(fd):
        synced.append(("syncfs", os.path.realpath(f"/proc/self/fd/{fd}"), recorded()))
        return syncfs(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(documents, "SYNCFS", recording_syncfs if syncfs else None)
    pipeline.render_chunk(
        db,
        chunk_work(RUN, ctx=CTX, chunk=c.chunks[0]),
        renderer=renderer,
        document_root=tmp_path / "docs",
        sync_each_file=sync_each_file,
    )
    assert recorded() == 4
    return synced


def test_rendered_pdfs_and_their_directories_are_on_disk_before_the_rendering_is_recorded(
    db, ebox, client, renderer, tmp_path, monkeypatch
):
    """One syncfs of the document volume, after the last PDF is written, then the directories."""
    synced = _render_first_chunk_recording_syncs(
        db, ebox, client, renderer, tmp_path, monkeypatch, documents.SYNCFS
    )
    root = tmp_path / "docs"
    department = root / "finance"  # created by this first rendering, as is docs/
    directories = [str(d.resolve()) for d in (department, root, tmp_path)]
    assert synced == [("syncfs", str(root.resolve()), 0)] + [("fsync", d, 0) for d in directories]
    assert len(list(department.glob("*.pdf"))) == 4


@pytest.mark.parametrize("why", ["libc has no syncfs", "DIJLEPOST_DOCUMENT_SYNC=file"])
def test_without_syncfs_every_pdf_is_fsynced_before_the_rendering_is_recorded(
    db, ebox, client, renderer, tmp_path, monkeypatch, why
):
    each_file = why.startswith("DIJLEPOST")
    synced = _render_first_chunk_recording_syncs(
        db, ebox, client, renderer, tmp_path, monkeypatch, documents.SYNCFS if each_file else None, each_file
    )
    department = (tmp_path / "docs" / "finance").resolve()
    files = sorted(str(p.resolve()) for p in department.glob("*.pdf"))
    directories = [str(d) for d in (department, department.parent, tmp_path.resolve())]
    assert len(files) == 4
    assert sorted(synced[:4]) == [("fsync", f, 0) for f in files]  # the final files, not temporary ones
    assert synced[4:] == [("fsync", d, 0) for d in directories]


def test_a_failed_sync_of_the_document_volume_fails_the_task_and_records_nothing(
    db, ebox, client, renderer, tmp_path, monkeypatch
):
    import ctypes
    import errno

    seed(db, ebox, 3, active_share=0.5, seed_no=8)
    c = claim(
        db,
        chunk_work(RUN, wave="finance", ctx=CTX),
        batch_size=1000,
        chunk_size=1000,
        lease=timedelta(hours=3),
    )
    delivery.check_activation(
        db, chunk_work(RUN, key=KEY, ctx=CTX), client=client, freshness=timedelta(days=7)
    )
    pipeline.decide_claim(db, chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX), state=read_state(db, "finance"))

    def failing_syncfs(fd):
        ctypes.set_errno(errno.EIO)  # what Linux reports after a failed write-back
        return -1

    monkeypatch.setattr(documents, "SYNCFS", failing_syncfs)
    with pytest.raises(OSError, match="syncfs of the document volume failed"):
        pipeline.render_chunk(
            db,
            chunk_work(RUN, ctx=CTX, chunk=c.chunks[0]),
            renderer=renderer,
            document_root=tmp_path / "docs",
        )
    db.rollback()
    assert db.execute("SELECT count(*) FROM letters WHERE rendered_at IS NOT NULL").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM letter_events WHERE event = 'rendered'").fetchone()[0] == 0
    db.commit()
    monkeypatch.undo()  # the retry renders the chunk again and records it
    assert (
        pipeline.render_chunk(
            db,
            chunk_work(RUN, ctx=CTX, chunk=c.chunks[0]),
            renderer=renderer,
            document_root=tmp_path / "docs",
        )["rendered"]
        == 3
    )


def test_crash_after_publishing_then_retry_delivers_each_letter_once(db, ebox, client, renderer, tmp_path):
    seed(db, ebox, 8, active_share=1.0)
    c = prepare(db, client, renderer, tmp_path)
    with pytest.raises(SystemExit):
        delivery.deliver_chunk_to_ebox(
            db,
            chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX, chunk=c.chunks[0]),
            client=CrashAfterPublishing(client, survive=3),
            renderer=renderer,
            concurrency=1,
        )
    mid = statuses(db)
    # The three answers the eBox gave before the crash are recorded (answers are written in groups);
    # the letter it accepted last, and those after it, stay in flight.
    assert sum(1 for s in mid.values() if s[0] == "delivered_ebox") == 3
    assert sum(1 for s in mid.values() if s[3] == "in_flight" and s[0] == "processing") == 5

    delivery.deliver_chunk_to_ebox(
        db, chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX, chunk=c.chunks[0]), client=client, renderer=renderer
    )
    after = statuses(db)
    assert {s[0] for s in after.values()} == {"delivered_ebox"}
    assert len(ebox.state.publications()) == 8
    assert set(ebox_copies(ebox).values()) == {1}


def test_a_chunk_is_published_page_by_page_and_a_crash_leaves_later_pages_unsent(
    db, ebox, client, renderer, tmp_path, monkeypatch
):
    seed(db, ebox, 7, active_share=1.0, seed_no=6)
    c = prepare(db, client, renderer, tmp_path)
    monkeypatch.setattr(delivery, "_PUBLISH_PAGE", 3)  # pages of 3, 3 and 1
    with pytest.raises(SystemExit):  # the worker dies after the eBox took the 6th letter
        delivery.deliver_chunk_to_ebox(
            db,
            chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX, chunk=c.chunks[0]),
            client=CrashAfterPublishing(client, survive=5),
            renderer=renderer,
            concurrency=1,
        )
    in_order = [
        s
        for _, s in sorted(
            statuses(db).items(),
            key=lambda item: db.execute("SELECT id FROM letters WHERE letter_id = %s", (item[0],)).fetchone()[
                0
            ],
        )
    ]
    db.commit()
    # The answers to letters 1-5 are recorded; letter 6, the last of page 2, reached the eBox but not the
    # database (in flight); page 3 was never marked, never sent.
    assert [s[0] for s in in_order] == ["delivered_ebox"] * 5 + ["processing"] * 2
    assert [s[3] for s in in_order[5:]] == ["in_flight", None]
    assert len(ebox.state.publications()) == 6

    result = delivery.deliver_chunk_to_ebox(
        db, chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX, chunk=c.chunks[0]), client=client, renderer=renderer
    )
    assert result["letters"] == 2 and result["published"] == 1 and result["already_published"] == 1
    assert {s[0] for s in statuses(db).values()} == {"delivered_ebox"}
    assert len(ebox_copies(ebox)) == 7 and set(ebox_copies(ebox).values()) == {1}


def test_in_flight_letter_taken_over_after_phase_change_still_goes_to_ebox_not_paper(
    db, ebox, client, renderer, tmp_path
):
    seed(db, ebox, 4, active_share=1.0, seed_no=5)
    c = prepare(db, client, renderer, tmp_path)
    with pytest.raises(SystemExit):
        delivery.deliver_chunk_to_ebox(
            db,
            chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX, chunk=c.chunks[0]),
            client=CrashAfterPublishing(client, survive=0),
            renderer=renderer,
            concurrency=1,
        )
    # The run died. An administrator switches finance to paper; the next run takes the claims over.
    set_phase(db, "finance", "paper", "incident", "test")
    run2 = "letters_finance:manual__2"
    c2 = prepare(db, client, renderer, tmp_path, run=run2, lease=timedelta(0))
    assert c2.taken_over == 4
    rules = {s[2] for s in statuses(db).values()}
    assert rules == {"ebox_publication_in_flight"}
    for chunk in c2.chunks:
        delivery.deliver_chunk_to_ebox(
            db, chunk_work(run2, wave=WAVE, key=KEY, ctx=CTX, chunk=chunk), client=client, renderer=renderer
        )
    assert {s[0] for s in statuses(db).values()} == {"delivered_ebox"}
    assert set(ebox_copies(ebox).values()) == {1} and len(ebox_copies(ebox)) == 4
    assert handoff.assign_print_batches(db, "finance", run2, CTX, 100) == []


def test_unreachable_ebox_releases_letters_for_the_next_run(db, ebox, client, renderer, tmp_path):
    seed(db, ebox, 3, active_share=1.0, seed_no=9)
    c = prepare(db, client, renderer, tmp_path)
    ebox.state.set_faults(error_rate=1.0)
    with (
        EboxClient(dataclasses.replace(client.config, outage_budget_seconds=2)) as down,
        pytest.raises(EboxOutageError),
    ):
        delivery.deliver_chunk_to_ebox(
            db,
            chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX, chunk=c.chunks[0]),
            client=down,
            renderer=renderer,
        )
    assert {s[0] for s in statuses(db).values()} == {"pending"}
    ebox.state.set_faults()
    run2 = "letters_finance:manual__2"
    c2 = prepare(db, client, renderer, tmp_path, run=run2)
    delivery.deliver_chunk_to_ebox(
        db,
        chunk_work(run2, wave=WAVE, key=KEY, ctx=CTX, chunk=c2.chunks[0]),
        client=client,
        renderer=renderer,
    )
    assert {s[0] for s in statuses(db).values()} == {"delivered_ebox"}
    assert len(ebox.state.publications()) == 3


def test_no_digital_user_goes_to_paper_in_the_same_run(
    db, ebox, client, renderer, tmp_path, printhouse_dirs, monkeypatch
):
    data = seed(db, ebox, 3, active_share=1.0, seed_no=21)
    for kind, rid in data.ebox_active:
        ebox.state.register_recipient(kind, rid, active=True, no_digital_user=True)
    c = prepare(db, client, renderer, tmp_path)
    delivery.deliver_chunk_to_ebox(
        db, chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX, chunk=c.chunks[0]), client=client, renderer=renderer
    )
    assert {s[2] for s in statuses(db).values()} == {"no_digital_user"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_PRINTHOUSE_SFTP", __import__("json").dumps(printhouse_dirs.airflow_connection())
    )
    result = handoff.hand_over(
        db,
        chunk_work(RUN, wave=WAVE, ctx=CTX, chunk=c.chunks[0]),
        hook=PrintHouseHook(),
        work_dir=tmp_path / "work",
    )
    assert result["letters"] == 3 and len(result["batches"]) == 1
    assert {s[0] for s in statuses(db).values()} == {"handed_to_print"}


def test_missing_template_field_quarantines_with_the_field_name(db, ebox, client, renderer, tmp_path):
    data = seed(db, ebox, 2, active_share=0.0, seed_no=41)
    victim = data.letters[0]["letter_id"]
    field = renderer.required_fields(data.letters[0]["letter_type"])[0]
    db.execute("UPDATE letters SET payload = payload - %s WHERE letter_id = %s", (field, victim))
    db.commit()
    prepare(db, client, renderer, tmp_path)
    status, reason = db.execute(
        "SELECT status, quarantine_reason FROM letters WHERE letter_id = %s", (victim,)
    ).fetchone()
    assert status == "quarantined" and field in reason


def test_each_chunk_cuts_and_finds_its_own_print_batches(db, ebox, client, renderer, tmp_path):
    seed(db, ebox, 6, active_share=0.0, seed_no=11)  # no eBox: every letter goes on paper
    c = claim(
        db, chunk_work(RUN, wave="finance", ctx=CTX), batch_size=1000, chunk_size=3, lease=timedelta(hours=3)
    )
    assert len(c.chunks) == 2
    delivery.check_activation(
        db, chunk_work(RUN, key=KEY, ctx=CTX), client=client, freshness=timedelta(days=7)
    )
    pipeline.decide_claim(db, chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX), state=read_state(db, "finance"))
    for chunk in c.chunks:
        pipeline.render_chunk(
            db, chunk_work(RUN, ctx=CTX, chunk=chunk), renderer=renderer, document_root=tmp_path / "docs"
        )
    chunk_of = dict(db.execute("SELECT letter_id, claim_chunk FROM letters").fetchall())
    db.commit()

    first = handoff.assign_print_batches(db, "finance", RUN, CTX, 100, chunk=c.chunks[0])
    batch_of = dict(
        db.execute(
            "SELECT letter_id, print_batch_id FROM letters WHERE print_batch_id IS NOT NULL"
        ).fetchall()
    )
    db.commit()
    assert first and {chunk_of[i] for i in batch_of} == {c.chunks[0]} and set(batch_of.values()) == set(first)
    # The other chunk has nothing due yet; this chunk finds exactly its own batches, also on a retry.
    assert handoff.pending_print_batches(db, "finance", claim_id=RUN, chunk=c.chunks[1]) == []
    assert handoff.pending_print_batches(db, "finance", claim_id=RUN, chunk=c.chunks[0]) == first
    assert handoff.assign_print_batches(db, "finance", RUN, CTX, 100, chunk=c.chunks[0]) == []

    second = handoff.assign_print_batches(db, "finance", RUN, CTX, 100, chunk=c.chunks[1])
    assert second and not set(first) & set(second)
    assert sorted(handoff.pending_print_batches(db, "finance")) == sorted(first + second)


# --------------------------------------------------------------------------- what a 409 meant (unit)


class _Federation:
    """Answers lookup_activation from a dict, or raises `error`; records what it was asked."""

    def __init__(self, answers=None, error=None):
        self.answers, self.error, self.asked = answers or {}, error, []

    def lookup_activation(self, kind, ids):
        from include.dijlepost.ebox.client import Activation

        self.asked.append((kind, list(ids)))
        if self.error:
            raise self.error
        return {i: self.answers.get((kind, i), Activation(False)) for i in ids}


def _conflict(letter_id, kind, recipient_id):
    return {"letter_id": letter_id, "recipient_kind": kind, "recipient_id": recipient_id}


def test_a_409_is_settled_by_the_recipients_last_connection():
    from include.dijlepost.ebox.client import Activation

    citizen, never, company = "85073003328", "85073003427", "0123456749"
    fed = _Federation(
        {
            ("citizen", citizen): Activation(True, False, "2026-05-01T10:00:00Z"),
            ("citizen", never): Activation(True, False, None),
            ("enterprise", company): Activation(True, True, "2026-01-01T00:00:00Z"),
        }
    )
    letters = [
        _conflict("L1", "citizen", citizen),
        _conflict("L2", "citizen", never),
        _conflict("L3", "enterprise", company),
        _conflict("L4", "citizen", citizen),
        _conflict("L5", "enterprise", "0403170701"),
    ]  # no eBox (any more)
    settled = {lid: r.kind for lid, r in delivery.settle_already_published(fed, letters)}
    assert settled == {
        "L1": "already_published",
        "L2": "never_connected",
        "L3": "already_published",
        "L4": "already_published",
        "L5": "no_active_ebox",
    }
    # one search per recipient kind, each recipient once
    assert sorted(fed.asked) == [
        ("citizen", sorted({citizen, never})),
        ("enterprise", ["0123456749", "0403170701"]),
    ]


def test_a_409_waits_when_the_search_is_unavailable_and_any_other_error_fails_the_task():
    from include.dijlepost.ebox.client import EboxConfigurationError, EboxError, EboxUnavailableError

    letters = [_conflict("L1", "citizen", "85073003328")]
    unavailable = EboxUnavailableError("citizenEboxConsents/search unavailable: HTTP 503")
    ((lid, result),) = delivery.settle_already_published(_Federation(error=unavailable), letters)
    assert (lid, result.kind) == ("L1", "retry_later") and "HTTP 503" in result.message
    for error in (
        EboxConfigurationError("403", "client_id"),
        EboxError("answered something other than a list"),
    ):
        with pytest.raises(type(error)):
            delivery.settle_already_published(_Federation(error=error), letters)
