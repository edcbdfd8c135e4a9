"""`chunk_work`: the `ChunkWork` a test hands to a stage function, built from the claim id and what
the test cares about (a wave by name or `Wave`, a chunk, the task's `RunContext`, the pseudonym key)."""

from __future__ import annotations

from include.dijlepost.outbox import RunContext
from include.dijlepost.waves import WAVES, Wave
from include.dijlepost.work import ChunkWork

TEST_KEY = b"test-pseudonym-key-not-secret"


def chunk_work(
    claim_id: str,
    *,
    wave: Wave | str = "finance",
    chunk: int | None = None,
    ctx: RunContext | None = None,
    key: bytes = TEST_KEY,
) -> ChunkWork:
    return ChunkWork(
        ctx=ctx or RunContext(),
        claim_id=claim_id,
        wave=WAVES[wave] if isinstance(wave, str) else wave,
        pseudonym_key=key,
        chunk=chunk,
    )
