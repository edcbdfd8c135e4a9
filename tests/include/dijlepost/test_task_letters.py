"""What a delivery task did, read back from the audit trail: the ids it names in its log, and what a
rerun finds of the earlier tries (real PostgreSQL)."""

from __future__ import annotations

import logging

import pytest

from include.dijlepost import task_letters
from include.dijlepost.outbox import RunContext, record_events
from include.dijlepost.task_letters import (
    EBOX_EVENTS,
    PRINT_EVENTS,
    describe,
    earlier_tries,
    name_letters,
)

pytestmark = pytest.mark.integration

TRY_1 = RunContext("letters_finance", "manual__1", "chunk.hand_over_to_print", 3, 1)
TRY_2 = RunContext("letters_finance", "manual__1", "chunk.hand_over_to_print", 3, 2)


def record(db, ctx, event, ids, **details):
    with db.cursor() as cur:
        record_events(cur, ctx, [(i, event, details) for i in ids])
    db.commit()


def lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "dijlepost"]


def test_a_try_names_each_letter_it_handed_over_by_batch_in_compact_lines(db, caplog, monkeypatch):
    monkeypatch.setattr(task_letters, "IDS_PER_LINE", 2)
    record(db, TRY_1, "handed_to_print", ["F-3", "F-1", "F-2"], batch_id="B-1")
    record(db, TRY_1, "handed_to_print", ["F-4"], batch_id="B-2")
    record(db, TRY_1, "assigned_to_print_batch", ["F-9"], batch_id="B-3")  # not a hand-over
    # the same task of another chunk, and of another run: not this try's
    record(
        db,
        RunContext(TRY_1.dag_id, "manual__1", TRY_1.task_id, 4, 1),
        "handed_to_print",
        ["G-1"],
        batch_id="B-4",
    )
    record(
        db,
        RunContext(TRY_1.dag_id, "manual__2", TRY_1.task_id, 3, 1),
        "handed_to_print",
        ["H-1"],
        batch_id="B-5",
    )
    with caplog.at_level(logging.INFO, logger="dijlepost"):
        named = name_letters(db, TRY_1, "print_letters", PRINT_EVENTS, department="finance", chunk=3)
    assert named == 4
    assert lines(caplog) == [
        "event=print_letters department=finance chunk=3 outcome=handed_to_print batch_id=B-1 part=1/2 letters=F-1,F-2",
        "event=print_letters department=finance chunk=3 outcome=handed_to_print batch_id=B-1 part=2/2 letters=F-3",
        "event=print_letters department=finance chunk=3 outcome=handed_to_print batch_id=B-2 part=1/1 letters=F-4",
    ]


def test_a_rerun_finds_what_the_earlier_try_handed_over_and_names_nothing_itself(db, caplog):
    record(db, TRY_1, "handed_to_print", ["F-1", "F-2"], batch_id="B-1")
    with caplog.at_level(logging.INFO, logger="dijlepost"):
        assert name_letters(db, TRY_2, "print_letters", PRINT_EVENTS, chunk=3) == 0
    assert lines(caplog) == []
    found = earlier_tries(db, TRY_2, PRINT_EVENTS)
    assert describe(found, PRINT_EVENTS) == "already handed over in try 1: batch B-1, 2 letters"
    assert earlier_tries(db, TRY_1, PRINT_EVENTS) == []  # try 1 had no try before it


def test_an_ebox_rerun_says_what_each_earlier_try_delivered_and_rerouted(db):
    ctx = lambda n: RunContext("letters_gas", "manual__7", "chunk.deliver_to_ebox", 0, n)  # noqa: E731
    record(db, ctx(1), "delivered_ebox", ["G-1", "G-2"], message_id="m")
    record(db, ctx(1), "rerouted_to_paper", ["G-3"], rule="no_digital_user")
    record(db, ctx(2), "delivered_ebox", ["G-4"], message_id="m")
    found = earlier_tries(db, ctx(3), EBOX_EVENTS)
    assert describe(found, EBOX_EVENTS) == (
        "already delivered to the eBox in try 1: 2 letters; rerouted to paper in try 1: 1 letter; "
        "delivered to the eBox in try 2: 1 letter"
    )


def test_a_rerun_task_accounts_for_the_earlier_try_and_counts_its_letters(db, caplog):
    from include.dijlepost.task_letters import account_for_task, done_earlier
    from tests.support.work import chunk_work

    record(db, TRY_1, "handed_to_print", ["F-1", "F-2"], batch_id="B-1")
    work = chunk_work("letters_finance:manual__1", chunk=3, ctx=TRY_2)
    with caplog.at_level(logging.INFO, logger="dijlepost"):
        earlier = account_for_task(db, work, PRINT_EVENTS, "print_letters", "print_handed_over_earlier")
    assert lines(caplog) == [
        "event=print_handed_over_earlier department=finance chunk=3 "
        'found="already handed over in try 1: batch B-1, 2 letters"'
    ]
    assert done_earlier({"batches": []}, earlier) == {"batches": [], "done_earlier": 2}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dijlepost"):  # the first try: its own letters, nothing earlier
        assert (
            account_for_task(
                db,
                chunk_work("letters_finance:manual__1", chunk=3, ctx=TRY_1),
                PRINT_EVENTS,
                "print_letters",
                "x",
            )
            == []
        )
    assert [line.split(" letters=")[1] for line in lines(caplog)] == ["F-1,F-2"]
