"""What one task of a wave run works on, as one frozen value every stage function takes.

`ChunkWork` is built once per task (`airflow_support.chunk_work`) and passed as `work` to the stages
(`outbox.claim`, `ebox.delivery.check_activation`, `pipeline.decide_claim`, `pipeline.render_chunk`,
`pipeline.letters_to_deliver`, `ebox.delivery.deliver_chunk_to_ebox`, `printhouse.handoff.hand_over`);
each stage takes its own collaborators (a client, a hook, a renderer, a directory) by keyword.

Two ids that are easy to mix up: `claim_id` is the claim a DAG run holds on its letters
(`dag_id:run_id`, stored in `letters.claim_run_id`), the same for every task and try of the run;
`ctx.run_id` is Airflow's run id, written with every letter event.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from include.dijlepost.outbox import RunContext
from include.dijlepost.waves import Wave


def claim_id_of(ctx: RunContext) -> str:
    """The claim a DAG run holds on its letters: the same for every task and try of the run."""
    return f"{ctx.dag_id}:{ctx.run_id}"


@dataclass(frozen=True, kw_only=True)
class ChunkWork:
    """One task's work: the letters of `claim_id` in `chunk` (None: the whole claim) of `wave`."""

    ctx: RunContext  # the task's Airflow coordinates, written with every letter event
    claim_id: str  # the run's claim on its letters (`dag_id:run_id`), not Airflow's run id
    wave: Wave
    pseudonym_key: bytes  # the key of the recipients' keyed pseudonyms (never logged)
    chunk: int | None = None

    @property
    def department(self) -> str:
        return self.wave.department

    def for_chunk(self, chunk: int | None) -> ChunkWork:
        """The same work narrowed to one chunk (None: the whole claim)."""
        return replace(self, chunk=chunk)
