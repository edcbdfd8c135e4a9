"""The local Airflow deployment's configuration (`sandboxes.airflow_cluster`), without starting it: its
logins and the environment its processes share. Starting it is tested by the DAG tests that drive it
(tests/dags/test_celery_executor.py, tests/dags/test_alerts_in_airflow.py)."""

from __future__ import annotations

import pytest

from include.dijlepost.airflow_support import POOL_SPECS
from sandboxes.airflow_cluster import POOLS, REDIS_URL, AirflowCluster

CELERY_SETTINGS = (
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY",
)


def test_airflow_cluster_logins_the_caller_s_the_environment_s_and_the_administrator(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "dora:user")
    cluster = AirflowCluster(
        tmp_path,
        metadata_url="postgresql://unused/db",
        user="admin",
        password="admin-secret",
        users={"engineer": "op", "auditor": "VIEWER"},
        passwords={"auditor": "auditor-secret"},
    )
    roles = {name: role for name, (role, _) in cluster.logins.items()}
    assert roles == {"dora": "user", "engineer": "op", "auditor": "viewer", "admin": "admin"}
    assert cluster.logins["admin"][1] == "admin-secret" and cluster.logins["auditor"][1] == "auditor-secret"
    assert (
        len(cluster.logins["engineer"][1]) >= 16
        and cluster.logins["dora"][1] != cluster.logins["engineer"][1]
    )
    env_users = dict(
        u.split(":") for u in cluster.env()["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    )
    assert env_users == roles
    assert cluster.env()["AIRFLOW__CORE__DEFAULT_TIMEZONE"] == "Europe/Brussels"


@pytest.mark.parametrize("users", ["bob", "bob:root", ":op", "bob:op:team-a"])
def test_a_login_without_a_known_role_is_refused(users, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", users)
    with pytest.raises(ValueError, match="must be NAME:ROLE"):
        AirflowCluster(tmp_path, metadata_url="postgresql://unused/db")


def test_the_environment_is_made_once_so_every_process_shares_its_secrets(tmp_path, monkeypatch):
    for name in CELERY_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    cluster = AirflowCluster(tmp_path, metadata_url="postgresql://postgres@127.0.0.1:5432/airflow_meta")
    env = cluster.env()
    assert cluster.env() is env
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] and env["AIRFLOW__API__SECRET_KEY"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg://postgres@127.0.0.1:5432/airflow_meta"
    )
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{cluster.base_url}/execution/"
    assert not set(CELERY_SETTINGS) & set(env)  # LocalExecutor: no Celery settings


def test_celery_settings_come_with_the_celery_executor_and_the_caller_s_settings_win(tmp_path):
    cluster = AirflowCluster(
        tmp_path,
        metadata_url="postgresql://postgres@127.0.0.1:5432/airflow_meta",
        executor="CeleryExecutor",
        worker_concurrency=3,
        extra_env={"AIRFLOW__CORE__PARALLELISM": "7"},
    )
    env = cluster.env()
    assert env["AIRFLOW__CELERY__BROKER_URL"] == REDIS_URL
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == (
        "db+postgresql+psycopg://postgres@127.0.0.1:5432/airflow_meta"
    )
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "3"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "7"


def test_a_celery_worker_reports_its_own_name_through_airflow_s_hostname_callable(monkeypatch):
    from airflow.utils.net import get_hostname

    for name, value in AirflowCluster.worker_env("worker2").items():
        monkeypatch.setenv(name, value)
    assert get_hostname() == "worker2"  # what Airflow writes to task_instance.hostname


def test_the_cluster_creates_the_pools_airflow_support_declares():
    assert set(POOLS) == {spec.name for spec in POOL_SPECS.values()}
    assert all(slots >= 1 for slots, _ in POOLS.values())
