"""Local stand-ins for the city's infrastructure, for `make demo` on a machine with nothing installed:
an embedded PostgreSQL (pgserver, unless DIJLEPOST_DATABASE_URL points at a real one), the eBox
sandbox over HTTPS and the print house's SFTP server on loopback."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg


@dataclass(frozen=True)
class Database:
    dijlepost_url: str          # psycopg URL of the outbox database
    airflow_sqlalchemy_url: str  # Airflow's metadata database
    airflow_connection: dict     # JSON form of AIRFLOW_CONN_DIJLEPOST_DB
    embedded: bool


def _ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def start_database(var_dir: Path) -> tuple[Database, object | None]:
    """Return the databases to use and the embedded server handle (None when an URL is configured)."""
    url = os.environ.get("DIJLEPOST_DATABASE_URL")
    server = None
    if url:
        parts = urlsplit(url)
        admin_url = parts._replace(path="/postgres").geturl()
        airflow_db = os.environ.get("DIJLEPOST_AIRFLOW_DATABASE", "dijlepost_airflow")
        _ensure_database(admin_url, airflow_db)
        _ensure_database(admin_url, parts.path.lstrip("/"))
        conn = {"conn_type": "postgres", "host": parts.hostname, "port": parts.port or 5432,
                "login": parts.username or "postgres", "password": parts.password or "",
                "schema": parts.path.lstrip("/")}
        af = parts._replace(scheme="postgresql+psycopg", path=f"/{airflow_db}").geturl()
        return Database(url, af, conn, embedded=False), None

    import pgserver

    pgdata = var_dir / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    socket_dir = str(pgdata)
    admin = f"postgresql://postgres:@/postgres?host={socket_dir}"
    for name in ("dijlepost", "airflow"):
        _ensure_database(admin, name)
    db = Database(
        dijlepost_url=f"postgresql://postgres:@/dijlepost?host={socket_dir}",
        airflow_sqlalchemy_url=f"postgresql+psycopg://postgres:@/airflow?host={socket_dir}",
        airflow_connection={"conn_type": "postgres", "host": socket_dir, "login": "postgres", "schema": "dijlepost"},
        embedded=True,
    )
    return db, server


def airflow_env(project_root: Path, var_dir: Path, db: Database, ebox_conn: dict, sftp_conn: dict) -> dict:
    """Environment for Airflow processes: metadata on the same PostgreSQL, connections from env vars."""
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(var_dir / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project_root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db.airflow_sqlalchemy_url,
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_DIJLEPOST_DB": json.dumps(db.airflow_connection),
        "AIRFLOW_CONN_EBOX_DEFAULT": json.dumps(ebox_conn),
        "AIRFLOW_CONN_PRINTHOUSE_SFTP": json.dumps(sftp_conn),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(project_root), os.environ.get("PYTHONPATH")])),
    })
    return env
