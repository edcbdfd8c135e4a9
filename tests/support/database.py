"""A fresh, migrated PostgreSQL database per test session, a clean outbox per test, and the logins of
the deployment: the pipeline's (`pipeline_url`, member of dijlepost_pipeline only) and a department
system's (`department_url`, member of dijlepost_dept_<department> only), neither a superuser nor
BYPASSRLS. The test server trusts loopback, so they need no password; several test sessions may
create them at the same moment (`logins.ensure_login` is idempotent and race-safe)."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest

from include.dijlepost.db.logins import ensure_login
from include.dijlepost.db.migrate import department_role, migrate

SERVER = os.environ.get("DIJLEPOST_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture(scope="session")
def pg_url():
    name = f"dijlepost_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{SERVER}/{name}"
    with psycopg.connect(url) as conn:
        migrate(conn)
    yield url
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


PIPELINE_LOGIN = "dijlepost_test_pipeline"


def login_url(pg_url: str, login: str) -> str:
    """`pg_url` with `login` as its user."""
    head, _, database = pg_url.rpartition("/")
    scheme, _, host = head.partition("://")
    return f"{scheme}://{login}@{host.rpartition('@')[2]}/{database}"


@pytest.fixture(scope="session")
def pipeline_url(pg_url):
    """The session database as the pipeline's login (what Airflow's dijlepost_db Connection uses)."""
    with psycopg.connect(f"{SERVER}/postgres") as admin:
        ensure_login(admin, PIPELINE_LOGIN, "dijlepost_pipeline")
    return login_url(pg_url, PIPELINE_LOGIN)


def department_url(pg_url: str, department: str) -> str:
    """The session database as the login of `department`'s system (`dijlepost_test_<department>_system`)."""
    login = f"dijlepost_test_{department}_system"
    with psycopg.connect(f"{SERVER}/postgres") as admin:
        ensure_login(admin, login, department_role(department))
    return login_url(pg_url, login)


@pytest.fixture
def db(pg_url):
    """A connection to the session database with the outbox emptied and phases reset."""
    conn = psycopg.connect(pg_url)
    # letter_events is append-only (migration 0005): emptying it between tests is a break-glass act,
    # scoped to this one transaction so the test itself runs under the normal rules.
    conn.execute("SELECT set_config('dijlepost.audit_break_glass', 'on', true)")
    conn.execute(
        "TRUNCATE letters, letter_events, paper_exemptions, ebox_activation, print_batches, "
        "rollout_history RESTART IDENTITY"
    )
    conn.execute("UPDATE rollout_phases SET phase = 'live', pilot_allowlist = '{}'")
    conn.commit()
    yield conn
    conn.rollback()
    conn.close()
