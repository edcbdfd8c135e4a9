"""Versioned schema migrations (`include.dijlepost.db.migrate`) on real, fresh PostgreSQL databases."""

from __future__ import annotations

import hashlib
import threading
import uuid

import psycopg
import pytest

from include.dijlepost.db.migrate import _LOCK_ID, available_migrations, migrate
from tests.support.database import SERVER

pytestmark = pytest.mark.integration

VERSIONS = [v for v, _ in available_migrations()]


@pytest.fixture
def fresh_url():
    name = f"dijlepost_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{SERVER}/{name}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def recorded(conn) -> dict[str, str]:
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    conn.commit()
    return dict(rows)


def advisory_locks(conn) -> int:
    n = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s", (_LOCK_ID,)
    ).fetchone()[0]
    conn.commit()
    return n


def test_the_migrations_are_ordered_and_named():
    assert sorted(VERSIONS) == VERSIONS and VERSIONS[:2] == ["0001_outbox", "0002_ebox_state"]


def test_first_migrate_applies_everything_and_records_checksums(fresh_url):
    with psycopg.connect(fresh_url) as conn:
        assert migrate(conn) == VERSIONS
        assert recorded(conn) == {
            v: hashlib.sha256(sql.encode()).hexdigest() for v, sql in available_migrations()
        }
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'letters'"
            ).fetchall()
        }
        assert {"letter_id", "status", "claim_run_id", "ebox_state", "final_at"} <= columns
        phases = dict(conn.execute("SELECT department, phase FROM rollout_phases").fetchall())
        assert phases == {"finance": "live", "gas": "paper", "economy_housing": "off"}
        assert advisory_locks(conn) == 0


def test_second_migrate_applies_nothing_and_changes_nothing(pg_url):
    with psycopg.connect(pg_url) as conn:
        before = recorded(conn)
        assert migrate(conn) == []
        assert migrate(conn) == []
        assert recorded(conn) == before
        assert set(before) == set(VERSIONS)
        assert conn.info.transaction_status.name == "IDLE"


def test_an_edited_applied_migration_is_detected(fresh_url):
    with psycopg.connect(fresh_url) as conn:
        migrate(conn)
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = '0001_outbox'")
        conn.commit()
        with pytest.raises(RuntimeError, match="0001_outbox was changed after it was applied"):
            migrate(conn)
        assert conn.info.transaction_status.name == "IDLE"
        assert advisory_locks(conn) == 0  # the lock is released after the refusal
    # so another runner is refused, not blocked
    with (
        psycopg.connect(fresh_url) as other,
        pytest.raises(RuntimeError, match="changed after it was applied"),
    ):
        migrate(other)


def test_a_migration_applied_in_an_earlier_wording_takes_the_current_checksum(fresh_url):
    import hashlib

    from include.dijlepost.db.migrate import REWORDED

    version, earlier = next(iter(REWORDED.items()))
    with psycopg.connect(fresh_url) as conn:
        migrate(conn)
        current = recorded(conn)[version]
        assert current not in earlier  # the file holds the current wording
        conn.execute(
            "UPDATE schema_migrations SET checksum = %s WHERE version = %s", (next(iter(earlier)), version)
        )
        conn.commit()
        assert migrate(conn) == []  # nothing re-applied
        assert recorded(conn)[version] == current
        assert current == hashlib.sha256(dict(available_migrations())[version].encode()).hexdigest()


def test_a_partial_database_gets_only_the_missing_migrations(fresh_url):
    with psycopg.connect(fresh_url) as conn:
        migrate(conn)
        conn.execute("DELETE FROM schema_migrations WHERE version = '0002_ebox_state'")
        conn.execute(
            "ALTER TABLE letters DROP COLUMN ebox_state CASCADE"
        )  # and the trigger (0012) reading it
        conn.execute("DROP INDEX letters_print_batch_idx")
        conn.execute("DROP INDEX letter_events_run_idx")
        conn.commit()
        assert migrate(conn) == ["0002_ebox_state"]
        assert set(recorded(conn)) == set(VERSIONS)


def test_concurrent_migrate_on_a_fresh_database_applies_once(fresh_url):
    results: dict[int, list[str]] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def runner(i: int) -> None:
        try:
            with psycopg.connect(fresh_url) as conn:
                start.wait()
                results[i] = migrate(conn)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures
    assert sorted(map(tuple, results.values())) == [(), (), (), tuple(VERSIONS)]
    with psycopg.connect(fresh_url) as conn:
        assert set(recorded(conn)) == set(VERSIONS)
        assert conn.execute("SELECT count(*) FROM rollout_phases").fetchone()[0] == 3
        assert advisory_locks(conn) == 0


def test_a_failing_migration_is_rolled_back_and_not_recorded(fresh_url, monkeypatch):
    import include.dijlepost.db.migrate as m

    good = available_migrations()
    monkeypatch.setattr(
        m,
        "available_migrations",
        lambda: [*good, ("9999_broken", "CREATE TABLE half_done (x int); SELECT 1/0;")],
    )
    with psycopg.connect(fresh_url) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            migrate(conn)
        assert set(recorded(conn)) == set(VERSIONS)  # the good ones were committed one by one
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        conn.commit()
        assert advisory_locks(conn) == 0


def test_a_new_wave_needs_no_migration_only_its_entry_in_waves(fresh_url, monkeypatch):
    """Departments come from waves.py: `migrate` adds a new wave's department in phase off (nothing
    is sent until an administrator chooses), and its letters are accepted by the outbox."""
    from dataclasses import replace

    from include.dijlepost import waves

    with psycopg.connect(fresh_url) as conn:
        migrate(conn)
        culture = replace(
            waves.WAVES["economy_housing"], department="culture", title="Wave 4: culture", wave_number=4
        )
        monkeypatch.setitem(waves.WAVES, "culture", culture)
        assert migrate(conn) == []  # no file to apply, yet the department is there
        assert conn.execute("SELECT phase FROM rollout_phases WHERE department = 'culture'").fetchone() == (
            "off",
        )
        assert conn.execute(
            "SELECT to_phase FROM rollout_history WHERE department = 'culture'"
        ).fetchall() == [("off",)]
        conn.execute(
            "INSERT INTO letters (letter_id, department, letter_type, recipient_kind, recipient_id, "
            "recipient_name, street, postal_code, city, language) VALUES ('CUL-1', 'culture', "
            "'premium_decision', 'citizen', '85073003328', 'A', 'B 1', '2800', 'Mechelen', 'nl')"
        )
        conn.commit()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO letters (letter_id, department, letter_type, recipient_kind, recipient_id, "
                "recipient_name, street, postal_code, city, language) VALUES ('X-1', 'no_such', "
                "'invoice', 'citizen', '85073003328', 'A', 'B 1', '2800', 'Mechelen', 'nl')"
            )
        conn.rollback()
        # Running it again changes nothing: the phase an administrator sets is kept.
        conn.execute("UPDATE rollout_phases SET phase = 'live' WHERE department = 'culture'")
        conn.commit()
        migrate(conn)
        assert conn.execute("SELECT phase FROM rollout_phases WHERE department = 'culture'").fetchone() == (
            "live",
        )
