"""Least privilege in the database, tried as an attacker would with the deployment's own logins: a
department system's login (member of dijlepost_dept_<department> only) and the pipeline's (member of
dijlepost_pipeline only), neither a superuser nor BYPASSRLS (tests/support/database.py)."""

from __future__ import annotations

import json
import re

import psycopg
import pytest

from include.dijlepost import outbox, states
from include.dijlepost.audit import verify
from include.dijlepost.db.logins import OVERRIDE, refuse_privileged_login
from include.dijlepost.db.migrate import department_role
from include.dijlepost.outbox import RunContext
from include.dijlepost.settings import ConfigurationError
from tests.include.dijlepost.test_outbox import add_letters
from tests.support.database import department_url
from tests.support.work import chunk_work

pytestmark = pytest.mark.integration

CONTRACT = (
    "letter_id, department, letter_type, recipient_kind, recipient_id, recipient_name, street, postal_code, "
    "city, language"
)
CTX = RunContext(dag_id="letters_finance", run_id="r1", task_id="claim_letters", map_index=-1, try_number=1)


def department_insert(conn, letter_id: str, department: str, letter_type: str) -> None:
    conn.execute(
        f"INSERT INTO letters ({CONTRACT}) VALUES (%s, %s, %s, 'citizen', '85073003328', 'Jan Peeters', "
        "'Bruul 1', '2800', 'Mechelen', 'nl') ON CONFLICT (letter_id) DO NOTHING",
        (letter_id, department, letter_type),
    )


def events(db, letter_id: str) -> list[tuple[str, dict, str | None]]:
    rows = db.execute(
        "SELECT event, details, task_id FROM letter_events WHERE letter_id = %s ORDER BY chain_seq",
        (letter_id,),
    ).fetchall()
    db.commit()
    return rows


# --------------------------------------------------------------------------- department logins


def test_db_migrate_creates_one_role_per_department_under_the_department_role(db):
    rows = db.execute(
        "SELECT d.department, r.rolname, r.rolcanlogin, pg_has_role(r.oid, 'dijlepost_department', 'MEMBER') "
        "FROM departments d LEFT JOIN pg_roles r ON r.rolname = 'dijlepost_dept_' || d.department "
        "ORDER BY 1"
    ).fetchall()
    assert rows == [(d, department_role(d), False, True) for d in ("economy_housing", "finance", "gas")]


def test_a_department_login_writes_and_sees_only_its_own_department(db, pg_url):
    add_letters(db, 1, department="gas", prefix="GAS")  # a gas letter already in the outbox
    with psycopg.connect(department_url(pg_url, "finance"), autocommit=True) as finance:
        department_insert(finance, "FIN-1", "finance", "invoice")
        # The attack: the finance system writes a GAS decision.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="letters_own_department"):
            department_insert(finance, "GAS-FORGED", "gas", "gas_decision")
        # ... and lists the letter ids of every department.
        assert finance.execute("SELECT letter_id FROM letters ORDER BY 1").fetchall() == [("FIN-1",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            finance.execute("SELECT recipient_id FROM letters")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            finance.execute("UPDATE letters SET department = 'gas' WHERE letter_id = 'FIN-1'")
    with psycopg.connect(department_url(pg_url, "gas"), autocommit=True) as gas:
        department_insert(gas, "GAS-2", "gas", "gas_decision")
        assert gas.execute("SELECT letter_id FROM letters ORDER BY 1").fetchall() == [
            ("GAS-00000",),
            ("GAS-2",),
        ]
    stored = db.execute("SELECT letter_id, department, status FROM letters ORDER BY 1").fetchall()
    assert stored == [
        ("FIN-1", "finance", "pending"),
        ("GAS-00000", "gas", "pending"),
        ("GAS-2", "gas", "pending"),
    ]


def test_a_login_with_the_bare_department_role_writes_for_no_department(db, pg_url):
    from include.dijlepost.db.logins import ensure_login
    from tests.support.database import SERVER, login_url

    with psycopg.connect(f"{SERVER}/postgres") as admin:
        ensure_login(admin, "dijlepost_test_unbound_system", "dijlepost_department")
    with psycopg.connect(login_url(pg_url, "dijlepost_test_unbound_system"), autocommit=True) as unbound:
        for department, letter_type in (("finance", "invoice"), ("gas", "gas_decision")):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="letters_own_department"):
                department_insert(unbound, f"X-{department}", department, letter_type)


# --------------------------------------------------------------------------- the state machine


def pipeline(pipeline_url) -> psycopg.Connection:
    conn = psycopg.connect(pipeline_url)
    login, superuser, bypassrls = conn.execute(
        "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = session_user"
    ).fetchone()
    assert not superuser and not bypassrls, login  # the attacker is the pipeline, not a superuser
    conn.commit()
    return conn


def finish_on_paper(db, letter_id: str) -> None:
    """pending -> processing -> handed_to_print through the outbox, as a run does."""
    outbox.claim(
        db,
        chunk_work("r1", ctx=CTX),
        batch_size=10,
        chunk_size=10,
        lease=outbox.timedelta(hours=3),
    )
    db.execute("UPDATE letters SET print_batch_id = 'finance-non_prior-0123456789abcdef'")
    with db.cursor() as cur:
        outbox.mark_handed_to_print(cur, CTX, "finance-non_prior-0123456789abcdef", [letter_id], "ab" * 32)
    db.commit()


@pytest.mark.parametrize(
    ("statement", "column", "move"),
    [
        # a letter handed to print, "delivered" to the eBox, silently
        ("UPDATE letters SET status = 'delivered_ebox'", "status", "from handed_to_print to delivered_ebox"),
        (
            "UPDATE letters SET status = 'pending', final_at = NULL",
            "status",
            "from handed_to_print to pending",
        ),
        ("UPDATE letters SET ebox_state = 'in_flight'", "ebox_state", "from NULL to in_flight"),
        ("UPDATE letters SET print_status = 'returned'", None, None),  # allowed move, then its CHECK
    ],
)
def test_the_pipeline_login_cannot_move_a_letter_the_table_does_not_allow(
    db, pipeline_url, statement, column, move
):
    [lid] = add_letters(db, 1)
    finish_on_paper(db, lid)
    before = len(events(db, lid))
    with pipeline(pipeline_url) as conn:
        if column is None:
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(statement)
        else:
            with pytest.raises(
                psycopg.errors.IntegrityError, match=f"letters.{column} may not move {move}"
            ) as info:
                conn.execute(statement)
            assert info.value.diag.constraint_name == "letters_state_machine"
        conn.rollback()
    assert db.execute("SELECT status FROM letters").fetchone()[0] == "handed_to_print"
    assert len(events(db, lid)) == before


def test_a_move_by_hand_that_the_table_allows_is_audited_by_the_database(db, pipeline_url):
    [lid] = add_letters(db, 1)
    finish_on_paper(db, lid)
    with pipeline(pipeline_url) as conn:
        conn.execute(
            "UPDATE letters SET print_status = 'posted', print_acknowledged_at = now() WHERE letter_id = %s",
            (lid,),
        )
        conn.commit()
    name, details, task = events(db, lid)[-1]
    assert name == "printed_and_posted" and task == "by hand"
    assert details["by"] == "dijlepost_test_pipeline" and details["print_status"] == [None, "posted"]
    assert verify(db).ok


def test_every_move_of_a_run_has_its_event_from_the_database(db, pipeline_url):
    lids = add_letters(db, 3)
    with pipeline(pipeline_url) as conn:
        outbox.claim(
            conn,
            chunk_work("r1", ctx=CTX),
            batch_size=10,
            chunk_size=10,
            lease=outbox.timedelta(hours=3),
        )
        with conn.cursor() as cur:
            assert outbox.mark_ebox_in_flight(cur, "finance_run", [lids[0]], CTX) == set()  # not its claim
            assert outbox.mark_ebox_in_flight(cur, "r1", [lids[0]], CTX) == {lids[0]}
            outbox.mark_delivered_ebox(cur, CTX, "r1", [(lids[0], "m-1", "published", None)])
            outbox.mark_ebox_in_flight(cur, "r1", [lids[1]], CTX)
            outbox.mark_ebox_rejected(cur, CTX, lids[1], "r1", "ebox rejected 400: bad")
            outbox.release_for_retry(cur, CTX, lids[2], "r1", "ebox: 503")
        conn.commit()
    assert [(e, d) for e, d, _ in events(db, lids[0])] == [
        ("claimed", {"taken_over": False}),
        ("ebox_publication_started", {}),
        ("delivered_ebox", {"answer": "published", "message_id": "m-1", "expires_at": None}),
    ]
    assert [e for e, _, _ in events(db, lids[1])] == ["claimed", "ebox_publication_started", "quarantined"]
    assert db.execute(
        "SELECT ebox_state, status FROM letters WHERE letter_id = %s", (lids[1],)
    ).fetchone() == (
        "rejected",
        "quarantined",
    )
    assert [e for e, _, _ in events(db, lids[2])] == ["claimed", "released_for_retry"]
    assert {r[0] for r in db.execute("SELECT task_id FROM letter_events").fetchall()} == {"claim_letters"}
    assert db.execute("SELECT count(*) FROM letters WHERE audit_event IS NOT NULL").fetchone()[0] == 0
    assert verify(db).ok


def test_the_pipeline_login_cannot_create_a_letter_in_a_later_state_or_delete_one(db, pipeline_url):
    [lid] = add_letters(db, 1)
    with pipeline(pipeline_url) as conn:
        with pytest.raises(psycopg.errors.IntegrityError, match="a new letter starts pending"):
            conn.execute(
                f"INSERT INTO letters ({CONTRACT}, status, final_at) VALUES ('FIN-X', 'finance', 'invoice', "
                "'citizen', '85073003328', 'Jan', 'Bruul 1', '2800', 'Mechelen', 'nl', 'delivered_ebox', now())"
            )
        conn.rollback()
        for statement in ("DELETE FROM letters", "TRUNCATE letters"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
    assert db.execute("SELECT letter_id FROM letters").fetchall() == [(lid,)]


def test_a_print_batch_moves_only_as_the_table_allows(db, pipeline_url):
    with pipeline(pipeline_url) as conn:
        conn.execute(
            "INSERT INTO print_batches (batch_id, department, postage_class, letter_count) "
            "VALUES ('finance-non_prior-0123456789abcdef', 'finance', 'non_prior', 1)"
        )
        conn.execute("UPDATE print_batches SET status = 'uploaded', uploaded_at = now()")
        conn.commit()
        with pytest.raises(
            psycopg.errors.IntegrityError, match="print_batches.status may not move from uploaded"
        ):
            conn.execute("UPDATE print_batches SET status = 'assigned'")  # to be sent a second time
        conn.rollback()
        with pytest.raises(psycopg.errors.IntegrityError, match="a new print batch starts assigned"):
            conn.execute(
                "INSERT INTO print_batches (batch_id, department, postage_class, letter_count, status) "
                "VALUES ('finance-prior-0123456789abcdef', 'finance', 'prior', 1, 'uploaded')"
            )
        conn.rollback()


def test_the_pipeline_login_cannot_rewrite_the_allowed_moves(db, pipeline_url):
    with pipeline(pipeline_url) as conn:
        for statement in (
            "INSERT INTO state_transitions VALUES ('letters', 'status', 'handed_to_print', 'delivered_ebox', 'x', 'x')",
            "DELETE FROM state_transitions",
            "UPDATE state_initial SET state = 'delivered_ebox'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()


# --------------------------------------------------------------------------- audit events


def test_audit_events_are_written_only_through_the_database(db, pipeline_url):
    [lid] = add_letters(db, 1)
    with pipeline(pipeline_url) as conn:
        # The attack: an event of a move that never happened, with a made-up hash.
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege, match="permission denied for table letter_events"
        ):
            conn.execute(
                "INSERT INTO letter_events (letter_id, event, details, chain_seq, prev_hash, hash) "
                "VALUES (%s, 'delivered_ebox', '{}', 1, %s, %s)",
                (lid, bytes(32), bytes(32)),
            )
        conn.rollback()
        # ... through the function, without a hash: a move's event is the database's to write.
        for event in sorted(states.MOVE_EVENTS):
            with pytest.raises(
                psycopg.errors.InsufficientPrivilege, match=f"event {event} is written by the database"
            ):
                conn.execute(
                    "SELECT record_letter_event(%s, %s, '{}', NULL, NULL, NULL, NULL, NULL)", (lid, event)
                )
            conn.rollback()
        with conn.cursor() as cur:  # what is not a move goes in, chained by the database
            outbox.record_events(cur, CTX, [(lid, "decided", {"channel": "paper"})])
        conn.commit()
    assert [e for e, _, _ in events(db, lid)] == ["decided"]
    # Not even the table's owner may bring its own link.
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="brings its own is refused"):
        db.execute(
            "INSERT INTO letter_events (letter_id, event, chain_seq, prev_hash, hash) VALUES (%s, 'x', 2, %s, %s)",
            (lid, bytes(32), bytes(32)),
        )
    db.rollback()
    assert verify(db).ok and verify(db).checked == 1


# --------------------------------------------------------------------------- one source of the states


def test_the_databases_allowed_moves_are_the_python_tables(db):
    rows = db.execute(
        "SELECT table_name, column_name, from_state, to_state, function, event, while_status "
        "FROM state_transitions"
    ).fetchall()
    assert sorted(rows, key=repr) == sorted(states.transition_rows(), key=repr)
    initial = {
        (t, c): s
        for t, c, s in db.execute("SELECT table_name, column_name, state FROM state_initial").fetchall()
    }
    assert initial == {k: (None if v is None else str(v)) for k, v in states.INITIAL_STATES.items()}


@pytest.mark.parametrize(
    ("constraint", "enum"),
    [
        ("letters_status_check", states.Status),
        ("letters_ebox_state_check", states.EboxState),
        ("letters_print_status_check", states.PrintStatus),
        ("print_batches_status_check", states.BatchStatus),
    ],
)
def test_each_state_columns_check_lists_exactly_the_enums_values(db, constraint, enum):
    definition = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s", (constraint,)
    ).fetchone()[0]
    assert set(re.findall(r"'([a-z_]+)'::text", definition)) == {m.value for m in enum}


def test_every_move_names_the_function_that_makes_it():
    import inspect

    from include.dijlepost.printhouse import handoff

    for (table, column), moves in states.TRANSITIONS_BY_COLUMN.items():
        for (source, target), move in moves.items():
            module = handoff if table == "print_batches" else outbox
            function = getattr(module, move.function, None) or getattr(module, f"_{move.function}", None)
            assert callable(function), (table, column, source, target, move.function)
            if table == "letters" and column == "status":  # and it checks the state it starts from
                assert f"Status.{source.name}.sql" in inspect.getsource(function)


# --------------------------------------------------------------------------- no privileged pipeline


def test_the_pipeline_refuses_a_superuser_login_naming_the_setting(db, pipeline_url, monkeypatch):
    monkeypatch.delenv(OVERRIDE, raising=False)
    with pytest.raises(
        ConfigurationError,
        match="Airflow Connection dijlepost_db: the database login 'postgres' is a superuser",
    ):
        refuse_privileged_login(db, "Airflow Connection dijlepost_db")
    with pipeline(pipeline_url) as conn:
        refuse_privileged_login(conn, "Airflow Connection dijlepost_db")  # the pipeline's own login: fine
    monkeypatch.setenv(OVERRIDE, "1")  # a DBA's one-off run
    refuse_privileged_login(db, "Airflow Connection dijlepost_db")


def test_letters_import_refuses_a_superuser_login(pg_url, tmp_path, capsys, monkeypatch):
    from include.dijlepost.cli import main

    monkeypatch.delenv(OVERRIDE, raising=False)
    path = tmp_path / "letters.jsonl"
    path.write_text(json.dumps({"letter_id": "X-1"}) + "\n")
    assert main(["--database-url", pg_url, "letters", "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert "DIJLEPOST_DATABASE_URL (or --database-url): the database login 'postgres' is a superuser" in err
