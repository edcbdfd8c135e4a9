"""Builders of the print house's two DAGs; the files in `dags/` only call these.

    print_house_acknowledgements  every 15 minutes
        collect_print_house_files      acks and returned mail from the print house's outbound folder
        check_unacknowledged_batches   alert on batches without an ack after the wave's alert delay;
                                       fails the run (no retry) on such batches or on refused files
    print_house_reconciliation    daily at 07:00 Europe/Brussels
        reconcile_print_handoffs       letters handed over without an ack; returned letters to follow up

The logic lives in `acks.py`; Airflow is imported only inside the builders (no parse-time database or
network access). Failures meant for operators are `AirflowFailException` (no retry hides them) after
an `alert_...` log line, raised by the DAG's last task so the run itself turns red; the failure
callback adds `alert_task_failed`.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum

from include.dijlepost import logfmt
from include.dijlepost.dag_factory import QUEUES, _ctx, _db, _settings, default_task_args, on_failure
from include.dijlepost.waves import WAVES

ACK_DAG_ID = "print_house_acknowledgements"
RECONCILIATION_DAG_ID = "print_house_reconciliation"
TAGS = ["dijlepost", "print-house"]


def build_acknowledgements_dag():
    from airflow.sdk import dag, task
    from airflow.sdk.exceptions import AirflowFailException

    @dag(
        dag_id=ACK_DAG_ID,
        description="Reads the print house's acknowledgements and returned mail; alerts on missing acks.",
        doc_md=__doc__,
        schedule="*/15 * * * *",
        start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Brussels"),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(minutes=30),
        tags=TAGS,
        on_failure_callback=on_failure,
        default_args=default_task_args(QUEUES["delivery"]),
    )
    def print_house_acknowledgements():
        @task(pool="print_house_sftp")
        def collect_print_house_files():
            from include.dijlepost.printhouse.acks import collect, summarise
            from include.dijlepost.printhouse.hook import PrintHouseHook

            ctx = _ctx()
            conn = _db()
            hook = PrintHouseHook()
            try:
                with hook.get_managed_conn() as sftp:
                    outcomes = collect(conn, sftp, hook.outbox_dir, ctx)
            finally:
                conn.close()
            summary = summarise(outcomes)
            logfmt.emit("print_house_files_collected", **summary)
            # Applied files are safe; refused ones fail the run in the next task, after the overdue check.
            return {**summary, "refused_in": f"{hook.outbox_dir}/refused"}

        @task
        def check_unacknowledged_batches(collected: dict):
            from include.dijlepost.printhouse.acks import overdue_batches

            conn = _db()
            try:
                overdue = {w.department: overdue_batches(conn, w.department, w.print_ack_alert_hours)
                           for w in WAVES.values()}
            finally:
                conn.close()
            late = 0
            for department, batches in overdue.items():
                for b in batches:
                    late += 1
                    logfmt.emit("alert_print_ack_overdue", department=department, batch_id=b["batch_id"],
                                letters=b["letters"], uploaded_at=b["uploaded_at"],
                                alert_after_hours=WAVES[department].print_ack_alert_hours)
            logfmt.emit("print_acks_checked", overdue_batches=late, refused_files=len(collected["refused_files"]))
            problems = []
            if collected["refused_files"]:
                problems.append(f"refused print-house file(s) {collected['refused_files']}, kept in the database and "
                                f"in {collected['refused_in']} (reasons in the alert_print_house_file_refused lines)")
            if late:
                problems.append(f"{late} print batch(es) without acknowledgement past the alert delay")
            if problems:
                raise AirflowFailException("; ".join(problems))
            return {"overdue_batches": 0}

        check_unacknowledged_batches(collect_print_house_files())

    return print_house_acknowledgements()


def build_reconciliation_dag():
    from airflow.sdk import dag, task

    @dag(
        dag_id=RECONCILIATION_DAG_ID,
        description="Daily list of letters handed to the print house without acknowledgement, and returns.",
        doc_md=__doc__,
        schedule="0 7 * * *",
        start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Brussels"),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=1),
        tags=TAGS,
        on_failure_callback=on_failure,
        default_args=default_task_args(QUEUES["delivery"]),
    )
    def print_house_reconciliation():
        @task
        def reconcile_print_handoffs():
            from include.dijlepost.printhouse.acks import reconciliation, write_reconciliation_report
            from include.dijlepost.printhouse.handoff import today_in_brussels

            conn = _db()
            try:
                report = reconciliation(conn)
            finally:
                conn.close()
            path = write_reconciliation_report(report, _settings().print_work_dir / "reconciliation",
                                               today_in_brussels())
            by_batch: dict[str, int] = {}
            for r in report["unacknowledged"]:
                by_batch[r["batch_id"]] = by_batch.get(r["batch_id"], 0) + 1
            logfmt.emit("print_reconciliation", unacknowledged=len(report["unacknowledged"]),
                        returned=len(report["returned"]), batches_without_ack=by_batch, report=path)
            for r in report["returned"]:
                logfmt.emit("print_follow_up_needed", letter_id=r["letter_id"], department=r["department"],
                            reason=r["reason"])
            return {"unacknowledged": len(report["unacknowledged"]), "returned": len(report["returned"]),
                    "report": path}

        reconcile_print_handoffs()

    return print_house_reconciliation()
