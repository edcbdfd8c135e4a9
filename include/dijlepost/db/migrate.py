"""Versioned schema migrations: `dijlepost db migrate` applies every file in `migrations/` once.

After the files, `sync_departments` makes the `departments` table and the rollout phases hold every
wave of `waves.py` (a new department starts in phase `off` until an administrator changes it) and
gives every department its role `dijlepost_dept_<department>` (`sync_department_roles`), and
`sync_state_transitions` copies the allowed state moves of `include/dijlepost/states.py` into the
table the database's state-machine triggers read (migration 0012).
Idempotent and safe to run concurrently: a session-level advisory lock (released in `finally`) serialises
runners and each file is applied in the same transaction that records it in `schema_migrations`.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_ID = 0x64696A6C  # "dijl"
# Applied migrations whose comments were reworded afterwards, the SQL unchanged: version -> the checksums
# of the earlier wordings. A database that recorded one of them takes the current wording's checksum;
# any other difference is still refused.
REWORDED = {
    "0003_ebox_read_status": {"4e82f775fb7179574fbe537a9865d5ab7f454faa82e405f21da335d2ec54fc1e"},
    "0004_print_acknowledgements": {"583dfdbf9bdadaf23ec9e52f05a7ee029ce342d090ba33e1e3e60ca96d521692"},
    "0005_audit_chain": {"b5f2014e69b19abb9e38a7a12d8ba440103e1d8f88c8ad4838deed0953adad4f"},
    "0006_rollout_admin": {"9d19a922f02203de43d5e024bff03d7f92de8bbf9310d9422e6e5ffa2092c62a"},
}


def available_migrations() -> list[tuple[str, str]]:
    return [(p.stem, p.read_text()) for p in sorted(MIGRATIONS_DIR.glob("*.sql"))]


def migrate(conn) -> list[str]:
    """Apply pending migrations on a DB-API connection; return the versions applied now."""
    applied_now: list[str] = []
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
                "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.commit()
            cur.execute("SELECT version, checksum FROM schema_migrations")
            done = dict(cur.fetchall())
            for version, sql in available_migrations():
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if version in done:
                    if done[version] in REWORDED.get(version, ()):
                        cur.execute(
                            "UPDATE schema_migrations SET checksum = %s WHERE version = %s",
                            (checksum, version),
                        )
                        conn.commit()
                        log.info("event=migration_rewording_recorded version=%s", version)
                    elif done[version] != checksum:
                        raise RuntimeError(
                            f"migration {version} was changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                cur.execute(sql)
                cur.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)", (version, checksum)
                )
                conn.commit()
                applied_now.append(version)
                log.info("event=migration_applied version=%s", version)
            sync_state_transitions(conn)
            sync_departments(conn)
            sync_department_roles(conn)
        except Exception:
            conn.rollback()
            raise
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
            conn.commit()
    return applied_now


def sync_departments(conn) -> list[str]:
    """Insert the departments of `waves.WAVES` that the database does not know yet, each with rollout
    phase `off` (nothing sent until an administrator chooses a phase); return those added. Known
    departments keep their phase; their title and wave number follow `waves.py`."""
    from include.dijlepost.waves import WAVES

    added: list[str] = []
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('departments') IS NOT NULL")
        if not cur.fetchone()[0]:  # a database migrated only part of the way (tests of old versions)
            return added
        for wave in WAVES.values():
            cur.execute(
                "INSERT INTO departments (department, wave_number, title) VALUES (%s, %s, %s) "
                "ON CONFLICT (department) DO UPDATE SET wave_number = EXCLUDED.wave_number, title = EXCLUDED.title "
                "RETURNING (xmax = 0)",
                (wave.department, wave.wave_number, wave.title),
            )
            if cur.fetchone()[0]:
                added.append(wave.department)
            cur.execute(
                "INSERT INTO rollout_phases (department, phase, changed_by, reason) VALUES (%s, 'off', 'migration', "
                "'new department: off until an administrator chooses a phase') ON CONFLICT (department) DO NOTHING "
                "RETURNING department",
                (wave.department,),
            )
            if cur.fetchone():
                cur.execute(
                    "INSERT INTO rollout_history (department, from_phase, to_phase, changed_by, reason) "
                    "SELECT department, NULL, phase, changed_by, reason FROM rollout_phases "
                    "WHERE department = %s",
                    (wave.department,),
                )
    conn.commit()
    for department in added:
        log.info("event=department_added department=%s", department)
    return added


def sync_state_transitions(conn) -> int:
    """Make `state_transitions` and `state_initial` hold exactly the moves and first states of
    `states.py`, in one transaction; return the number of moves. A database migrated only part of the
    way (no such table) is left alone."""
    from include.dijlepost.states import INITIAL_STATES, transition_rows

    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('state_transitions') IS NOT NULL")
        if not cur.fetchone()[0]:
            return 0
        rows = transition_rows()
        cur.execute("DELETE FROM state_transitions")
        cur.executemany(
            "INSERT INTO state_transitions (table_name, column_name, from_state, to_state, function, event, "
            "while_status) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
        cur.execute("DELETE FROM state_initial")
        cur.executemany(
            "INSERT INTO state_initial (table_name, column_name, state) VALUES (%s, %s, %s)",
            [(t, c, None if v is None else str(v)) for (t, c), v in INITIAL_STATES.items()],
        )
    conn.commit()
    return len(rows)


DEPARTMENT_ROLE_PREFIX = "dijlepost_dept_"


def department_role(department: str) -> str:
    """The role a department system's login holds to write that department's letters."""
    return DEPARTMENT_ROLE_PREFIX + department


def sync_department_roles(conn) -> list[str]:
    """Create the role `dijlepost_dept_<department>` (NOLOGIN, member of `dijlepost_department`) of
    every department that lacks one; return those created. Roles belong to the server, so another
    database's migration may create the same role at the same moment: that is not an error. Without
    the privilege to create roles a warning names the statement for a DBA (docs/letters-import.md)."""
    from psycopg import sql

    created: list[str] = []
    with conn.cursor() as cur:
        cur.execute(
            "SELECT to_regclass('departments') IS NOT NULL "
            "AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dijlepost_department')"
        )
        if not cur.fetchone()[0]:
            return created
        cur.execute(
            "SELECT department FROM departments d WHERE NOT EXISTS "
            "(SELECT 1 FROM pg_roles WHERE rolname = %s || d.department) ORDER BY department",
            (DEPARTMENT_ROLE_PREFIX,),
        )
        missing = [r[0] for r in cur.fetchall()]
    conn.commit()
    for department in missing:
        role = department_role(department)
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "DO $$ BEGIN "
                    "CREATE ROLE {role} NOLOGIN IN ROLE dijlepost_department; "
                    "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; "
                    "WHEN insufficient_privilege THEN RAISE WARNING "
                    "'cannot create role %, ask a DBA: CREATE ROLE % NOLOGIN IN ROLE dijlepost_department', "
                    "{name}, {name}; END $$"
                ).format(role=sql.Identifier(role), name=sql.Literal(role))
            )
            cur.execute("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)", (role,))
            if cur.fetchone()[0]:
                created.append(role)
        conn.commit()
    for role in created:
        log.info("event=department_role_created role=%s", role)
    return created
