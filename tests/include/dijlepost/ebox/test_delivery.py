"""eBox delivery (`ebox/delivery.py`) against real PostgreSQL and the eBox sandbox over HTTPS,
including crashes in the middle of a step: nothing may be lost and nothing may be sent twice."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from include.dijlepost.ebox import delivery
from include.dijlepost.ebox.client import EboxClient, EboxOutageError
from include.dijlepost.printhouse import handoff
from include.dijlepost.printhouse.hook import PrintHouseHook
from include.dijlepost.rollout import set_phase
from tests.support import stages
from tests.support.stages import CTX, KEY, WAVE, WORK, ebox_copies, prepare, seed, statuses
from tests.support.work import chunk_work

pytestmark = pytest.mark.integration
renderer, client = stages.renderer, stages.client  # fixtures


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


def test_crash_after_publishing_then_retry_delivers_each_letter_once(db, ebox, client, renderer, tmp_path):
    seed(db, ebox, 8, active_share=1.0)
    c = prepare(db, client, renderer, tmp_path)
    with pytest.raises(SystemExit):
        delivery.deliver_chunk_to_ebox(
            db,
            WORK.for_chunk(c.chunks[0]),
            client=CrashAfterPublishing(client, survive=3),
            renderer=renderer,
            concurrency=1,
        )
    mid = statuses(db)
    # The three answers the eBox gave before the crash are recorded (answers are written in groups);
    # the letter it accepted last, and those after it, stay in flight.
    assert sum(1 for s in mid.values() if s[0] == "delivered_ebox") == 3
    assert sum(1 for s in mid.values() if s[3] == "in_flight" and s[0] == "processing") == 5

    delivery.deliver_chunk_to_ebox(db, WORK.for_chunk(c.chunks[0]), client=client, renderer=renderer)
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
            WORK.for_chunk(c.chunks[0]),
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

    result = delivery.deliver_chunk_to_ebox(db, WORK.for_chunk(c.chunks[0]), client=client, renderer=renderer)
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
            WORK.for_chunk(c.chunks[0]),
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
            WORK.for_chunk(c.chunks[0]),
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
    delivery.deliver_chunk_to_ebox(db, WORK.for_chunk(c.chunks[0]), client=client, renderer=renderer)
    assert {s[2] for s in statuses(db).values()} == {"no_digital_user"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_PRINTHOUSE_SFTP", __import__("json").dumps(printhouse_dirs.airflow_connection())
    )
    result = handoff.hand_over(
        db,
        WORK.for_chunk(c.chunks[0]),
        hook=PrintHouseHook(),
        work_dir=tmp_path / "work",
    )
    assert result["letters"] == 3 and len(result["batches"]) == 1
    assert {s[0] for s in statuses(db).values()} == {"handed_to_print"}


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
