"""A wave run's progress read from the outbox while it works (real PostgreSQL)."""

from __future__ import annotations

import pytest

from include.dijlepost.progress import Progress, describe, run_progress
from tests.include.dijlepost.admin.conftest import add_letters

pytestmark = pytest.mark.integration

RUN = "letters_finance:manual__1"


def test_progress_counts_chunks_done_and_letters_by_where_they_are(db):
    assert run_progress(db, RUN) == Progress()
    assert describe(run_progress(db, RUN)) == "waiting for its claim"
    add_letters(db, "finance", 3, run=RUN, status="delivered_ebox", claim_chunk=0, prefix="A")
    add_letters(db, "finance", 1, run=RUN, status="quarantined", claim_chunk=0, prefix="B")
    add_letters(db, "finance", 2, run=RUN, status="handed_to_print", claim_chunk=1, prefix="C")
    add_letters(db, "finance", 2, run=RUN, status="processing", claim_chunk=1, prefix="D")
    add_letters(db, "finance", 5, run=RUN, status="processing", claim_chunk=2, prefix="E")
    add_letters(db, "finance", 4, run="letters_finance:other", status="processing", claim_chunk=0, prefix="F")
    p = run_progress(db, RUN)
    assert p == Progress(
        chunks=3, chunks_done=1, letters=13, delivered_ebox=3, handed_to_print=2, quarantined=1
    )
    assert describe(p) == (
        "1/3 chunks done; 3 delivered to the eBox, 2 handed over to print, 1 quarantined, 7 in progress"
    )
