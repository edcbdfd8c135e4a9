"""The audit trail of a real wave run, end to end: the finance wave runs as a login that holds
only the `dijlepost_pipeline` role (migration 0005), as every wave test does, and what it leaves behind is an intact hash chain
without personal data, a trace from acceptance to delivery with each task's coordinates, and task logs
in which every task ends with its summary line."""

from __future__ import annotations

import json

import psycopg
import pytest

from include.dijlepost.audit import privacy_findings, trace, verify
from tests.dags.conftest import pg_connection
from tests.dags.test_wave_runs import assert_no_personal_data, letters, seed

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
SUMMARY_LINES = (
    "rollout_phase",
    "letters_claimed",
    "ebox_activation_checked",
    "channels_decided",
    "letters_rendered",
    "ebox_delivered",
    "print_handed_over",
    "run_summary",
)


@pytest.fixture
def pipeline_login(pipeline_url):
    """A login that is a member of dijlepost_pipeline and nothing else (tests/support/database.py)."""
    return pipeline_url


def test_a_run_as_the_pipeline_role_leaves_an_intact_readable_trail(db, ebox, run_wave, sshd, pipeline_login):
    seed(db, ebox, "finance", 12)
    log = run_wave("letters_finance", AIRFLOW_CONN_DIJLEPOST_DB=json.dumps(pg_connection(pipeline_login)))
    rows = letters(db)
    assert {r["status"] for r in rows.values()} <= {"delivered_ebox", "handed_to_print", "quarantined"}

    result = verify(db)
    assert result.ok and result.checked > 3 * len(rows)
    assert privacy_findings(db) == []
    assert_no_personal_data(log, rows)

    delivered = sorted(i for i, r in rows.items() if r["status"] == "delivered_ebox")
    assert delivered
    steps = [(e["event"], e["task_id"], e["dag_id"]) for e in trace(db, delivered[0])]
    assert steps == [
        ("accepted", "letters_import", None),
        ("claimed", "claim_letters", "letters_finance"),
        ("decided", "chunk.decide_channels", "letters_finance"),
        ("rendered", "chunk.render_letters", "letters_finance"),
        ("ebox_publication_started", "chunk.deliver_to_ebox", "letters_finance"),
        ("delivered_ebox", "chunk.deliver_to_ebox", "letters_finance"),
    ]
    rendered = next(e for e in trace(db, delivered[0]) if e["event"] == "rendered")
    assert (
        rendered["map_index"] >= 0 and rendered["try_number"] >= 1 and "/mapped/" in rendered["task_log_url"]
    )
    for name in SUMMARY_LINES:
        assert f"event={name} " in log, name
    # The login the run used is the restricted one.
    with (
        psycopg.connect(pipeline_login) as conn,
        pytest.raises(
            psycopg.errors.InsufficientPrivilege, match="permission denied for table letter_events"
        ),
    ):
        conn.execute("DELETE FROM letter_events")
