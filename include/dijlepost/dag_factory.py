"""One factory builds every wave DAG from its `Wave` entry; DAG files only call `build_wave_dag`.

    read_rollout_phase (short-circuit: phase off stops here)
      -> claim_letters
      -> chunk[i]  (a task group mapped over the claim's chunks, never one task per letter):
             decide_channels (eBox activation check of the chunk's recipients, then routing)
             -> render_letters -> deliver_to_ebox -> hand_over_to_print
             (print after eBox, so NO_DIGITAL_USER fallbacks go on paper in the same run)
      -> hand_over_earlier_batches  (batches of earlier runs, or held back by the cut-off, now due)
      -> record_outcome
A chunk's letters are published and printed as soon as they are rendered, while other chunks still
render: eBox and SFTP waits overlap the CPU-bound rendering instead of following it, and the
"upstream" weight rule makes the scheduler finish a started chunk before it starts a new one.
A chunk with nothing for a channel skips that task (shown as skipped, with the reason in its log).
Every task body calls one function of `pipeline.py` and logs what it did as `event=... key=value`
lines with counts, rules, ids of what it produced and keyed pseudonyms only.
"""
from __future__ import annotations

import logging
import os
from datetime import timedelta

import pendulum

from include.dijlepost import logfmt
from include.dijlepost.waves import Wave

log = logging.getLogger("dijlepost")

DB_CONN_ID = "dijlepost_db"
QUEUES = {"default": "default", "render": "render", "delivery": "delivery"}
# Pools bound how much runs at once, whatever the executor: rendering (CPU: cores on one machine, the
# render workers' total concurrency on Celery), eBox publication and the print house's SFTP session.
POOLS = {"render": "rendering", "ebox": "ebox_publication", "print": "print_house_sftp"}
CLAIM_LEASE = timedelta(hours=3)
DAGRUN_TIMEOUT = timedelta(hours=2)      # shorter than the lease: a claim is only taken over from a dead run
EBOX_FRESHNESS = timedelta(days=int(os.environ.get("DIJLEPOST_EBOX_FRESHNESS_DAYS", "7")))
# Deployment settings read from the environment at parse time (no database or network involved).
TASK_RETRIES = int(os.environ.get("DIJLEPOST_TASK_RETRIES", "3"))
RETRY_DELAY = timedelta(seconds=int(os.environ.get("DIJLEPOST_RETRY_DELAY_SECONDS", "60")))


def on_failure(context) -> None:
    """Failure callback on every DAG and task: one alert line an operator can grep and page on."""
    ti = context.get("ti") or context.get("task_instance")
    logfmt.emit("alert_task_failed", dag_id=getattr(ti, "dag_id", None), task_id=getattr(ti, "task_id", None),
                run_id=context.get("run_id"), map_index=getattr(ti, "map_index", None),
                error=type(context.get("exception")).__name__)


def report_peak_rss(context) -> None:
    """Success callback on every task (it runs in the task's own process): the process's peak memory,
    for the scale benchmark (benchmarks/scale.py reads these lines from the task logs)."""
    import resource

    ti = context.get("ti") or context.get("task_instance")
    logfmt.emit("task_peak_rss", task_id=getattr(ti, "task_id", None), map_index=getattr(ti, "map_index", None),
                peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))


def default_task_args(queue: str = QUEUES["default"]) -> dict:
    """Retries with backoff and the failure alert, the same for every dijlepost DAG."""
    return {"owner": "dijlepost", "retries": TASK_RETRIES, "retry_delay": RETRY_DELAY,
            "retry_exponential_backoff": True, "max_retry_delay": timedelta(minutes=15),
            "on_failure_callback": on_failure, "queue": queue}


def _ctx(chunk: int | None = None):
    """The run coordinates for the events; a per-chunk task also shows as "chunk N" in the UI (a
    mapped task group's argument is not in `op_kwargs`, so the name is set at run time)."""
    from airflow.sdk import get_current_context

    from include.dijlepost.outbox import RunContext

    c = get_current_context()
    if chunk is not None:
        c["map_index_template"] = f"chunk {int(chunk)}"
    ti = c["ti"]
    return RunContext(dag_id=ti.dag_id, run_id=c["run_id"], task_id=ti.task_id,
                      map_index=ti.map_index, try_number=ti.try_number)


def _claim_key(ctx) -> str:
    return f"{ctx.dag_id}:{ctx.run_id}"


def _db():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=DB_CONN_ID).get_conn()


def _settings():
    from include.dijlepost.settings import Settings

    return Settings.from_env()


def _hand_over(wave: Wave, ctx, chunk: int | None) -> dict:
    """Assign the paper letters of one chunk (or, with `chunk` None, none) to print batches and upload
    the due batches: of that chunk, or of the whole department. Skips when there is nothing to send."""
    from airflow.sdk.exceptions import AirflowSkipException

    from include.dijlepost.pipeline import assign_print_batches, pending_print_batches, upload_print_batch
    from include.dijlepost.printhouse.hook import PrintHouseHook

    settings = _settings()
    run_id = _claim_key(ctx)
    conn = _db()
    try:
        assigned = [] if chunk is None else assign_print_batches(
            conn, wave.department, run_id, ctx, wave.print_batch_max_letters, wave.print_batch_max_mb,
            wave.print_cutoff, chunk=chunk)
        batches = pending_print_batches(conn, wave.department, run_id=run_id, chunk=chunk)
        if not batches:
            logfmt.emit("print_handoff_skipped", department=wave.department, chunk=chunk, assigned_now=len(assigned),
                        reason="no batch due today (none, or all after the cut-off)")
            raise AirflowSkipException("no paper letters to hand over")
        hook = PrintHouseHook()
        results = []
        with hook.get_managed_conn() as sftp:
            for batch_id in batches:
                r = upload_print_batch(conn, sftp, hook.inbox_dir, settings.print_work_dir, batch_id, ctx)
                logfmt.emit("print_batch_handed_over", department=wave.department, chunk=chunk, **r)
                results.append(r)
    finally:
        conn.close()
    logfmt.emit("print_handed_over", department=wave.department, chunk=chunk, assigned_now=len(assigned),
                batches=len(results), letters=sum(r.get("letters", 0) for r in results))
    return {"assigned_now": assigned, "batches": results}


def build_wave_dag(wave: Wave):
    from airflow.sdk import Param, dag, task, task_group
    from airflow.sdk.exceptions import AirflowSkipException

    @dag(
        dag_id=wave.dag_id,
        description=f"{wave.title}: {wave.description}",
        doc_md=f"### {wave.title}\n{wave.description}\n\n" + (__doc__ or ""),
        schedule=wave.schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Brussels"),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=DAGRUN_TIMEOUT,
        tags=["dijlepost", wave.department, *wave.tags],
        on_failure_callback=on_failure,
        params={
            "batch_size": Param(wave.batch_size, type="integer", minimum=1, maximum=200_000,
                                description="Maximum letters claimed by this run"),
            "chunk_size": Param(wave.chunk_size, type="integer", minimum=1, maximum=10_000,
                                description="Letters per chunk: each chunk is rendered, published and printed by its own tasks"),
            "max_chunks": Param(wave.max_chunks, type="integer", minimum=1, maximum=256,
                                description="At most this many chunks per claim: a bigger claim gets bigger chunks"),
        },
        # "upstream": a task weighs what comes before it, so a rendered chunk's delivery goes before
        # the next chunk's rendering (depth first) and a wave's letters leave while it still renders.
        default_args={**default_task_args(), "on_success_callback": report_peak_rss, "weight_rule": "upstream"},
    )
    def wave_dag():
        @task.short_circuit
        def read_rollout_phase():
            from include.dijlepost.rollout import read_state

            conn = _db()
            try:
                state = read_state(conn, wave.department)
            finally:
                conn.close()
            logfmt.emit("rollout_phase", department=wave.department, phase=state.phase,
                        pilot_size=len(state.pilot_allowlist), pilot_percent=state.pilot_percent)
            if state.phase == "off":
                logfmt.emit("wave_skipped", department=wave.department, reason="rollout phase off")
                return False
            return state.to_xcom()

        @task
        def claim_letters(params=None) -> list[int]:
            from include.dijlepost.outbox import claim

            ctx = _ctx()
            conn = _db()
            try:
                c = claim(conn, wave.department, _claim_key(ctx), int(params["batch_size"]),
                          int(params["chunk_size"]), CLAIM_LEASE, ctx, max_chunks=int(params["max_chunks"]))
            finally:
                conn.close()
            logfmt.emit("letters_claimed", department=wave.department, letters=c.count, chunks=len(c.chunks),
                        taken_over=c.taken_over)
            return c.chunks

        @task
        def decide_channels(state: dict, chunk: int):
            """The chunk's eBox activation check (batched, cached per recipient), then its routing: the
            first chunk renders as soon as it is decided, not after the whole claim is."""
            from include.dijlepost.ebox.hook import EboxHook
            from include.dijlepost.pipeline import check_activation, decide_claim
            from include.dijlepost.rollout import RolloutState

            ctx = _ctx(chunk)
            settings = _settings()
            conn = _db()
            try:
                if state["phase"] == "paper":
                    logfmt.emit("ebox_check_skipped", department=wave.department, chunk=chunk, reason="phase paper")
                else:
                    checked = check_activation(conn, EboxHook().get_client(), settings.pseudonym_key,
                                               _claim_key(ctx), EBOX_FRESHNESS, ctx, chunk=chunk)
                    logfmt.emit("ebox_activation_checked", department=wave.department, chunk=chunk, **checked)
                result = decide_claim(conn, wave, RolloutState.from_xcom(state), settings.pseudonym_key,
                                      _claim_key(ctx), ctx, chunk=chunk)
            finally:
                conn.close()
            logfmt.emit("channels_decided", department=wave.department, chunk=chunk, **result)
            return result

        @task(queue=QUEUES["render"], pool=POOLS["render"])
        def render_letters(chunk: int):
            from include.dijlepost.pipeline import render_chunk
            from include.dijlepost.rendering import LetterRenderer

            ctx = _ctx(chunk)
            conn = _db()
            try:
                settings = _settings()
                result = render_chunk(conn, LetterRenderer(), settings.document_root, _claim_key(ctx), chunk, ctx,
                                      sync_each_file=settings.document_sync == "file")
            finally:
                conn.close()
            logfmt.emit("letters_rendered", department=wave.department, **result)
            return result

        @task(queue=QUEUES["delivery"], pool=POOLS["ebox"])
        def deliver_to_ebox(chunk: int):
            from include.dijlepost.ebox.hook import EboxHook
            from include.dijlepost.pipeline import deliver_chunk_to_ebox

            ctx = _ctx(chunk)
            conn = _db()
            hook = EboxHook()       # no network until the first publication
            try:
                result = deliver_chunk_to_ebox(conn, hook.get_client(), None, wave,
                                               _settings().pseudonym_key, _claim_key(ctx), chunk, ctx,
                                               concurrency=hook.get_config().max_concurrency)
            finally:
                conn.close()
            if not result["letters"]:
                logfmt.emit("ebox_delivery_skipped", department=wave.department, chunk=chunk,
                            reason="no rendered eBox letters in this chunk")
                raise AirflowSkipException("no eBox letters in this chunk")
            logfmt.emit("ebox_delivered", department=wave.department, **result)
            return result

        @task(queue=QUEUES["delivery"], pool=POOLS["print"], trigger_rule="none_failed")
        def hand_over_to_print(chunk: int):
            ctx = _ctx(chunk)
            return _hand_over(wave, ctx, chunk)

        @task_group(group_id="chunk")
        def by_chunk(state: dict, chunk: int):
            decided = decide_channels(state, chunk)
            decided >> render_letters(chunk) >> deliver_to_ebox(chunk) >> hand_over_to_print(chunk)

        @task(queue=QUEUES["delivery"], pool=POOLS["print"], trigger_rule="none_failed")
        def hand_over_earlier_batches():
            """Batches recorded by an earlier, interrupted run, or held back by the cut-off, now due."""
            return _hand_over(wave, _ctx(), None)

        @task(trigger_rule="none_failed")
        def record_outcome():
            from include.dijlepost.outbox import outcome_counts
            from include.dijlepost.pipeline import RunSummary

            ctx = _ctx()
            conn = _db()
            try:
                summary = RunSummary(wave.department, ctx.run_id, outcome_counts(conn, ctx.dag_id, ctx.run_id))
            finally:
                conn.close()
            summary.log()
            return summary.outcome

        state = read_rollout_phase()
        claimed = claim_letters()
        state >> claimed
        by_chunk.partial(state=state).expand(chunk=claimed) >> hand_over_earlier_batches() >> record_outcome()

    return wave_dag()
