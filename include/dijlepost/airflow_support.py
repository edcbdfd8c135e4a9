"""What every dijlepost DAG shares: task defaults, the failure alert, the run coordinates of a task,
the database connection and the deployment settings.

DAG files and the wave DAG factory import these; the domain modules never import Airflow. Airflow is
imported inside the functions, so importing this module at DAG-parse time touches no database or
network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, cast

import pendulum

from include.dijlepost import logfmt
from include.dijlepost.outbox import RunContext

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from include.dijlepost.settings import Settings

DB_CONN_ID = "dijlepost_db"
QUEUES = {"default": "default", "render": "render", "delivery": "delivery"}
# Pools bound how much runs at once, whatever the executor: rendering (CPU: cores on one machine, the
# render workers' total concurrency on Celery), eBox publication and the print house's SFTP session.
# Declared here once: the DAGs take the names, the local Airflow harness (sandboxes.processes) creates them
# with `slots` (None: one per core), and a test holds airflow_settings.yaml and astro-config.yaml to them.


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


def on_failure(context) -> None:
    """Failure callback on every DAG and task: one alert line an operator can grep and page on."""
    ti = context.get("ti") or context.get("task_instance")
    logfmt.emit(
        "alert_task_failed",
        dag_id=getattr(ti, "dag_id", None),
        task_id=getattr(ti, "task_id", None),
        run_id=context.get("run_id"),
        map_index=getattr(ti, "map_index", None),
        error=type(context.get("exception")).__name__,
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


def claim_key(ctx: RunContext) -> str:
    """The claim a DAG run holds on its letters: the same for every task and try of the run."""
    return f"{ctx.dag_id}:{ctx.run_id}"


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
