"""### eBox read status and paper follow-up (daily 05:00, Europe/Brussels)

    fetch_ebox_read_status   searchMessageStatus for letters delivered to the eBox that nobody opened yet
      -> create_followup_copies  one paper copy (rule `unread_ebox_followup`) of an important letter
                                 left unread longer than its wave's `followup_after_days`

The important letter types per department are in `include/dijlepost/waves.py`; the logic is
`include/dijlepost/ebox_followup.py`. A copy is a new letter in the outbox that the wave DAG prints.
"""

from datetime import timedelta

from airflow.sdk import dag, task

from include.dijlepost import logfmt
from include.dijlepost.airflow_support import (
    POOLS,
    QUEUES,
    dag_arguments,
    db_connection,
    task_context,
)
from include.dijlepost.ebox_followup import DAG_ID, SCHEDULE, policies

# Configuration only (raises at parse time on a bad wave entry): shown in the copies' log line.
IMPORTANT = {p.department: {"types": list(p.letter_types), "after_days": p.after.days} for p in policies()}


@dag(
    **dag_arguments(
        DAG_ID,
        "eBox read status, and one paper copy of an important letter not opened in time",
        __doc__,
        SCHEDULE,
        timeout=timedelta(hours=2),
        tags=("ebox", "followup"),
    )
)
def letters_ebox_followup():
    @task(queue=QUEUES["delivery"], pool=POOLS["ebox"])
    def fetch_ebox_read_status():
        from contextlib import closing

        from include.dijlepost.ebox.hook import EboxHook
        from include.dijlepost.ebox_followup import fetch_read_status

        ctx = task_context()
        with db_connection() as conn, closing(EboxHook().get_client()) as client:
            result = fetch_read_status(conn, client, ctx)
        logfmt.emit("ebox_read_status_fetched", **result)
        return result

    @task
    def create_followup_copies(_status: dict):
        from include.dijlepost.ebox_followup import create_paper_copies

        ctx = task_context()
        with db_connection() as conn:
            result = create_paper_copies(conn, ctx)
        logfmt.emit(
            "ebox_followup_copies_created",
            created=result["created"],
            by_department=result["by_department"],
            by_reason=result["by_reason"],
            important=IMPORTANT,
        )
        for copy_id in result["copies"]:
            logfmt.emit("ebox_followup_copy", letter_id=copy_id)
        return {k: v for k, v in result.items() if k != "copies"}

    create_followup_copies(fetch_ebox_read_status())  # type: ignore[arg-type]  # an XComArg until it runs


letters_ebox_followup()
