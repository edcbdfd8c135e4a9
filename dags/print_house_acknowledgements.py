"""### The print house's acknowledgements and returned mail (every 15 minutes)

    collect_print_house_files      acks and returned mail from the print house's outbound folder
      -> check_unacknowledged_batches  alert on batches without an ack after the wave's alert delay;
                                       fails the run (no retry) on such batches or on refused files

The logic is `include/dijlepost/printhouse/acks.py` (docs/print-house.md). Failures meant for
operators are `AirflowFailException` (no retry hides them) after an `alert_...` log line, raised by
the last task so the run itself turns red; the failure callback adds `alert_task_failed`.
"""

from datetime import timedelta

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowFailException

from include.dijlepost import logfmt
from include.dijlepost.airflow_support import (
    POOLS,
    db_connection,
    print_house_dag_arguments,
    task_context,
)
from include.dijlepost.waves import WAVES


@dag(
    **print_house_dag_arguments(
        "print_house_acknowledgements",
        "Reads the print house's acknowledgements and returned mail; alerts on missing acks.",
        __doc__,
        "*/15 * * * *",
        timeout=timedelta(minutes=30),
    )
)
def print_house_acknowledgements():
    @task(pool=POOLS["print"])
    def collect_print_house_files():
        from include.dijlepost.printhouse.acks import collect, summarise
        from include.dijlepost.printhouse.hook import PrintHouseHook

        ctx = task_context()
        hook = PrintHouseHook()
        with db_connection() as conn, hook.get_managed_conn() as sftp:
            outcomes = collect(conn, sftp, hook.outbox_dir, ctx)
        summary = summarise(outcomes)
        logfmt.emit("print_house_files_collected", **summary)
        # Applied files are safe; refused ones fail the run in the next task, after the overdue check.
        return {**summary, "refused_in": f"{hook.outbox_dir}/refused"}

    @task
    def check_unacknowledged_batches(collected: dict):
        from include.dijlepost.printhouse.acks import acknowledgement_problems

        alert_hours = {w.department: w.print_ack_alert_hours for w in WAVES.values()}
        with db_connection() as conn:
            problems = acknowledgement_problems(conn, alert_hours, collected)
        if problems:
            raise AirflowFailException("; ".join(problems))
        return {"overdue_batches": 0}

    check_unacknowledged_batches(collect_print_house_files())  # type: ignore[arg-type]  # an XComArg until it runs


print_house_acknowledgements()
