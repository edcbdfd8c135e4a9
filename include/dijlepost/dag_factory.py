"""One factory builds every wave DAG from its `Wave` entry; the wave DAG files only call `build_wave_dag`.

    read_rollout_phase        short-circuit: phase off stops here; an unknown phase fails the run
      -> check_ebox_message_types   every letter type of the wave has a registered eBox message type
      -> claim_letters
      -> chunk[i]             a task group mapped over the claim's chunks, never one task per letter:
             decide_channels  eBox activation check of the chunk's recipients, then the routing rules
             -> render_letters
             -> choose_channels  branch: the delivery tasks that have letters in this chunk
                  -> deliver_to_ebox -> hand_over_to_print
                  -> hand_over_to_print   (also after deliver_to_ebox: NO_DIGITAL_USER answers go on
                                           paper in the same run)
      -> hand_over_earlier_batches  batches of earlier runs, or held back by the cut-off, now due
      -> record_outcome
A chunk's letters are published and printed as soon as they are rendered, while other chunks still
render: eBox and SFTP waits overlap the CPU-bound rendering instead of following it, and the
"upstream" weight rule makes the scheduler finish a started chunk before it starts a new one.
Every task body calls one function of `include/` and logs what it did as `event=... key=value`
lines with counts, rules, ids of what it produced and keyed pseudonyms only.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from datetime import timedelta

from include.dijlepost import logfmt
from include.dijlepost.airflow_support import (
    POOLS,
    QUEUES,
    START_DATE,
    TAGS,
    chunk_work,
    db_connection,
    default_task_args,
    on_failure,
    settings,
    wave_deadline,
)
from include.dijlepost.waves import Wave
from include.dijlepost.work import ChunkWork

CLAIM_LEASE = timedelta(hours=3)
DAGRUN_TIMEOUT = timedelta(hours=2)  # shorter than the lease: a claim is only taken over from a dead run
EBOX_FRESHNESS = timedelta(days=int(os.environ.get("DIJLEPOST_EBOX_FRESHNESS_DAYS", "7")))
# A letter renders in milliseconds; one that needs this long is quarantined ("render budget") so it
# cannot stall its chunk.
RENDER_BUDGET_SECONDS = float(os.environ.get("DIJLEPOST_RENDER_BUDGET_SECONDS", "10"))
# Time limit of a per-chunk task: this much per letter of the wave's largest chunk, at least 15 minutes
# (`DIJLEPOST_CHUNK_TIMEOUT_MINUTES` sets it for runs triggered with much bigger claims).
CHUNK_SECONDS_PER_LETTER = 0.25


def largest_chunk(wave: Wave) -> int:
    """The most letters one chunk of a claim at the wave's defaults holds (see `outbox.claim`: a claim
    of more than chunk_size x max_chunks letters is cut into shrinking chunks, the first 2 / (k + 1))."""
    if wave.batch_size <= wave.chunk_size * wave.max_chunks:
        return min(wave.chunk_size, wave.batch_size)
    return math.ceil(2 * wave.batch_size / (wave.max_chunks + 1))


def chunk_timeout(wave: Wave) -> timedelta:
    configured = os.environ.get("DIJLEPOST_CHUNK_TIMEOUT_MINUTES")
    if configured:
        return timedelta(minutes=int(configured))
    return max(timedelta(minutes=15), timedelta(seconds=largest_chunk(wave) * CHUNK_SECONDS_PER_LETTER))


# A chunk's tasks are labelled "chunk N" in the UI's grid instead of by their map index.
CHUNK_LABEL = "chunk {{ task.op_kwargs['chunk'] }}"
# The run's params: name -> (maximum, description); the default is the wave's own value, the minimum 1.
RUN_PARAMS = {
    "batch_size": (200_000, "Maximum letters claimed by this run"),
    "chunk_size": (
        10_000,
        "Letters per chunk: each chunk is rendered, published and printed by its own tasks",
    ),
    "max_chunks": (256, "At most this many chunks per claim: a bigger claim gets bigger chunks"),
}


def build_wave_dag(wave: Wave):
    """The wave's DAG: its tasks, their queues, pools and order; each task's work is a function below."""
    from airflow.sdk import dag, task, task_group

    per_chunk = {"execution_timeout": chunk_timeout(wave), "map_index_template": CHUNK_LABEL}

    @dag(**_wave_dag_arguments(wave))
    def wave_dag():
        @task.short_circuit
        def read_rollout_phase():
            return _read_rollout_phase(wave)

        @task
        def check_ebox_message_types(state: dict):
            """Before anything is claimed: every letter type of the wave must have an eBox message type
            the eBox knows, else the run fails naming the letter type (nothing is published)."""
            return _check_ebox_message_types(wave, state)

        @task
        def claim_letters(params=None) -> list[int]:
            return _claim_letters(wave, params)

        @task(**per_chunk)
        def decide_channels(state: dict, chunk: int):
            """The chunk's eBox activation check (batched, cached per recipient), then its routing: the
            first chunk renders as soon as it is decided, not after the whole claim is."""
            return _decide_channels(wave, state, chunk)

        @task(queue=QUEUES["render"], pool=POOLS["render"], **per_chunk)
        def render_letters(chunk: int):
            return _render_letters(wave, chunk)

        @task.branch(map_index_template=CHUNK_LABEL)
        def choose_channels(chunk: int):
            """The delivery tasks this chunk needs: `deliver_to_ebox` when it has rendered eBox letters
            (`hand_over_to_print` follows it for the NO_DIGITAL_USER answers), `hand_over_to_print`
            alone when it only has paper letters, none when every letter was quarantined."""
            return _choose_channels(wave, chunk)

        @task(queue=QUEUES["delivery"], pool=POOLS["ebox"], **per_chunk)
        def deliver_to_ebox(chunk: int):
            return _deliver_to_ebox(wave, chunk)

        @task(queue=QUEUES["delivery"], pool=POOLS["print"], trigger_rule="none_failed", **per_chunk)
        def hand_over_to_print(chunk: int):
            return _hand_over(chunk_work(wave, chunk))

        @task_group(group_id="chunk")
        def by_chunk(state: dict, chunk: int):
            branch = choose_channels(chunk)
            to_ebox = deliver_to_ebox(chunk)
            to_print = hand_over_to_print(chunk)
            decide_channels(state, chunk) >> render_letters(chunk) >> branch
            branch >> [to_ebox, to_print]
            to_ebox >> to_print

        @task(queue=QUEUES["delivery"], pool=POOLS["print"], trigger_rule="none_failed")
        def hand_over_earlier_batches():
            """Batches recorded by an earlier, interrupted run, or held back by the cut-off, now due."""
            return _hand_over(chunk_work(wave))

        @task(trigger_rule="none_failed")
        def record_outcome():
            return _record_outcome(wave)

        state = read_rollout_phase()
        claimed = claim_letters()
        state >> check_ebox_message_types(state) >> claimed
        by_chunk.partial(state=state).expand(chunk=claimed) >> hand_over_earlier_batches() >> record_outcome()

    return wave_dag()


def _wave_dag_arguments(wave: Wave) -> dict:
    """The `@dag(...)` arguments of the wave's DAG: one run at a time, no catch-up, the run's params."""
    from airflow.sdk import Param

    return {
        "dag_id": wave.dag_id,
        "description": f"{wave.title}: {wave.description}",
        "doc_md": f"### {wave.title}\n{wave.description}\n\n" + (__doc__ or ""),
        "schedule": wave.schedule,
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "dagrun_timeout": DAGRUN_TIMEOUT,
        "tags": [*TAGS, wave.department, *wave.tags],
        "on_failure_callback": on_failure,
        "deadline": wave_deadline(),
        "params": {
            name: Param(
                getattr(wave, name), type="integer", minimum=1, maximum=maximum, description=description
            )
            for name, (maximum, description) in RUN_PARAMS.items()
        },
        # "upstream": a task weighs what comes before it, so a rendered chunk's delivery goes before
        # the next chunk's rendering (depth first) and a wave's letters leave while it still renders.
        "default_args": {**default_task_args(), "weight_rule": "upstream"},
    }


def _read_rollout_phase(wave: Wave) -> dict | bool:
    """The department's rollout state for the run, or False (the run stops) when the phase is off."""
    from include.dijlepost.rollout import read_state

    with db_connection() as conn:
        state = read_state(conn, wave.department)
    logfmt.emit(
        "rollout_phase",
        department=wave.department,
        phase=state.phase,
        pilot_size=len(state.pilot_allowlist),
        pilot_percent=state.pilot_percent,
    )
    if state.phase == "off":
        logfmt.emit("wave_skipped", department=wave.department, reason="rollout phase off")
        return False
    return state.to_xcom()


def _check_ebox_message_types(wave: Wave, state: dict) -> dict:
    from include.dijlepost.ebox.delivery import check_message_types
    from include.dijlepost.ebox.hook import EboxHook

    if state["phase"] == "paper":
        logfmt.emit("ebox_message_types_skipped", department=wave.department, reason="phase paper")
        return {"checked": 0}
    with (
        ebox_configuration_fails_once(wave),
        db_connection() as conn,
        EboxHook().get_client() as client,
    ):
        checked = check_message_types(conn, chunk_work(wave), client=client)
    logfmt.emit("ebox_message_types_checked", department=wave.department, **checked)
    return checked


def _claim_letters(wave: Wave, params) -> list[int]:
    from include.dijlepost.outbox import claim

    work = chunk_work(wave)
    with db_connection() as conn:
        c = claim(
            conn,
            work,
            batch_size=int(params["batch_size"]),
            chunk_size=int(params["chunk_size"]),
            lease=CLAIM_LEASE,
            max_chunks=int(params["max_chunks"]),
        )
    logfmt.emit(
        "letters_claimed",
        department=wave.department,
        letters=c.count,
        chunks=len(c.chunks),
        taken_over=c.taken_over,
    )
    return c.chunks


def _decide_channels(wave: Wave, state: dict, chunk: int) -> dict:
    from include.dijlepost.ebox.delivery import check_activation
    from include.dijlepost.ebox.hook import EboxHook
    from include.dijlepost.pipeline import decide_claim
    from include.dijlepost.rollout import RolloutState

    work = chunk_work(wave, chunk)
    with db_connection() as conn:
        if state["phase"] == "paper":
            logfmt.emit("ebox_check_skipped", department=wave.department, chunk=chunk, reason="phase paper")
        else:
            with ebox_configuration_fails_once(wave, chunk):
                checked = check_activation(
                    conn, work, client=EboxHook().get_client(), freshness=EBOX_FRESHNESS
                )
            logfmt.emit("ebox_activation_checked", department=wave.department, chunk=chunk, **checked)
        result = decide_claim(conn, work, state=RolloutState.from_xcom(state))
    logfmt.emit("channels_decided", department=wave.department, chunk=chunk, **result)
    return result


def _render_letters(wave: Wave, chunk: int) -> dict:
    from include.dijlepost.pipeline import render_chunk
    from include.dijlepost.rendering import LetterRenderer

    config = settings()
    with db_connection() as conn:
        result = render_chunk(
            conn,
            chunk_work(wave, chunk),
            renderer=LetterRenderer(),
            document_root=config.document_root,
            sync_each_file=config.document_sync == "file",
            budget_seconds=RENDER_BUDGET_SECONDS,
        )
    logfmt.emit("letters_rendered", department=wave.department, **result)
    return result


def _choose_channels(wave: Wave, chunk: int) -> list[str]:
    from include.dijlepost.pipeline import letters_to_deliver

    with db_connection() as conn:
        waiting = letters_to_deliver(conn, chunk_work(wave, chunk))
    chosen = []
    if waiting["ebox"]:
        chosen.append("chunk.deliver_to_ebox")
    if waiting["paper"]:
        chosen.append("chunk.hand_over_to_print")
    logfmt.emit(
        "delivery_channels_chosen",
        department=wave.department,
        chunk=chunk,
        tasks=[c.split(".")[-1] for c in chosen] or "none",
        **waiting,
    )
    return chosen


def _deliver_to_ebox(wave: Wave, chunk: int) -> dict:
    from airflow.sdk.exceptions import AirflowSkipException

    from include.dijlepost.ebox.client import EboxOutageError
    from include.dijlepost.ebox.delivery import account_for_delivery, deliver_chunk_to_ebox
    from include.dijlepost.ebox.hook import EboxHook

    work = chunk_work(wave, chunk)
    try:
        with ebox_configuration_fails_once(wave, chunk):
            hook = EboxHook()  # no network until the first publication
            # The outage budget stays well inside the task's time limit: the letters are given
            # back in time, not lost to a killed task.
            budget = min(hook.get_config().outage_budget_seconds, chunk_timeout(wave).total_seconds() / 3)
            with db_connection() as conn, hook.get_client(outage_budget_seconds=budget) as client:
                result = deliver_chunk_to_ebox(
                    conn, work, client=client, concurrency=client.config.max_concurrency
                )
    except EboxOutageError as exc:
        # The letters are back in the outbox; the task's retry finds none of them and lets the
        # chunk's paper go, the next run of the wave publishes them.
        logfmt.emit("ebox_outage_gave_back", department=wave.department, chunk=chunk, error=str(exc))
        raise
    with db_connection() as conn:
        done = account_for_delivery(conn, work, result)
    if done is None:
        raise AirflowSkipException("no eBox letters in this chunk")
    return done


def _record_outcome(wave: Wave) -> dict:
    from include.dijlepost.pipeline import summarize_run

    with db_connection() as conn:
        summary = summarize_run(conn, chunk_work(wave))
    summary.log()
    return summary.outcome


@contextmanager
def ebox_configuration_fails_once(wave: Wave, chunk: int | None = None):
    """A refusal of the eBox configuration (sender, application, credentials, certificate, URLs): no
    retry fixes it, so the task fails once (AirflowFailException) with one alert line naming what to
    check; the delivery has already given its letters back to the outbox."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.dijlepost.ebox.client import EboxConfigurationError

    try:
        yield
    except EboxConfigurationError as exc:
        logfmt.emit("alert_ebox_configuration", department=wave.department, chunk=chunk, error=str(exc))
        raise AirflowFailException(f"eBox configuration: {exc}") from exc


def _hand_over(work: ChunkWork) -> dict:
    """The print house's side of a chunk (or, with `work.chunk` None, the batches of earlier runs now
    due): `printhouse.handoff.hand_over`; nothing due is a skip, with the reason in the log."""
    from airflow.sdk.exceptions import AirflowSkipException

    from include.dijlepost.printhouse.handoff import account_for_hand_over, hand_over
    from include.dijlepost.printhouse.hook import PrintHouseHook

    with db_connection() as conn:
        result = hand_over(conn, work, hook=PrintHouseHook(), work_dir=settings().print_work_dir)
        done = account_for_hand_over(conn, work, result)
    if done is None:
        raise AirflowSkipException("no paper letters to hand over")
    return done
