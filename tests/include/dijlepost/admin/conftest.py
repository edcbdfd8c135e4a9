"""Fixtures for the rollout administration app, tested alone: real PostgreSQL through a plain URL,
FastAPI's TestClient in-process. Who is signed in is given per request in the `X-Test-User` header
(`name` or `name:admin`): the app receives identity through a dependency, and Airflow's real JWT
authentication behind that dependency is exercised by tests/plugins/test_admin_page_e2e.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient

from include.dijlepost.admin.app import create_app
from include.dijlepost.admin.deps import Identity
from include.dijlepost.tariffs import Tariffs

NRN = "85073003328"
TARIFFS = Tariffs()  # the documented defaults, whatever the environment says
# What a browser sends with a form post or fetch from the page itself (TestClient's host: testserver).
SAME_ORIGIN = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}


def header_identity(request: Request) -> Identity:
    value = request.headers.get("x-test-user")
    if not value:
        raise HTTPException(401, "Not authenticated")
    name, _, role = value.partition(":")
    return Identity(name=name, is_admin=role == "admin")


@pytest.fixture
def rollout_db(db):
    """The shared `db` fixture, plus the state migration 0006 added (pilot percentage, exemption history)."""

    def reset():
        db.rollback()
        db.execute("UPDATE rollout_phases SET pilot_percent = 0")
        db.execute("TRUNCATE paper_exemption_history RESTART IDENTITY")
        db.commit()

    reset()
    yield db
    reset()


@pytest.fixture
def app(pg_url, rollout_db):
    return create_app(
        lambda: psycopg.connect(pg_url),
        header_identity,
        pseudonym_key=lambda: b"test-pseudonym-key-not-secret",
        tariffs=lambda: TARIFFS,
    )


@pytest.fixture
def as_admin(app):
    with TestClient(app, headers={"X-Test-User": "ann.admin:admin", **SAME_ORIGIN}) as c:
        yield c


@pytest.fixture
def as_viewer(app):
    with TestClient(app, headers={"X-Test-User": "vic.viewer", **SAME_ORIGIN}) as c:
        yield c


@pytest.fixture
def admin_without_browser_headers(app):
    """An administrator's request without Origin or Sec-Fetch-Site: what a forged or scripted post is."""
    with TestClient(app, headers={"X-Test-User": "ann.admin:admin"}) as c:
        yield c


@pytest.fixture
def anonymous(app):
    with TestClient(app) as c:
        yield c


def add_letters(
    db, department: str, n: int, *, run: str | None = None, status: str = "pending", prefix: str = "L", **cols
) -> list[str]:
    """Insert n letters in a given state, as the pipeline leaves them."""
    letter_type = {"finance": "invoice", "gas": "gas_finding", "economy_housing": "premium_decision"}[
        department
    ]
    start = db.execute("SELECT count(*) FROM letters").fetchone()[0]
    final = status in ("delivered_ebox", "handed_to_print", "quarantined")
    now = datetime.now(UTC)
    ids = []
    with db.cursor() as cur:
        for i in range(n):
            lid = f"{prefix}-{start + i:05d}"
            row = {
                "letter_id": lid,
                "department": department,
                "letter_type": letter_type,
                "recipient_kind": "citizen",
                "recipient_id": NRN,
                "recipient_name": "Test Person",
                "street": "Bruul 1",
                "postal_code": "2800",
                "city": "Mechelen",
                "language": "nl",
                "status": status,
                "claim_run_id": run,
                "claimed_at": now - timedelta(minutes=5) if run else None,
                "final_at": now if final else None,
                "decided_at": now - timedelta(minutes=4) if run else None,
                "quarantine_reason": "incomplete_address: no street" if status == "quarantined" else None,
                **cols,
            }
            cur.execute(
                f"INSERT INTO letters ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
                list(row.values()),
            )
            ids.append(lid)
    db.commit()
    return ids
