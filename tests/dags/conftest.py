"""Airflow for the DAG tests: a throwaway AIRFLOW_HOME, and for end-to-end runs a migrated metadata
database on the test PostgreSQL. DAG runs happen in a subprocess so that Airflow reads exactly the
configuration and connections that the test gives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.support.database import SERVER

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    return tmp_path_factory.mktemp("airflow-home")


@pytest.fixture(scope="session")
def airflow_metadata_url(airflow_home):
    name = f"dijlepost_airflow_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{SERVER.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    env = base_airflow_env(airflow_home, url)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    for pool, slots in (("rendering", 2), ("ebox_publication", 4), ("print_house_sftp", 1)):
        subprocess.run(
            [sys.executable, "-m", "airflow", "pools", "set", pool, str(slots), pool],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    yield url
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def base_airflow_env(airflow_home: Path, metadata_url: str) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def pg_connection(url: str) -> dict:
    from urllib.parse import urlsplit

    p = urlsplit(url)
    return {
        "conn_type": "postgres",
        "host": p.hostname,
        "port": p.port or 5432,
        "login": p.username or "postgres",
        "password": p.password or "",
        "schema": p.path.lstrip("/"),
    }


class WaveRunner:
    """Runs one wave DAG with `dag.test()` in a subprocess and keeps its log for assertions."""

    def __init__(self, env: dict, log_dir: Path):
        self.env, self.log_dir, self.runs = env, log_dir, 0

    def __call__(self, dag_id: str, expect_success: bool = True, **extra_env) -> str:
        self.runs += 1
        log = self.log_dir / f"{dag_id}-{self.runs}.log"
        proc = subprocess.run(
            [sys.executable, "-m", "demo.run_waves", dag_id],
            env={**self.env, **extra_env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        log.write_text(proc.stdout + proc.stderr)
        if expect_success:
            assert proc.returncode == 0, (
                f"{dag_id} failed; log in {log}\n{(proc.stdout + proc.stderr)[-4000:]}"
            )
        else:
            assert proc.returncode != 0, f"{dag_id} unexpectedly succeeded; log in {log}"
        return proc.stdout + proc.stderr


@pytest.fixture
def run_wave(
    airflow_home, airflow_metadata_url, pipeline_url, ebox, sshd, printhouse_dirs, tmp_path, monkeypatch
):
    """A callable that runs a wave DAG against the test PostgreSQL (as the pipeline's login, which
    holds only dijlepost_pipeline: the DAGs refuse a superuser), the eBox sandbox and sshd."""
    env = base_airflow_env(airflow_home, airflow_metadata_url)
    env.update(
        {
            "AIRFLOW_CONN_DIJLEPOST_DB": json.dumps(pg_connection(pipeline_url)),
            "AIRFLOW_CONN_EBOX_DEFAULT": json.dumps(ebox.airflow_connection()),
            "AIRFLOW_CONN_PRINTHOUSE_SFTP": json.dumps(sshd.airflow_connection()),
            "DIJLEPOST_DOCUMENT_ROOT": str(tmp_path / "documents"),
            "DIJLEPOST_PRINT_WORK_DIR": str(tmp_path / "print-batches"),
        }
    )
    return WaveRunner(env, tmp_path)
