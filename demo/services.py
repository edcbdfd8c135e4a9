"""Local stand-ins for the city's infrastructure, for `make demo` on a machine with nothing installed:
an embedded PostgreSQL (pgserver, unless DIJLEPOST_DATABASE_URL points at a real one) holding the
outbox and Airflow's metadata, and the Airflow Connections of the eBox sandbox and the print house.

The demo connects to PostgreSQL as a superuser (pgserver's `postgres`) only to create the databases,
migrate and administer; after `db migrate` it creates the pipeline's login (`with_pipeline_login`:
member of dijlepost_pipeline only, no superuser, no BYPASSRLS) and the department systems' logins
(`department_login_url`), and the import, the wave DAGs and the print house's answers use those."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg

from sandboxes.services import ensure_database, start_embedded_postgres


@dataclass(frozen=True)
class Database:
    dijlepost_url: str  # psycopg URL of the outbox database
    airflow_url: str  # psycopg URL of Airflow's metadata database
    airflow_connection: dict  # JSON form of AIRFLOW_CONN_DIJLEPOST_DB
    embedded: bool
    pipeline_url: str | None = None  # the outbox database as the pipeline's login


PIPELINE_LOGIN = "dijlepost_demo_pipeline"


def _as_login(url: str, login: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{quote(login, safe='')}:{quote(password, safe='')}@{host}").geturl()


def with_pipeline_login(db: Database) -> Database:
    """Create (or reuse) the pipeline's login with a fresh password, after `db migrate` made its role;
    return `db` with the Airflow Connection and `pipeline_url` on that login."""
    from include.dijlepost.db.logins import ensure_login

    password = secrets.token_urlsafe(24)
    with psycopg.connect(db.dijlepost_url) as admin:
        ensure_login(admin, PIPELINE_LOGIN, "dijlepost_pipeline", password=password)
    return replace(
        db,
        pipeline_url=_as_login(db.dijlepost_url, PIPELINE_LOGIN, password),
        airflow_connection={**db.airflow_connection, "login": PIPELINE_LOGIN, "password": password},
    )


def department_login_url(db: Database, department: str) -> str:
    """The outbox database as the login of `department`'s system (`dijlepost_demo_<department>_system`,
    member of dijlepost_dept_<department> only), created or reused with a fresh password."""
    from include.dijlepost.db.logins import ensure_login
    from include.dijlepost.db.migrate import department_role

    login, password = f"dijlepost_demo_{department}_system", secrets.token_urlsafe(24)
    with psycopg.connect(db.dijlepost_url) as admin:
        ensure_login(admin, login, department_role(department), password=password)
    return _as_login(db.dijlepost_url, login, password)


def start_database(var_dir: Path) -> tuple[Database, object | None]:
    """Return the databases to use and the embedded server handle (None when an URL is configured)."""
    url = os.environ.get("DIJLEPOST_DATABASE_URL")
    if url:
        parts = urlsplit(url)
        admin_url = parts._replace(path="/postgres").geturl()
        airflow_db = os.environ.get("DIJLEPOST_AIRFLOW_DATABASE", "dijlepost_airflow")
        ensure_database(admin_url, airflow_db)
        ensure_database(admin_url, parts.path.lstrip("/"))
        conn = {
            "conn_type": "postgres",
            "host": parts.hostname,
            "port": parts.port or 5432,
            "login": parts.username or "postgres",
            "password": parts.password or "",
            "schema": parts.path.lstrip("/"),
        }
        return Database(url, parts._replace(path=f"/{airflow_db}").geturl(), conn, embedded=False), None

    pgdata = var_dir / "pgdata"
    server = start_embedded_postgres(pgdata)
    socket_dir = str(pgdata)
    for name in ("dijlepost", "airflow"):
        ensure_database(f"postgresql://postgres:@/postgres?host={socket_dir}", name)
    db = Database(
        dijlepost_url=f"postgresql://postgres:@/dijlepost?host={socket_dir}",
        airflow_url=f"postgresql://postgres:@/airflow?host={socket_dir}",
        airflow_connection={
            "conn_type": "postgres",
            "host": socket_dir,
            "login": "postgres",
            "schema": "dijlepost",
        },
        embedded=True,
    )
    return db, server


def airflow_env(project_root: Path, db: Database, ebox_conn: dict, sftp_conn: dict) -> dict:
    """What Airflow's processes need beside their own settings: the Connections, and the project on
    PYTHONPATH so that the DAG files import `include`."""
    return {
        "AIRFLOW_CONN_DIJLEPOST_DB": json.dumps(db.airflow_connection),
        "AIRFLOW_CONN_EBOX_DEFAULT": json.dumps(ebox_conn),
        "AIRFLOW_CONN_PRINTHOUSE_SFTP": json.dumps(sftp_conn),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(project_root), os.environ.get("PYTHONPATH")])),
    }
