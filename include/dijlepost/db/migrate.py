"""Versioned schema migrations: `dijlepost db migrate` applies every file in `migrations/` once.

After the files, `sync_departments` makes the `departments` table and the rollout phases hold every
wave of `waves.py`: a new department starts in phase `off` until an administrator changes it.
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
            sync_departments(conn)
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
