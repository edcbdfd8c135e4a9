"""What the stage tests share: a claim id and task context, the finance wave, a seeded outbox, and
`prepare` (claim -> activation -> decide -> render, as the wave DAG does before branching)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from demo import dataset
from include.dijlepost import pipeline
from include.dijlepost.ebox import delivery
from include.dijlepost.ebox.client import EboxClient
from include.dijlepost.intake import import_rows
from include.dijlepost.outbox import RunContext, claim
from include.dijlepost.rendering import LetterRenderer
from include.dijlepost.rollout import read_state
from include.dijlepost.waves import WAVES
from tests.support.work import chunk_work

KEY = b"test-pseudonym-key-not-secret"
WAVE = WAVES["finance"]
RUN = "letters_finance:manual__1"
CTX = RunContext(dag_id="letters_finance", run_id="manual__1", task_id="test", map_index=-1, try_number=1)
WORK = chunk_work(RUN, wave=WAVE, key=KEY, ctx=CTX)  # the whole claim; `WORK.for_chunk(n)`: one chunk


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
    work = chunk_work(run, wave=WAVE, key=KEY, ctx=CTX)
    c = claim(db, work, batch_size=1000, chunk_size=1000, lease=lease)
    delivery.check_activation(db, work, client=client, freshness=timedelta(days=7))
    pipeline.decide_claim(db, work, state=read_state(db, "finance"))
    for chunk in c.chunks:
        pipeline.render_chunk(db, work.for_chunk(chunk), renderer=renderer, document_root=tmp_path / "docs")
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
