"""The run's own stages (`pipeline.py`: deciding, rendering) against real PostgreSQL and the eBox
sandbox over HTTPS: each chunk acts on its own letters, page by page, each letter once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from include.dijlepost import pipeline
from include.dijlepost.ebox import delivery
from include.dijlepost.ebox.client import EboxClient
from include.dijlepost.outbox import claim
from include.dijlepost.printhouse import handoff
from include.dijlepost.rollout import read_state
from tests.support import stages
from tests.support.stages import CTX, RUN, WORK, prepare, seed

pytestmark = pytest.mark.integration
renderer, client = stages.renderer, stages.client  # fixtures


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
    c = claim(db, WORK, batch_size=1000, chunk_size=10, lease=timedelta(hours=3))
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

    checked = delivery.check_activation(db, WORK.for_chunk(1), client=spy, freshness=timedelta(days=7))
    decided = pipeline.decide_claim(db, WORK.for_chunk(1), state=state)
    assert set().union(*spy.asked) == recipients[1] and checked["recipients"] == len(recipients[1])
    assert decided["decided"] == 10
    undecided = dict(
        db.execute("SELECT claim_chunk, count(*) FROM letters WHERE decided_at IS NULL GROUP BY 1").fetchall()
    )
    assert undecided == {0: 10, 2: 10, 3: 10}
    assert (
        pipeline.render_chunk(db, WORK.for_chunk(1), renderer=renderer, document_root=tmp_path / "docs")[
            "rendered"
        ]
        == 10
    )

    # A retried chunk, and the next chunk, ask only about recipients whose answer is not cached yet.
    spy.asked.clear()
    retried = delivery.check_activation(db, WORK.for_chunk(1), client=spy, freshness=timedelta(days=7))
    assert spy.asked == [] and retried["cached_fresh"] == len(recipients[1])
    nxt = delivery.check_activation(db, WORK.for_chunk(2), client=spy, freshness=timedelta(days=7))
    assert set().union(set(), *spy.asked) == recipients[2] - recipients[1]
    assert nxt["cached_fresh"] == len(recipients[2] & recipients[1])


def test_a_chunk_is_decided_page_by_page_each_letter_once(db, ebox, client, monkeypatch):
    seed(db, ebox, 10, active_share=0.5)
    c = claim(
        db,
        WORK,
        batch_size=1000,
        chunk_size=1000,
        lease=timedelta(hours=3),
    )
    monkeypatch.setattr(pipeline, "_DECIDE_PAGE", 3)  # pages of 3, 3, 3 and 1
    delivery.check_activation(db, WORK.for_chunk(c.chunks[0]), client=client, freshness=timedelta(days=7))
    result = pipeline.decide_claim(db, WORK.for_chunk(c.chunks[0]), state=read_state(db, "finance"))
    assert result["decided"] == 10
    assert db.execute("SELECT count(*) FROM letters WHERE decided_at IS NULL").fetchone()[0] == 0
    per_letter = db.execute(
        "SELECT letter_id, count(*) FROM letter_events WHERE event = 'decided' GROUP BY 1"
    ).fetchall()
    db.commit()
    assert len(per_letter) == 10 and {n for _, n in per_letter} == {1}


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
    c = claim(db, WORK, batch_size=1000, chunk_size=3, lease=timedelta(hours=3))
    assert len(c.chunks) == 2
    delivery.check_activation(db, WORK, client=client, freshness=timedelta(days=7))
    pipeline.decide_claim(db, WORK, state=read_state(db, "finance"))
    for chunk in c.chunks:
        pipeline.render_chunk(db, WORK.for_chunk(chunk), renderer=renderer, document_root=tmp_path / "docs")
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
