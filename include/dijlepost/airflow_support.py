"""What every dijlepost DAG shares: task defaults, the alerts, the run coordinates of a task, the
database connection, the deployment settings and the work of a wave task (`chunk_work`).

Alerts go through Airflow's notifier framework: a task that fails for good (`on_failure`) and a wave
run not finished `DIJLEPOST_WAVE_DEADLINE_MINUTES` after it was queued (a Deadline Alert on each wave
DAG, `wave_deadline`; it also fires for a run that is queued but never starts) each write an
`alert_...` log line and send a message through every notifier of `alert_notifiers`: an e-mail
(the SMTP provider's `SmtpNotifier`) to `DIJLEPOST_ALERT_EMAILS` over the SMTP Connection
`dijlepost_alerts`. Another channel (Slack, Teams, a pager) is one more notifier in that list. A
message holds ids, counts, times in Europe/Brussels and the task log address, never personal data.

DAG files and the wave DAG factory import these; the domain modules never import Airflow. Airflow is
imported inside the functions, so importing this module at DAG-parse time touches no database or
network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import pendulum

from include.dijlepost import logfmt
from include.dijlepost.outbox import RunContext
from include.dijlepost.waves import Wave
from include.dijlepost.work import ChunkWork, claim_id_of

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from include.dijlepost.settings import Settings

DB_CONN_ID = "dijlepost_db"
QUEUES = {"default": "default", "render": "render", "delivery": "delivery"}
# Pools bound how much runs at once, whatever the executor: rendering (CPU: cores on one machine, the
# render workers' total concurrency on Celery), eBox publication and the print house's SFTP session.
# Declared here once: the DAGs take the names, the local Airflow harness (sandboxes.airflow_cluster)
# creates them with `slots` (None: one per core), and a test holds airflow_settings.yaml and
# astro-config.yaml to them.


@dataclass(frozen=True)
class PoolSpec:
    name: str
    description: str
    slots: int | None  # None: as many as the machine has cores (CPU-bound work)


POOL_SPECS = {
    "render": PoolSpec("rendering", "chunks rendered at once (CPU-bound: one per core)", None),
    "ebox": PoolSpec("ebox_publication", "concurrent eBox publication tasks", 4),
    "print": PoolSpec("print_house_sftp", "one SFTP session to the print house at a time", 1),
}
POOLS = {role: spec.name for role, spec in POOL_SPECS.items()}
START_DATE = pendulum.datetime(2026, 1, 1, tz="Europe/Brussels")
TAGS = ("dijlepost",)
# Deployment settings read from the environment at parse time (no database or network involved).
TASK_RETRIES = int(os.environ.get("DIJLEPOST_TASK_RETRIES", "3"))
RETRY_DELAY = timedelta(seconds=int(os.environ.get("DIJLEPOST_RETRY_DELAY_SECONDS", "60")))
# A task that runs longer than this is stopped by Airflow and retried (`execution_timeout`); per-chunk
# tasks get a budget sized from their chunk instead (`chunk_timeout`).
TASK_TIMEOUT = timedelta(minutes=int(os.environ.get("DIJLEPOST_TASK_TIMEOUT_MINUTES", "30")))


ALERT_CONN_ID = "dijlepost_alerts"
# Who receives the alerts (comma-separated e-mail addresses); none: the alert lines only.
ALERT_EMAILS = [a.strip() for a in os.environ.get("DIJLEPOST_ALERT_EMAILS", "").split(",") if a.strip()]
# A wave run not finished this long after it was queued is late (shorter than DAGRUN_TIMEOUT);
# "off": no Deadline Alert (`demo.run_waves`: Airflow 3.3's `dag.test()` runs the DAG unserialized,
# and a Deadline Alert then breaks the end of a successful run).
_DEADLINE_SETTING = os.environ.get("DIJLEPOST_WAVE_DEADLINE_MINUTES", "90").strip().lower()
WAVE_DEADLINE = None if _DEADLINE_SETTING == "off" else timedelta(minutes=int(_DEADLINE_SETTING))
BRUSSELS = pendulum.timezone("Europe/Brussels")


def alert_notifiers(subject: str, html: str) -> list:
    """The notifiers every alert goes through (Airflow's `BaseNotifier`s): e-mail over the SMTP
    Connection `dijlepost_alerts` when DIJLEPOST_ALERT_EMAILS names someone."""
    if not ALERT_EMAILS:
        return []
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return [
        SmtpNotifier(
            to=ALERT_EMAILS,
            from_email=os.environ.get("DIJLEPOST_ALERT_FROM"),  # None: the Connection's from_email
            subject=subject,
            html_content=html,
            smtp_conn_id=ALERT_CONN_ID,
        )
    ]


def _send_alert(context, subject: str, rows: dict) -> None:
    """Send through every notifier; a notifier that fails is logged, and the others still send."""
    html = "<table>" + "".join(
        f"<tr><th align=left>{k}</th><td>{_html(v)}</td></tr>" for k, v in rows.items()
    )
    for notifier in alert_notifiers(subject, html + "</table>"):
        try:
            notifier(context)
        except Exception as exc:  # an alert must never hide the failure it reports
            logfmt.emit("alert_not_sent", notifier=type(notifier).__name__, error=type(exc).__name__)
        else:
            logfmt.emit("alert_sent", notifier=type(notifier).__name__, to=",".join(ALERT_EMAILS))


def _html(value) -> str:
    from html import escape

    text = escape(str(value))
    return f'<a href="{text}">{text}</a>' if text.startswith(("http://", "https://")) else text


def _brussels(value) -> str:
    if not value:
        return "-"
    moment = pendulum.parse(value) if isinstance(value, str) else pendulum.instance(value)
    if not isinstance(moment, pendulum.DateTime):  # a date or a duration alone has no time to show
        return str(value)
    return moment.in_timezone(BRUSSELS).format("YYYY-MM-DD HH:mm:ss zz")


def on_failure(context) -> None:
    """Failure callback on every DAG and task: one alert line an operator can grep and page on and,
    for a task, a message through the alert notifiers (which task, which run, which try, the kind of
    error and the address of its log)."""
    ti = context.get("ti") or context.get("task_instance")
    fields = {
        "dag_id": getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": context.get("run_id"),
        "map_index": getattr(ti, "map_index", None),
        # the kind of error only (its text may quote data); Airflow passes none for some failures
        "error": type(exc).__name__ if (exc := context.get("exception")) is not None else "see the log",
    }
    logfmt.emit("alert_task_failed", **fields)
    if ti is None:  # a DAG run's failure: its failed task has sent its own message
        return
    chunk = f" chunk {ti.map_index}" if (ti.map_index or -1) >= 0 else ""
    _send_alert(
        context,
        f"dijlepost alert: {ti.dag_id} / {ti.task_id}{chunk} failed (try {ti.try_number})",
        {
            "DAG": ti.dag_id,
            "run": context.get("run_id"),
            "task": ti.task_id + chunk,
            "try": ti.try_number,
            "error": fields["error"],
            "at": pendulum.now(BRUSSELS).format("YYYY-MM-DD HH:mm:ss zz"),
            "log": getattr(ti, "log_url", None) or "-",
        },
    )


def wave_late(context, minutes: int) -> None:
    """The Deadline Alert's callback (run by the executor): the wave run is not finished `minutes`
    after it was queued."""
    run = context.get("dag_run") or {}
    deadline = (context.get("deadline") or {}).get("deadline_time")
    logfmt.emit(
        "alert_wave_late",
        dag_id=run.get("dag_id"),
        run_id=run.get("dag_run_id"),
        state=run.get("state"),
        minutes=minutes,
    )
    _send_alert(
        context,
        f"dijlepost alert: {run.get('dag_id')} not finished {minutes} minutes after it was queued",
        {
            "DAG": run.get("dag_id"),
            "run": run.get("dag_run_id"),
            "state now": run.get("state"),
            "queued at": _brussels(run.get("queued_at")),
            "started at": _brussels(run.get("start_date")),
            "deadline": _brussels(deadline),
        },
    )


def wave_deadline(deadline: timedelta | None = WAVE_DEADLINE):
    """The Deadline Alert of a wave DAG: not finished `deadline` after the run was queued (None: off)."""
    # exported by airflow.sdk at run time; its type stub (airflow/sdk/__init__.pyi) does not list them yet
    from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback  # type: ignore[attr-defined]

    if deadline is None:
        return None
    minutes = int(deadline.total_seconds() // 60)
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=deadline,
        callback=SyncCallback(wave_late, kwargs={"minutes": minutes}),
        name=f"not finished {minutes} minutes after it was queued",
    )


def dag_arguments(
    dag_id: str,
    description: str,
    doc_md: str | None,
    schedule: str,
    timeout: timedelta,
    tags: Sequence[str] = (),
    queue: str = QUEUES["default"],
    **more: Any,
) -> dict[str, Any]:
    """The `@dag(...)` arguments of a dijlepost DAG that is not a wave: one run at a time, no catch-up,
    a run time limit, the project's tags and start date, the failure alert on the DAG and its tasks, and
    the task defaults (`queue` for every task). `more` adds DAG arguments of its own (params, ...)."""
    return {
        "dag_id": dag_id,
        "description": description,
        "doc_md": doc_md,
        "schedule": schedule,
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "dagrun_timeout": timeout,
        "tags": [*TAGS, *tags],
        "on_failure_callback": on_failure,
        "default_args": default_task_args(queue),
        **more,
    }


def print_house_dag_arguments(
    dag_id: str, description: str, doc_md: str | None, schedule: str, timeout: timedelta
) -> dict[str, Any]:
    """`dag_arguments` of a DAG that works with the print house: tagged `print-house`, its tasks on the
    delivery queue (the workers that reach the print house's SFTP server)."""
    return dag_arguments(
        dag_id, description, doc_md, schedule, timeout, tags=("print-house",), queue=QUEUES["delivery"]
    )


def default_task_args(queue: str = QUEUES["default"], execution_timeout: timedelta = TASK_TIMEOUT) -> dict:
    """Retries with backoff, a time limit and the failure alert, the same for every dijlepost DAG."""
    return {
        "owner": "dijlepost",
        "retries": TASK_RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=15),
        "execution_timeout": execution_timeout,
        "on_failure_callback": on_failure,
        "queue": queue,
    }


def task_context(chunk: int | None = None) -> RunContext:
    """The running task's coordinates, written with every letter event (the address of its task log).
    A per-chunk task also shows as "chunk N" in the UI (a mapped task group's argument is not in
    `op_kwargs`, so the label is set at run time)."""
    from airflow.sdk import get_current_context

    c = get_current_context()
    if chunk is not None:
        c["map_index_template"] = f"chunk {int(chunk)}"
    ti = c["ti"]
    return RunContext(
        dag_id=ti.dag_id,
        run_id=c["run_id"],
        task_id=ti.task_id,
        map_index=ti.map_index,
        try_number=ti.try_number,
    )


def chunk_work(wave: Wave, chunk: int | None = None) -> ChunkWork:
    """The running task's work, built once per task and passed to its stage function: the task's
    coordinates, its run's claim (`dag_id:run_id`), the wave, the chunk (None: the whole claim) and
    the pseudonym key of the process settings."""
    ctx = task_context(chunk)
    return ChunkWork(
        ctx=ctx,
        claim_id=claim_id_of(ctx),
        wave=wave,
        pseudonym_key=settings().pseudonym_key,
        chunk=chunk,
    )


@contextmanager
def db_connection() -> Iterator[psycopg.Connection]:
    """A psycopg 3 connection from the `dijlepost_db` Airflow Connection (the postgres provider's hook),
    closed on the way out. A login that is a superuser or bypasses row-level security is refused with
    a ConfigurationError naming the Connection (`db.logins.refuse_privileged_login`)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from include.dijlepost.db.logins import refuse_privileged_login

    # the hook's annotation covers psycopg 2 and 3; with psycopg 3 installed it is a psycopg 3 connection
    conn = cast("psycopg.Connection", PostgresHook(postgres_conn_id=DB_CONN_ID).get_conn())
    with closing(conn):
        refuse_privileged_login(conn, f"Airflow Connection {DB_CONN_ID}")
        yield conn


def settings() -> Settings:
    """The process settings, their secrets registered with Airflow's secrets masker first, so that a
    task log or the UI shows `***` wherever one of them would appear."""
    from airflow.sdk.log import mask_secret

    from include.dijlepost.settings import Settings

    config = Settings.from_env()
    for secret in config.secrets():
        mask_secret(secret)
    return config
