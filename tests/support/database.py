"""A fresh, migrated PostgreSQL database per test session, and a clean outbox per test."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest

from include.dijlepost.db.migrate import migrate

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
