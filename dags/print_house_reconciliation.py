"""### Daily reconciliation of the print hand-over (07:00, Europe/Brussels)

    reconcile_print_handoffs   letters handed over without an acknowledgement, and returned letters to
                               follow up, as log lines and a CSV report under the print work directory

The logic is `include/dijlepost/printhouse/acks.py` (docs/print-house.md).
"""

from datetime import timedelta

from airflow.sdk import dag, task

from include.dijlepost.airflow_support import (
    db_connection,
    print_house_dag_arguments,
    settings,
)


@dag(
    **print_house_dag_arguments(
        "print_house_reconciliation",
        "Daily list of letters handed to the print house without acknowledgement, and returns.",
        __doc__,
        "0 7 * * *",
        timeout=timedelta(hours=1),
    )
)
def print_house_reconciliation():
    @task
    def reconcile_print_handoffs():
        from include.dijlepost import clock
        from include.dijlepost.printhouse.acks import reconcile

        with db_connection() as conn:
            return reconcile(conn, settings().print_work_dir / "reconciliation", clock.today())

    reconcile_print_handoffs()


print_house_reconciliation()
