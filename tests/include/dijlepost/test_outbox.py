"""The outbox state machine (`include.dijlepost.outbox`) against a real PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from datetime import timedelta

import psycopg
import pytest

from include.dijlepost import outbox
from include.dijlepost.outbox import RunContext, claim, iter_letters_in_claim, quarantine, release_for_retry
from include.dijlepost.work import ChunkWork
from tests.support.work import chunk_work

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)
NRN = "85073003328"


def ctx(run_id: str, dag_id: str = "letters_finance") -> RunContext:
    return RunContext(dag_id=dag_id, run_id=run_id, task_id="claim", map_index=-1, try_number=1)


def work(claim_id: str) -> ChunkWork:
    """The finance wave's work on the claim `claim_id`, its task context named after it."""
    return chunk_work(claim_id, ctx=ctx(claim_id))


def add_letters(db, n: int, department: str = "finance", prefix: str | None = None, **columns) -> list[str]:
    """Insert n letters (in id order) straight into the outbox, as a department system would."""
    prefix = prefix or department[:3].upper()
    letter_type = {"finance": "invoice", "gas": "gas_finding", "economy_housing": "premium_decision"}[
        department
    ]
    ids = []
    start = db.execute("SELECT count(*) FROM letters").fetchone()[0]
    with db.cursor() as cur:
        for i in range(n):
            lid = f"{prefix}-{start + i:05d}"
            cols = {
                "letter_id": lid,
                "department": department,
                "letter_type": letter_type,
                "recipient_kind": "citizen",
                "recipient_id": NRN,
                "recipient_name": "Test Person",
                "street": "Bruul 1",
                "postal_code": "2800",
                "city": "Mechelen",
                "language": "nl",
                **columns,
            }
            cur.execute(
                f"INSERT INTO letters ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                list(cols.values()),
            )
            ids.append(lid)
    db.commit()
    return ids


def held(db, claim_id: str) -> dict[str, int]:
    """letter_id -> chunk of the letters a run holds."""
    rows = db.execute(
        "SELECT letter_id, claim_chunk FROM letters WHERE claim_run_id = %s AND status = 'processing' "
        "ORDER BY id",
        (claim_id,),
    ).fetchall()
    db.commit()
    return dict(rows)


def claimed_events(db) -> Counter:
    rows = db.execute("SELECT letter_id FROM letter_events WHERE event = 'claimed'").fetchall()
    db.commit()
    return Counter(r[0] for r in rows)


def one(db, sql: str, *params):
    value = db.execute(sql, params).fetchone()
    db.commit()
    return value


# --------------------------------------------------------------------------- claim


def test_claim_takes_the_oldest_letters_up_to_batch_size_in_numbered_chunks(db):
    ids = add_letters(db, 23)
    c = claim(db, work("run-1"), batch_size=10, chunk_size=4, lease=HOUR)

    assert (c.claim_id, c.count, c.chunks, c.taken_over) == ("run-1", 10, [0, 1, 2], 0)
    h = held(db, "run-1")
    assert list(h) == ids[:10]
    assert Counter(h.values()) == {0: 4, 1: 4, 2: 2}
    assert [h[i] for i in ids[:10]] == sorted(h.values())  # chunks follow the letter order
    assert one(db, "SELECT count(*) FROM letters WHERE status = 'pending'")[0] == 13
    assert one(
        db,
        "SELECT min(attempts), max(attempts), bool_and(claimed_at IS NOT NULL) FROM letters "
        "WHERE claim_run_id = 'run-1'",
    ) == (1, 1, True)
    events = db.execute(
        "SELECT letter_id, details, dag_id, run_id, task_id, map_index, try_number "
        "FROM letter_events WHERE event = 'claimed' ORDER BY letter_id"
    ).fetchall()
    db.commit()
    assert [e[0] for e in events] == ids[:10]
    assert all(
        tuple(e[1:]) == ({"taken_over": False}, "letters_finance", "run-1", "claim", -1, 1) for e in events
    )


def test_successive_runs_share_the_outbox_until_it_is_empty(db):
    ids = add_letters(db, 23)
    counts = [
        claim(
            db,
            work(f"run-{i}"),
            batch_size=10,
            chunk_size=4,
            lease=HOUR,
        )
        for i in range(4)
    ]
    assert [c.count for c in counts] == [10, 10, 3, 0]
    assert [c.chunks for c in counts] == [[0, 1, 2], [0, 1, 2], [0], []]
    assert sorted(lid for i in range(3) for lid in held(db, f"run-{i}")) == ids
    assert claimed_events(db) == Counter(dict.fromkeys(ids, 1))


def test_chunk_size_larger_than_batch_gives_one_chunk(db):
    add_letters(db, 5)
    c = claim(db, work("r"), batch_size=50, chunk_size=500, lease=HOUR)
    assert (c.count, c.chunks) == (5, [0])


def test_a_big_claim_gets_bigger_chunks_not_more_of_them_and_the_last_ones_small(db):
    ids = add_letters(db, 23)
    c = claim(
        db,
        work("big"),
        batch_size=20,
        chunk_size=2,
        lease=HOUR,
        max_chunks=3,
    )
    assert (c.count, c.chunks) == (20, [0, 1, 2])
    h = held(db, "big")
    # 3 chunks, shrinking 3 : 2 : 1 (the chunks rendered last are the small ones): 10, 7 and 3 letters
    assert Counter(h.values()) == {0: 10, 1: 7, 2: 3}
    assert [h[i] for i in ids[:20]] == sorted(h.values())
    # A claim that fits max_chunks at chunk_size keeps chunk_size.
    small = claim(
        db,
        work("small"),
        batch_size=3,
        chunk_size=2,
        lease=HOUR,
        max_chunks=3,
    )
    assert Counter(held(db, "small").values()) == {0: 2, 1: 1} and small.chunks == [0, 1]


def test_the_chunks_of_a_big_claim_shrink_linearly_and_cover_it_once(db):
    add_letters(db, 500)
    c = claim(
        db,
        work("big"),
        batch_size=500,
        chunk_size=10,
        lease=HOUR,
        max_chunks=7,
    )
    sizes = [n for _, n in sorted(Counter(held(db, "big").values()).items())]
    assert c.chunks == list(range(7)) and sum(sizes) == 500 == c.count
    assert all(a > b for a, b in itertools.pairwise(sizes))  # every chunk smaller than the one before
    assert [round(n / (500 / 28)) for n in sizes] == [7, 6, 5, 4, 3, 2, 1]  # shares 7 : 6 : ... : 1 of 28


def test_a_chunk_is_read_page_by_page_in_id_order_each_letter_once(db):
    add_letters(db, 23)
    claim(db, work("paged"), batch_size=23, chunk_size=23, lease=HOUR)
    whole = list(iter_letters_in_claim(db, "paged", 0, page=1000))  # one page
    assert list(iter_letters_in_claim(db, "paged", 0, page=5)) == whole  # 5 pages, the last of 3
    assert list(iter_letters_in_claim(db, "paged", 0, page=23)) == whole  # a full last page
    assert list(iter_letters_in_claim(db, "paged", 1, page=5)) == []
    assert db.info.transaction_status == 0  # no transaction left open


def test_rerun_of_the_same_run_keeps_its_letters_and_claims_nothing_new(db):
    ids = add_letters(db, 30)
    first = claim(db, work("run-A"), batch_size=10, chunk_size=4, lease=HOUR)
    before = held(db, "run-A")

    again = claim(db, work("run-A"), batch_size=10, chunk_size=4, lease=HOUR)
    assert (again.count, again.chunks, again.taken_over) == (first.count, first.chunks, 0)
    assert held(db, "run-A") == before
    assert one(db, "SELECT max(attempts) FROM letters")[0] == 1
    assert sum(claimed_events(db).values()) == 10

    smaller = claim(db, work("run-A"), batch_size=4, chunk_size=4, lease=HOUR)
    assert smaller.count == 10 and held(db, "run-A") == before  # nothing is given back either

    bigger = claim(db, work("run-A"), batch_size=15, chunk_size=4, lease=HOUR)
    after = held(db, "run-A")
    assert bigger.count == 15 and list(after) == ids[:15]
    assert {k: after[k] for k in before} == before  # earlier chunks unchanged
    assert {after[k] for k in ids[10:15]} == {3, 4}  # new chunks continue the numbering
    assert bigger.chunks == [0, 1, 2, 3, 4]


def test_claim_leaves_other_departments_alone(db):
    gas = add_letters(db, 4, department="gas")
    fin = add_letters(db, 3)
    eh = add_letters(db, 2, department="economy_housing")
    c = claim(
        db,
        work("fin-run"),
        batch_size=100,
        chunk_size=10,
        lease=HOUR,
    )
    assert c.count == 3 and sorted(held(db, "fin-run")) == sorted(fin)
    rows = db.execute(
        "SELECT letter_id, status, claim_run_id FROM letters WHERE department <> 'finance'"
    ).fetchall()
    db.commit()
    assert sorted(r[0] for r in rows) == sorted(gas + eh)
    assert {(r[1], r[2]) for r in rows} == {("pending", None)}


def test_expired_claim_of_another_run_is_taken_over(db):
    ids = add_letters(db, 6)
    claim(
        db,
        work("dead-run"),
        batch_size=6,
        chunk_size=10,
        lease=HOUR,
    )
    expired, young, batched = ids[:2], ids[2:4], ids[4:6]
    db.execute(
        "UPDATE letters SET claimed_at = now() - interval '3 hours', channel = 'ebox', "
        "decision_rule = 'ebox_active', decided_at = now(), ebox_state = 'in_flight' "
        "WHERE letter_id = ANY(%s)",
        (expired,),
    )
    db.execute(
        "UPDATE letters SET claimed_at = now() - interval '30 minutes' WHERE letter_id = ANY(%s)", (young,)
    )
    db.execute(
        "UPDATE letters SET claimed_at = now() - interval '3 hours', print_batch_id = 'PB-1' "
        "WHERE letter_id = ANY(%s)",
        (batched,),
    )
    db.commit()

    c = claim(
        db,
        work("new-run"),
        batch_size=10,
        chunk_size=10,
        lease=timedelta(hours=2),
    )

    assert (c.count, c.taken_over) == (2, 2)
    assert sorted(held(db, "new-run")) == expired
    assert sorted(held(db, "dead-run")) == young + batched
    rows = db.execute(
        "SELECT attempts, channel, decision_rule, decided_at, ebox_state FROM letters "
        "WHERE letter_id = ANY(%s)",
        (expired,),
    ).fetchall()
    assert set(rows) == {(2, None, None, None, "in_flight")}  # re-decided, but the eBox state is kept
    details = db.execute(
        "SELECT details FROM letter_events WHERE event = 'claimed' AND run_id = 'new-run'"
    ).fetchall()
    db.commit()
    assert [d[0] for d in details] == [{"taken_over": True}] * 2


def test_takeover_and_pending_letters_together_respect_the_batch(db):
    ids = add_letters(db, 8)
    claim(db, work("dead"), batch_size=3, chunk_size=10, lease=HOUR)
    db.execute("UPDATE letters SET claimed_at = now() - interval '1 day' WHERE claim_run_id = 'dead'")
    db.commit()
    c = claim(db, work("next"), batch_size=5, chunk_size=2, lease=HOUR)
    assert (c.count, c.taken_over, c.chunks) == (5, 3, [0, 1, 2])
    assert list(held(db, "next")) == ids[:5]


def test_a_run_does_not_take_over_its_own_old_claim(db):
    add_letters(db, 2)
    claim(db, work("self"), batch_size=2, chunk_size=10, lease=HOUR)
    db.execute("UPDATE letters SET claimed_at = now() - interval '1 day'")
    db.commit()
    c = claim(db, work("self"), batch_size=2, chunk_size=10, lease=HOUR)
    assert (c.count, c.taken_over) == (2, 0)
    assert one(db, "SELECT max(attempts) FROM letters")[0] == 1


@pytest.mark.parametrize("status", ["delivered_ebox", "handed_to_print", "quarantined"])
def test_final_letters_are_never_claimed(db, status):
    add_letters(
        db,
        3,
        status=status,
        final_at="2025-01-01T00:00:00Z",
        claim_run_id="old",
        claimed_at="2025-01-01T00:00:00Z",
        quarantine_reason="r" if status == "quarantined" else None,
    )
    c = claim(db, work("r"), batch_size=10, chunk_size=10, lease=timedelta(0))
    assert (c.count, c.taken_over) == (0, 0)
    assert one(db, "SELECT count(*) FROM letters WHERE status = %s AND claim_run_id = 'old'", status)[0] == 3
    assert claimed_events(db) == Counter()


def test_concurrent_claims_never_share_a_letter_and_together_take_all(db, pg_url):
    ids = add_letters(db, 1200)
    add_letters(db, 20, department="gas")
    start = threading.Barrier(3)
    reported: dict[str, int] = {}
    failures: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            with psycopg.connect(pg_url) as conn:
                start.wait()
                for round_no in range(1000):
                    run_id = f"{name}-{round_no}"
                    c = claim(
                        conn,
                        chunk_work(run_id, ctx=ctx(run_id)),
                        batch_size=5,
                        chunk_size=2,
                        lease=HOUR,
                    )
                    reported[run_id] = c.count
                    if c.count == 0:
                        break
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures
    assert not any(t.is_alive() for t in threads)

    assert sum(reported.values()) == len(ids)
    assert max(reported.values()) <= 5
    assert sum(1 for r, n in reported.items() if n and r.startswith("a")) > 0
    rows = db.execute(
        "SELECT letter_id, status, claim_run_id, attempts FROM letters WHERE department = 'finance'"
    ).fetchall()
    db.commit()
    assert {r[1] for r in rows} == {"processing"}
    assert {r[3] for r in rows} == {1}
    per_run = Counter(r[2] for r in rows)
    assert per_run == Counter({r: n for r, n in reported.items() if n})
    assert claimed_events(db) == Counter(dict.fromkeys(ids, 1))
    assert one(db, "SELECT count(*) FROM letters WHERE department = 'gas' AND status = 'pending'")[0] == 20


# --------------------------------------------------------------------------- quarantine and retry


def test_quarantine_acts_once_and_only_on_the_runs_processing_letter(db):
    ids = add_letters(db, 3)
    claim(db, work("run-q"), batch_size=2, chunk_size=10, lease=HOUR)
    with db.cursor() as cur:
        assert (
            quarantine(cur, ctx("run-q"), ids[0], "run-q", "render failed: missing amount", "render") is True
        )
        assert quarantine(cur, ctx("run-q"), ids[0], "run-q", "another reason", "render") is False
        assert quarantine(cur, ctx("other"), ids[1], "other-run", "wrong run", "render") is False
        assert quarantine(cur, ctx("run-q"), ids[2], "run-q", "not claimed", "render") is False
    db.commit()
    rows = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT letter_id, status, quarantine_reason, final_at IS NOT NULL FROM letters"
        ).fetchall()
    }
    assert rows[ids[0]] == ("quarantined", "render failed: missing amount", True)
    assert rows[ids[1]] == ("processing", None, False)
    assert rows[ids[2]] == ("pending", None, False)
    events = db.execute("SELECT letter_id, details FROM letter_events WHERE event = 'quarantined'").fetchall()
    db.commit()
    assert events == [(ids[0], {"stage": "render", "reason": "render failed: missing amount"})]
    assert (
        claim(
            db,
            work("later"),
            batch_size=10,
            chunk_size=10,
            lease=HOUR,
        ).count
        == 1
    )  # only ids[2]
    assert ids[0] not in held(db, "later")


def test_a_letter_whose_publication_never_left_is_released_without_its_in_flight(db):
    ids = add_letters(db, 2)
    claim(db, work("run-n"), batch_size=2, chunk_size=10, lease=HOUR)
    db.execute("UPDATE letters SET ebox_state = 'in_flight' WHERE letter_id = ANY(%s)", (ids,))
    with db.cursor() as cur:
        assert release_for_retry(cur, ctx("run-n"), ids[0], "run-n", "ebox: stopped", never_sent=True)
        assert release_for_retry(
            cur, ctx("run-n"), ids[1], "run-n", "ebox: stopped", details={"ebox": "unconfirmed"}
        )
    db.commit()
    rows = dict(db.execute("SELECT letter_id, ebox_state FROM letters").fetchall())
    assert rows == {ids[0]: None, ids[1]: "in_flight"}  # only what never reached the eBox is cleared
    details = dict(
        db.execute(
            "SELECT letter_id, details FROM letter_events WHERE event = 'released_for_retry'"
        ).fetchall()
    )
    db.commit()
    assert details[ids[0]] == {"error": "ebox: stopped", "never_sent": True}
    assert details[ids[1]] == {"error": "ebox: stopped", "ebox": "unconfirmed"}


def test_release_for_retry_acts_once_and_the_letter_is_claimed_again(db):
    ids = add_letters(db, 2)
    claim(db, work("run-r"), batch_size=2, chunk_size=10, lease=HOUR)
    db.execute("UPDATE letters SET ebox_state = 'in_flight' WHERE letter_id = %s", (ids[0],))
    with db.cursor() as cur:
        assert release_for_retry(cur, ctx("run-r"), ids[0], "run-r", "eBox 503") is True
        assert release_for_retry(cur, ctx("run-r"), ids[0], "run-r", "eBox 503 again") is False
        assert release_for_retry(cur, ctx("x"), ids[1], "another-run", "nope") is False
    db.commit()
    assert one(
        db,
        "SELECT status, claim_run_id, claim_chunk, claimed_at, last_error, ebox_state FROM letters "
        "WHERE letter_id = %s",
        ids[0],
    ) == ("pending", None, None, None, "eBox 503", "in_flight")
    assert held(db, "run-r") == {ids[1]: 0}
    with db.cursor() as cur:  # a released letter is no longer the run's to quarantine
        assert quarantine(cur, ctx("run-r"), ids[0], "run-r", "late", "ebox") is False
    db.commit()
    assert one(db, "SELECT count(*) FROM letter_events WHERE event = 'released_for_retry'")[0] == 1

    c = claim(db, work("run-s"), batch_size=5, chunk_size=10, lease=HOUR)
    assert c.count == 1 and list(held(db, "run-s")) == [ids[0]]
    assert one(db, "SELECT attempts, ebox_state FROM letters WHERE letter_id = %s", ids[0]) == (
        2,
        "in_flight",
    )


def test_quarantine_in_the_callers_transaction_can_be_rolled_back(db):
    ids = add_letters(db, 1)
    claim(db, work("run-t"), batch_size=1, chunk_size=1, lease=HOUR)
    with db.cursor() as cur:
        assert quarantine(cur, ctx("run-t"), ids[0], "run-t", "r", "render")
    db.rollback()
    assert one(db, "SELECT status FROM letters")[0] == "processing"
    assert one(db, "SELECT count(*) FROM letter_events WHERE event = 'quarantined'")[0] == 0


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE letters SET status = 'delivered_ebox'",
        "UPDATE letters SET status = 'handed_to_print'",
        "UPDATE letters SET status = 'quarantined', quarantine_reason = 'x'",
        "UPDATE letters SET status = 'quarantined', final_at = now()",
        "UPDATE letters SET final_at = now()",
        "UPDATE letters SET channel = 'fax'",
        "UPDATE letters SET status = 'sent', final_at = now()",
    ],
)
def test_schema_refuses_inconsistent_states(db, sql):
    add_letters(db, 1)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(sql)
    db.rollback()
    assert one(db, "SELECT status, final_at FROM letters") == ("pending", None)


def test_final_status_with_final_at_is_accepted(db):
    add_letters(db, 1)
    db.execute("UPDATE letters SET status = 'delivered_ebox', final_at = now()")
    db.commit()
    assert one(db, "SELECT status FROM letters")[0] == "delivered_ebox"


def test_the_letters_of_a_claim_filter_by_chunk_and_condition(db):
    ids = add_letters(db, 5)
    claim(db, work("run-l"), batch_size=5, chunk_size=2, lease=HOUR)
    db.execute("UPDATE letters SET decided_at = now() WHERE letter_id = %s", (ids[0],))
    db.commit()

    def held(**kw):
        return [r["letter_id"] for r in iter_letters_in_claim(db, kw.pop("run", "run-l"), **kw)]

    assert held() == ids
    assert held(chunk=1) == ids[2:4]
    assert held(where="decided_at IS NULL") == ids[1:]
    assert held(run="another-run") == []


def test_outcome_counts_follow_the_letters_a_run_claimed(db):
    ids = add_letters(db, 4)
    claim(db, work("run-o"), batch_size=4, chunk_size=10, lease=HOUR)
    with db.cursor() as cur:
        quarantine(cur, ctx("run-o"), ids[0], "run-o", "x", "decide")
    db.execute(
        "UPDATE letters SET channel = 'paper', decision_rule = 'no_ebox' WHERE letter_id = ANY(%s)",
        (ids[1:3],),
    )
    db.commit()
    out = outbox.outcome_counts(db, "letters_finance", "run-o")
    assert out["by_status"] == {"processing": 3, "quarantined": 1}
    assert out["by_rule"] == {"-": 2, "no_ebox": 2}
    assert outbox.outcome_counts(db, "letters_gas", "run-o")["by_status"] == {}


def _plan_for_one_letter(db, letter_id: str, run_id: str) -> str:
    """The plan of the statement quarantine() and release_for_retry() use for a single letter."""
    rows = db.execute(
        "EXPLAIN UPDATE letters SET updated_at = now() WHERE letter_id = %s AND claim_run_id = %s "
        "AND status = 'processing'",
        (letter_id, run_id),
    ).fetchall()
    db.rollback()
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize(
    "threshold, expected_index", [(50, "letters_letter_id_key"), (10**9, "letters_claim_idx")]
)
def test_a_big_claim_refreshes_the_statistics_so_one_letter_is_found_by_its_id(
    db, monkeypatch, threshold, expected_index
):
    # The statistics describe the outbox before the claim: every letter pending, the claim index empty.
    ids = add_letters(db, 400)
    db.execute("ANALYZE letters")
    db.commit()
    monkeypatch.setattr(outbox, "ANALYZE_AFTER_CLAIMING", threshold)
    claim(
        db,
        work("big-run"),
        batch_size=400,
        chunk_size=100,
        lease=HOUR,
    )
    # Refreshed (threshold 50): the planner knows the claim holds 400 letters and probes the unique
    # letter_id index. Not refreshed: it believes the claim is empty and scans the claim for one letter.
    assert expected_index in _plan_for_one_letter(db, ids[200], "big-run")


# --------------------------------------------------------------------------- the state machine


def status(db, letter_id: str) -> str:
    return one(db, "SELECT status FROM letters WHERE letter_id = %s", letter_id)[0]


def test_every_final_state_is_reached_only_from_processing(db):
    """A named function acts only on a letter in the state its transition starts from: on any other
    it changes nothing and says so (an empty set or False)."""
    [lid] = add_letters(db, 1)
    c = ctx("run-a")
    with db.cursor() as cur:  # still pending: nothing may finish it
        assert outbox.mark_delivered_ebox(cur, c, "run-a", [(lid, "m-1", "published", None)]) == set()
        assert outbox.mark_handed_to_print(cur, c, "b-1", [lid], "0" * 64) == set()
        assert outbox.quarantine(cur, c, lid, "run-a", "test", stage="test") is False
        assert outbox.release_for_retry(cur, c, lid, "run-a", "test") is False
    db.commit()
    assert status(db, lid) == outbox.Status.PENDING
    claim(db, chunk_work("run-a", ctx=c), batch_size=10, chunk_size=10, lease=HOUR)
    with db.cursor() as cur:
        assert (
            outbox.mark_delivered_ebox(cur, c, "run-b", [(lid, "m-1", "published", None)]) == set()
        )  # not its claim
        assert outbox.mark_delivered_ebox(
            cur, c, "run-a", [(lid, "m-1", "published", "2027-12-02T00:00:00Z")]
        ) == {lid}
        assert (
            outbox.mark_delivered_ebox(cur, c, "run-a", [(lid, "m-2", "published", None)]) == set()
        )  # done once
        assert outbox.quarantine(cur, c, lid, "run-a", "late", stage="test") is False
    db.commit()
    assert one(
        db,
        "SELECT status, ebox_message_id, ebox_expires_at IS NOT NULL FROM letters WHERE letter_id = %s",
        lid,
    ) == ("delivered_ebox", "m-1", True)


def test_only_a_letter_handed_to_print_can_be_quarantined_by_the_print_house(db):
    a, b = add_letters(db, 2)
    c = ctx("run-p")
    claim(db, chunk_work("run-p", ctx=c), batch_size=10, chunk_size=10, lease=HOUR)
    with db.cursor() as cur:
        assert outbox.assign_to_print_batch(cur, c, "batch-1", [a, b], None) == {a, b}
        assert outbox.assign_to_print_batch(cur, c, "batch-2", [a], None) == set()  # one batch per letter
        # b was never handed over: the print house cannot have refused it
        assert outbox.quarantine_after_print_rejection(cur, c, b, "batch-1", "unreadable") is False
        assert outbox.mark_handed_to_print(cur, c, "batch-1", [a], "0" * 64) == {a}
        assert (
            outbox.quarantine_after_print_rejection(cur, c, a, "batch-2", "unreadable") is False
        )  # other batch
        assert outbox.quarantine_after_print_rejection(cur, c, a, "batch-1", "unreadable") is True
        assert outbox.quarantine_after_print_rejection(cur, c, a, "batch-1", "unreadable") is False  # once
    db.commit()
    assert (status(db, a), status(db, b)) == ("quarantined", "processing")
    events = [
        r[0]
        for r in db.execute(
            "SELECT event FROM letter_events WHERE letter_id = %s ORDER BY event_id", (a,)
        ).fetchall()
    ]
    assert events == ["claimed", "assigned_to_print_batch", "handed_to_print", "quarantined"]


def test_the_transition_table_names_the_function_that_makes_each_move():
    for (source, target), name in outbox.TRANSITIONS.items():
        assert callable(getattr(outbox, name)), name
        assert outbox.allowed(source, target)
    assert not outbox.allowed("delivered_ebox", "handed_to_print")
    assert not outbox.allowed("quarantined", "pending")
    assert set(outbox.FINAL_STATUSES) == set(outbox.Status) - {"pending", "processing"}
