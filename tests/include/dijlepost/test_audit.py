"""The audit trail (migration 0005, `include.dijlepost.audit`, `dijlepost audit ...`) on a real PostgreSQL.

Tampering is done as the superuser the tests connect as, under break-glass or with triggers disabled
(`session_replication_role = replica`), because the pipeline's role cannot do it at all.
"""

from __future__ import annotations

import contextlib
import csv
import io
import threading
from datetime import UTC, date, datetime
from itertools import pairwise

import psycopg
import pytest

from include.dijlepost.audit import export_csv, privacy_findings, task_log_url, trace, verify
from include.dijlepost.cli import EXIT_OK, EXIT_REFUSED, main
from include.dijlepost.outbox import RunContext, record_events

pytestmark = pytest.mark.integration

NRN = "85073003328"
RENDER = RunContext(
    dag_id="letters_finance",
    run_id="scheduled__2026-03-02T06:00:00+00:00",
    task_id="render_letters",
    map_index=2,
    try_number=3,
)
CLAIM = RunContext(
    dag_id="letters_finance",
    run_id="scheduled__2026-03-02T06:00:00+00:00",
    task_id="claim_letters",
    map_index=-1,
    try_number=1,
)
IMPORT = RunContext(task_id="letters_import")


def add_letter(db, letter_id: str, **cols) -> None:
    row = {
        "letter_id": letter_id,
        "department": "finance",
        "letter_type": "invoice",
        "recipient_kind": "citizen",
        "recipient_id": NRN,
        "recipient_name": "Jan Peeters",
        "street": "Bruul 12",
        "postal_code": "2800",
        "city": "Mechelen",
        "language": "nl",
        **cols,
    }
    db.execute(
        f"INSERT INTO letters ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})", list(row.values())
    )
    db.commit()


def seed_history(db) -> None:
    """Two letters, written in four transactions as the pipeline does."""
    for lid in ("FIN-1", "FIN-2"):
        add_letter(db, lid)
    with db.cursor() as cur:
        record_events(
            cur,
            IMPORT,
            [
                ("FIN-1", "accepted", {"department": "finance", "letter_type": "invoice"}),
                ("FIN-2", "accepted", {"department": "finance", "letter_type": "invoice"}),
            ],
        )
    db.commit()
    with db.cursor() as cur:
        record_events(
            cur,
            CLAIM,
            [("FIN-1", "claimed", {"taken_over": False}), ("FIN-2", "claimed", {"taken_over": False})],
        )
    db.commit()
    with db.cursor() as cur:
        record_events(
            cur,
            CLAIM,
            [
                (
                    "FIN-1",
                    "decided",
                    {"channel": "ebox", "rule": "ebox_active", "recipient": "r-0123456789abcdef0123"},
                )
            ],
        )
    db.commit()
    with db.cursor() as cur:
        record_events(
            cur,
            RENDER,
            [
                ("FIN-1", "rendered", {"sha256": "ab" * 32, "pages": 2}),
                ("FIN-2", "quarantined", {"stage": "render", "reason": "render: été ✓"}),
            ],
        )
    db.commit()


def break_glass(db) -> None:
    db.execute("SELECT set_config('dijlepost.audit_break_glass', 'on', true)")


@pytest.fixture
def run(pg_url, capsys):
    def _run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--database-url", pg_url, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


# --------------------------------------------------------------------------- the chain


def test_every_event_is_chained_in_order_and_the_chain_verifies(db, run):
    seed_history(db)
    rows = db.execute("SELECT chain_seq, prev_hash, hash FROM letter_events ORDER BY chain_seq").fetchall()
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert bytes(rows[0][1]) == bytes(32)
    assert all(bytes(b[1]) == bytes(a[2]) for a, b in pairwise(rows))
    # The migration's SQL definition and the verifier's own agree on every row.
    assert (
        db.execute("SELECT count(*) FROM letter_events e WHERE hash <> audit_event_hash(e)").fetchone()[0]
        == 0
    )
    result = verify(db)
    assert (
        result.ok
        and result.checked == 7
        and result.head_seq == 7
        and result.head_hash == bytes(rows[-1][2]).hex()
    )
    code, out, _ = run("audit", "verify")
    assert code == EXIT_OK and "chain intact: 7 events" in out and result.head_hash in out


def test_an_edited_event_is_named(db, run):
    seed_history(db)
    break_glass(db)
    db.execute(
        "UPDATE letter_events SET details = jsonb_set(details, '{rule}', '\"paper_preference\"') "
        "WHERE chain_seq = 5"
    )
    db.commit()
    result = verify(db)
    assert not result.ok and result.broken_at == 5 and "edited" in result.problem and result.checked == 4
    code, out, _ = run("audit", "verify")
    assert code == EXIT_REFUSED and "BROKEN at event #5" in out and "FIN-1" in out


def test_an_edited_timestamp_is_detected(db):
    seed_history(db)
    break_glass(db)
    db.execute("UPDATE letter_events SET at = at - interval '1 microsecond' WHERE chain_seq = 2")
    db.commit()
    assert verify(db).broken_at == 2


def test_a_deleted_event_is_named(db, run):
    seed_history(db)
    break_glass(db)
    db.execute("DELETE FROM letter_events WHERE chain_seq = 3")
    db.commit()
    result = verify(db)
    assert result.broken_at == 4 and "#3..#3 are missing" in result.problem
    code, out, _ = run("audit", "verify")
    assert code == EXIT_REFUSED and "BROKEN at event #4" in out


def test_the_deleted_newest_event_is_caught_by_an_anchor(db, run):
    seed_history(db)
    head = verify(db)
    break_glass(db)
    db.execute("DELETE FROM letter_events WHERE chain_seq = 7")
    db.commit()
    assert verify(db).ok  # a truncated chain is still a valid chain ...
    code, out, _ = run("audit", "verify", "--anchor", f"7:{head.head_hash}")
    assert code == EXIT_REFUSED and "ANCHOR MISMATCH: event #7" in out  # ... the anchor tells


def test_an_event_inserted_in_the_middle_is_named(db):
    seed_history(db)
    # With triggers off, a forged event with a valid hash of its own is slipped in as #3.
    db.execute("SET session_replication_role = replica")
    db.execute("UPDATE letter_events SET chain_seq = -chain_seq - 1 WHERE chain_seq >= 3")
    db.execute("UPDATE letter_events SET chain_seq = -chain_seq WHERE chain_seq < 0")
    prev = db.execute("SELECT hash FROM letter_events WHERE chain_seq = 2").fetchone()[0]
    db.execute(
        "INSERT INTO letter_events (letter_id, event, details, chain_seq, prev_hash, hash) "
        "VALUES ('FIN-2', 'delivered_ebox', '{\"message_id\": \"forged\"}', 3, %s, %s)",
        (prev, bytes(32)),
    )
    db.execute("UPDATE letter_events e SET hash = audit_event_hash(e) WHERE chain_seq = 3")
    db.execute("SET session_replication_role = origin")
    db.commit()
    result = verify(db)
    assert result.broken_at == 4 and "prev_hash" in result.problem and result.checked == 3


def test_a_rewritten_tail_passes_the_links_but_not_the_anchor(db):
    seed_history(db)
    anchor = (
        5,
        db.execute("SELECT encode(hash, 'hex') FROM letter_events WHERE chain_seq = 5").fetchone()[0],
    )
    # The strongest attack: edit #4 and recompute every hash after it.
    db.execute("SET session_replication_role = replica")
    db.execute("UPDATE letter_events SET details = '{\"taken_over\": true}' WHERE chain_seq = 4")
    for seq in range(4, 8):
        db.execute(
            "UPDATE letter_events e SET prev_hash = p.hash FROM letter_events p "
            "WHERE e.chain_seq = %s AND p.chain_seq = %s",
            (seq, seq - 1),
        )
        db.execute("UPDATE letter_events e SET hash = audit_event_hash(e) WHERE chain_seq = %s", (seq,))
    db.execute("SET session_replication_role = origin")
    db.commit()
    assert verify(db).broken_at is None
    result = verify(db, anchors=dict([anchor]))
    assert not result.ok and "event #5" in result.anchor_problems[0]


def test_concurrent_writers_keep_one_unbroken_chain(db, pg_url):
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with psycopg.connect(pg_url) as conn:
                for i in range(20):
                    with conn.cursor() as cur:
                        record_events(
                            cur,
                            CLAIM,
                            [(f"W{n}-{i}-{k}", "claimed", {"taken_over": False}) for k in range(5)],
                        )
                    conn.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    result = verify(db)
    assert result.ok and result.checked == 4 * 20 * 5 == result.head_seq


# --------------------------------------------------------------------------- append-only


def test_nobody_updates_deletes_or_truncates_without_break_glass(db):
    seed_history(db)
    for sql in (
        "UPDATE letter_events SET event = 'x' WHERE chain_seq = 1",
        "DELETE FROM letter_events WHERE chain_seq = 1",
        "TRUNCATE letter_events",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            db.execute(sql)  # as the superuser the tests connect as
        db.rollback()
    assert verify(db).checked == 7


def test_the_pipeline_role_can_append_but_never_change_events(db):
    seed_history(db)
    db.execute("SET ROLE dijlepost_pipeline")
    with db.cursor() as cur:  # what every stage does, through record_letter_event
        record_events(cur, CLAIM, [("FIN-1", "decided", {"channel": "ebox"})])
    db.commit()
    assert db.execute("SELECT max(at) FROM letter_events").fetchone()[0].year >= 2026
    for sql in (
        "INSERT INTO letter_events (letter_id, event, at) VALUES ('FIN-1', 'x', '2001-01-01T00:00:00Z')",
        "UPDATE letter_events SET event = 'x' WHERE chain_seq = 1",
        "DELETE FROM letter_events WHERE chain_seq = 1",
        "TRUNCATE letter_events",
    ):
        db.execute("SELECT set_config('dijlepost.audit_break_glass', 'on', true)")  # not theirs to use
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege, match="permission denied for table letter_events"
        ):
            db.execute(sql)
        db.rollback()
    db.execute("SET ROLE dijlepost_pipeline")  # the rollback reset the role to the superuser's
    db.execute("UPDATE letters SET status = status WHERE letter_id = 'FIN-1'")  # its other work still works
    db.commit()
    db.execute("RESET ROLE")
    db.commit()
    result = verify(db)
    assert result.ok and result.checked == 8


def test_break_glass_needs_the_role_the_privilege_and_the_setting(db, pg_url):
    member = "dijlepost_test_breakglass_member"
    # roles belong to the server: made by an earlier session
    with (
        psycopg.connect(pg_url, autocommit=True) as admin,
        contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation),
    ):
        admin.execute(f"CREATE ROLE {member} NOLOGIN IN ROLE dijlepost_audit_breakglass")
    seed_history(db)
    db.execute(f"SET ROLE {member}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        break_glass(db)
        db.execute("UPDATE letter_events SET event = 'x' WHERE chain_seq = 1")  # no privilege granted yet
    db.rollback()
    db.execute(
        "GRANT SELECT, UPDATE ON letter_events TO dijlepost_audit_breakglass"
    )  # the DBA, for the incident
    db.commit()
    db.execute(f"SET ROLE {member}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        db.execute("UPDATE letter_events SET event = 'x' WHERE chain_seq = 1")  # the setting is missing
    db.rollback()
    db.execute(f"SET ROLE {member}")
    break_glass(db)
    db.execute("UPDATE letter_events SET event = 'x' WHERE chain_seq = 1")
    db.execute("RESET ROLE")
    db.execute("REVOKE SELECT, UPDATE ON letter_events FROM dijlepost_audit_breakglass")
    db.commit()
    assert verify(db).broken_at == 1


# --------------------------------------------------------------------------- trace and export


def test_trace_tells_a_letters_life_in_order_with_its_task_logs(db, run):
    seed_history(db)
    events = trace(db, "FIN-1", "https://airflow.mechelen.example/")
    assert [e["event"] for e in events] == ["accepted", "claimed", "decided", "rendered"]
    assert events[0]["task_id"] == "letters_import" and events[0]["task_log_url"] is None
    assert events[3]["task_log_url"] == (
        "https://airflow.mechelen.example/dags/letters_finance/runs/"
        "scheduled__2026-03-02T06%3A00%3A00%2B00%3A00/tasks/render_letters"
        "/mapped/2?try_number=3"
    )
    assert events[1]["task_log_url"].endswith("/tasks/claim_letters?try_number=1")
    code, out, _ = run("audit", "trace", "FIN-1", "--airflow-url", "https://airflow.mechelen.example")
    lines = out.splitlines()
    assert code == EXIT_OK and [ln.split()[4] for ln in lines if ln.startswith("#")] == [
        "accepted",
        "claimed",
        "decided",
        "rendered",
    ]
    assert "by letters_finance / scheduled__2026-03-02T06:00:00+00:00 / render_letters[2] try 3" in out
    assert "FIN-2" not in out
    assert run("audit", "trace", "NOPE")[0] == EXIT_REFUSED


def test_trace_links_to_the_airflow_ui_of_airflow_s_own_base_url(db, run, tmp_path, monkeypatch):
    """Without --airflow-url or DIJLEPOST_AIRFLOW_URL the links start with Airflow's `[api] base_url`:
    AIRFLOW__API__BASE_URL, else the one in airflow.cfg, else http://localhost:8080."""
    from include.dijlepost.cli import airflow_base_url

    seed_history(db)
    for name in ("DIJLEPOST_AIRFLOW_URL", "AIRFLOW__API__BASE_URL", "AIRFLOW_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert airflow_base_url() is None
    assert "log http://localhost:8080/dags/letters_finance/" in run("audit", "trace", "FIN-1")[1]
    (tmp_path / "airflow.cfg").write_text(
        "[core]\nexecutor = LocalExecutor\n[api]\nbase_url = https://airflow.cfg.example\n"
    )
    assert "log https://airflow.cfg.example/dags/letters_finance/" in run("audit", "trace", "FIN-1")[1]
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://127.0.0.1:8080")
    assert "log http://127.0.0.1:8080/dags/letters_finance/" in run("audit", "trace", "FIN-1")[1]
    monkeypatch.setenv("DIJLEPOST_AIRFLOW_URL", "https://dijlepost.example")
    assert "log https://dijlepost.example/dags/letters_finance/" in run("audit", "trace", "FIN-1")[1]


def test_task_log_url_follows_airflow_3():
    assert (
        task_log_url("http://h:8080", "d", "manual__1", "t", -1, 0)
        == "http://h:8080/dags/d/runs/manual__1/tasks/t"
    )
    assert task_log_url(None, None, None, "letters_import", None, None) is None


def seed_dated(db) -> None:
    """Events at chosen instants (break-glass keeps the given `at`), around Brussels midnights."""
    break_glass(db)
    with db.cursor() as cur:
        for lid, at in (
            ("OLD", "2026-02-28T22:59:59Z"),  # 28 Feb 23:59:59 Brussels: before
            ("IN-1", "2026-02-28T23:00:00Z"),  # 1 Mar 00:00 Brussels: first included
            ("IN-2", "2026-03-02T12:00:00Z"),
            ("IN-3", "2026-03-02T22:59:59Z"),  # 2 Mar 23:59:59 Brussels: last included
            ("NEW", "2026-03-02T23:00:00Z"),
        ):
            cur.execute(
                "INSERT INTO letter_events (letter_id, event, details, dag_id, run_id, task_id, map_index, "
                "try_number, at) VALUES (%s, 'claimed', '{\"taken_over\": false}', 'letters_gas', 'r1', "
                "'claim_letters', -1, 1, %s)",
                (lid, at),
            )
    db.commit()


def test_export_writes_the_events_of_whole_brussels_days_with_their_links(db):
    seed_dated(db)
    buf = io.StringIO()
    assert export_csv(db, date(2026, 3, 1), date(2026, 3, 2), buf) == 3
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["letter_id"] for r in rows] == ["IN-1", "IN-2", "IN-3"]
    assert datetime.fromisoformat(rows[0]["at"]) == datetime(2026, 2, 28, 23, tzinfo=UTC)
    assert rows[0]["details"] == '{"taken_over": false}'
    assert (
        rows[0]["task_log_url"]
        == "http://localhost:8080/dags/letters_gas/runs/r1/tasks/claim_letters?try_number=1"
    )
    # Consecutive rows link up, so an auditor can check an export on its own.
    assert all(b["prev_hash"] == a["hash"] for a, b in pairwise(rows))


def test_export_command_writes_the_file_and_refuses_a_reversed_period(db, run, tmp_path):
    seed_dated(db)
    out = tmp_path / "march.csv"
    code, text, _ = run("audit", "export", "--from", "2026-03-02", "--to", "2026-03-02", "--output", str(out))
    assert code == EXIT_OK and "exported 2 events" in text
    assert [r["letter_id"] for r in csv.DictReader(out.open())] == ["IN-2", "IN-3"]
    assert not (tmp_path / "march.csv.part").exists()
    code, _, err = run("audit", "export", "--from", "2026-03-02", "--to", "2026-03-01", "--output", str(out))
    assert code == EXIT_REFUSED and "before" in err


# --------------------------------------------------------------------------- privacy


def test_the_seeded_history_holds_no_personal_data(db):
    seed_history(db)
    assert privacy_findings(db) == []


@pytest.mark.parametrize(
    "details, holds",
    [
        ({"error": f"recipient {NRN} unknown"}, "recipient id"),
        ({"note": "for JAN PEETERS"}, "recipient name"),
        ({"address": "bruul 12, Mechelen"}, "street"),
        ({"other": "70.01.01-123.45"}, "national register number pattern"),
    ],
)
def test_personal_data_in_an_event_is_found(db, run, details, holds):
    seed_history(db)
    with db.cursor() as cur:
        record_events(cur, CLAIM, [("FIN-2", "released_for_retry", details)])
    db.commit()
    assert [(f["chain_seq"], f["holds"]) for f in privacy_findings(db)] == [(8, holds)]
    code, out, _ = run("audit", "verify")
    assert code == EXIT_REFUSED and "PERSONAL DATA: event #8" in out


def test_the_migration_chains_the_events_written_before_it():
    """An existing database: events recorded before 0005 are chained in the order they were written."""
    import uuid

    from include.dijlepost.db.migrate import available_migrations
    from tests.support.database import SERVER

    name = f"dijlepost_audit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"{SERVER}/{name}") as conn:
            conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, checksum text NOT NULL)")
            migrations = dict(available_migrations())
            for version in ("0001_outbox", "0002_ebox_state"):
                conn.execute(migrations[version])
            # the INSERT the code made at that version (record_letter_event came with 0012)
            insert = "INSERT INTO letter_events (letter_id, event, details) VALUES (%s, 'claimed', '{}')"
            for i in range(5):
                conn.execute(insert, (f"OLD-{i}",))
            conn.commit()
            conn.execute(migrations["0005_audit_chain"])
            conn.commit()
            conn.execute(insert, ("NEW-1",))
            conn.commit()
            rows = conn.execute(
                "SELECT letter_id, chain_seq FROM letter_events ORDER BY chain_seq"
            ).fetchall()
            assert rows == [(f"OLD-{i}", i + 1) for i in range(5)] + [("NEW-1", 6)]
            result = verify(conn)
            assert result.ok and result.checked == 6
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize(
    "text",
    [
        "²:" + "a" * 64,
        "１:" + "a" * 64,
        "7:" + "g" * 64,
        "7" + "a" * 64,
        "7:" + "a" * 63,
        "-1:" + "a" * 64,
        ":" + "a" * 64,
    ],
)
def test_an_anchor_is_ascii_digits_and_hex_or_refused(text):
    from include.dijlepost.audit import parse_anchor

    with pytest.raises(ValueError, match="must be CHAIN_SEQ:SHA256HEX"):
        parse_anchor(text)


def test_an_anchor_as_printed_is_read():
    from include.dijlepost.audit import parse_anchor

    assert parse_anchor(" 12:" + "AB" * 32 + " ") == (12, "ab" * 32)
