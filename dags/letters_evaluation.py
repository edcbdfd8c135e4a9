"""### Rollout evaluation (daily 06:30, Europe/Brussels; a weekly summary on Mondays)

    evaluate_day -> week_is_complete -> evaluate_week

Figures per department (letters by channel and rule, eBox share, paper and postage saved, follow-up
copies, quarantines) into `evaluation_figures`, and a one-page report with charts under
DIJLEPOST_REPORTS_DIR. The logic is `include/dijlepost/evaluation.py`; the tariffs behind the savings
are in `include/dijlepost/tariffs.py` (docs/evaluation.md).
"""

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from include.dijlepost import logfmt
from include.dijlepost.airflow_support import dag_arguments, db_connection
from include.dijlepost.evaluation import DAG_ID, Period, evaluate, evaluated_day


def _day():
    c = get_current_context()
    return evaluated_day(c["dag_run"].run_after, c["params"].get("day")), c["run_id"]


def _evaluate(period_of) -> dict:
    """Figures and report for the period `period_of(day)` around the evaluated day."""
    day, run_id = _day()
    with db_connection() as conn:
        summary = evaluate(conn, period_of(day), run_id=run_id)
    logfmt.emit("evaluation_done", **summary)
    return summary


@dag(
    **dag_arguments(
        DAG_ID,
        "Daily rollout figures per department (weekly summary on Mondays): table and report.",
        __doc__,
        "30 6 * * *",
        timeout=timedelta(hours=1),
        tags=("evaluation",),
        params={
            "day": Param(
                None,
                type=["null", "string"],
                format="date",
                description="Evaluate this day (YYYY-MM-DD) instead of yesterday",
            )
        },
    )
)
def letters_evaluation():
    @task
    def evaluate_day():
        return _evaluate(Period.day)

    @task.short_circuit
    def week_is_complete():
        day, _ = _day()
        complete = day.weekday() == 6
        logfmt.emit("evaluation_week_check", day=day.isoformat(), week_complete=complete)
        return complete

    @task
    def evaluate_week():
        return _evaluate(Period.week_of)

    evaluate_day() >> week_is_complete() >> evaluate_week()


letters_evaluation()
