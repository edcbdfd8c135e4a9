"""Local stand-ins for the city's infrastructure, for `make demo` on a machine with nothing installed:
an embedded PostgreSQL (pgserver, unless DIJLEPOST_DATABASE_URL points at a real one) holding the
outbox and Airflow's metadata, and the Airflow Connections of the eBox sandbox and the print house."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sandboxes.processes import ensure_database, start_embedded_postgres


@dataclass(frozen=True)
class Database:
    dijlepost_url: str  # psycopg URL of the outbox database
    airflow_url: str  # psycopg URL of Airflow's metadata database
    airflow_connection: dict  # JSON form of AIRFLOW_CONN_DIJLEPOST_DB
    embedded: bool


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
