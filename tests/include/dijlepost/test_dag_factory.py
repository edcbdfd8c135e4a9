"""The wave DAG factory's sizing rules (no Airflow needed)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from include.dijlepost import dag_factory
from include.dijlepost.waves import WAVES

WAVE = WAVES["finance"]


def test_a_claim_within_max_chunks_gets_chunks_of_chunk_size():
    assert dag_factory.largest_chunk(replace(WAVE, batch_size=5000, chunk_size=500, max_chunks=16)) == 500
    assert dag_factory.largest_chunk(replace(WAVE, batch_size=300, chunk_size=500, max_chunks=16)) == 300


def test_a_bigger_claim_gets_a_first_chunk_of_two_parts_in_k_plus_one():
    # 100,000 letters in at most 4 chunks: 40 %, 30 %, 20 %, 10 % (outbox.claim)
    assert (
        dag_factory.largest_chunk(replace(WAVE, batch_size=100_000, chunk_size=2000, max_chunks=4)) == 40_000
    )


def test_the_chunk_time_limit_grows_with_the_largest_chunk_and_has_a_floor(monkeypatch):
    monkeypatch.delenv("DIJLEPOST_CHUNK_TIMEOUT_MINUTES", raising=False)
    assert dag_factory.chunk_timeout(replace(WAVE, batch_size=5000, chunk_size=500)) == timedelta(minutes=15)
    big = replace(WAVE, batch_size=100_000, chunk_size=2000, max_chunks=4)
    assert dag_factory.chunk_timeout(big) == timedelta(seconds=40_000 * dag_factory.CHUNK_SECONDS_PER_LETTER)
    monkeypatch.setenv("DIJLEPOST_CHUNK_TIMEOUT_MINUTES", "90")
    assert dag_factory.chunk_timeout(big) == timedelta(minutes=90)
