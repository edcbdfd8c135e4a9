"""Database connections outside Airflow (CLI, demo, tests), and database errors told without their data.

Inside Airflow use `PostgresHook`. A PostgreSQL error can quote the row it refused (`DETAIL: Failing row
contains (...)`, `Key (...)=(...)`, `CONTEXT: JSON data, line 1: ...`): `describe_db_error` says what went
wrong by SQLSTATE, constraint, table and column only, so that it can go into a message or a log. The
`letters` table has row-level security (migration 0009), for which PostgreSQL leaves the row out of its
errors for every role but superusers; docs/letters-import.md says what the DBA sets for the server log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import psycopg
from psycopg.rows import dict_row

from include.dijlepost.settings import ConfigurationError

# Constraint of `letters` -> the contract field it checks (migrations 0001, 0008, 0009).
CONSTRAINT_FIELDS = {
    "letters_letter_id_check": "letter_id",
    "letters_letter_id_key": "letter_id",
    "letters_department_check": "department",
    "letters_department_fkey": "department",
    "letters_recipient_kind_check": "recipient_kind",
    "letters_language_check": "language",
    "letters_payload_size": "payload",
    **{
        f"letters_{name}_length": name
        for name in (
            "letter_type",
            "recipient_id",
            "recipient_name",
            "street",
            "postal_code",
            "city",
            "country",
        )
    },
}


def connect(url: str | None):
    if not url:
        raise ConfigurationError("DIJLEPOST_DATABASE_URL is not set (e.g. postgresql://user@host:5432/db)")
    return psycopg.connect(url)


def read_rows(conn, sql: str, params: Sequence | Mapping | None = None) -> list[dict]:
    """The rows of one query as dicts; the read's transaction is ended, so no snapshot or lock is held
    while the caller works with them."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.commit()
    return rows


def is_row_error(exc: BaseException) -> bool:
    """True for an error caused by the values of a row (SQLSTATE classes 22 data exception and 23
    integrity constraint violation), which a caller may refuse by row and go on; False for the rest
    (connection lost, permission denied, ...), which stop the work."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return sqlstate[:2] in ("22", "23")


def describe_db_error(exc: BaseException) -> str:
    """`<field>: refused by the database (...)` for a row error of `letters`, else the error's kind,
    SQLSTATE and constraint/table/column: never the server's message or detail, which may quote values."""
    diag = getattr(exc, "diag", None)
    sqlstate = getattr(exc, "sqlstate", None) or "?"
    constraint = getattr(diag, "constraint_name", None)
    table = getattr(diag, "table_name", None)
    column = getattr(diag, "column_name", None)
    name = type(exc).__name__
    where = ", ".join(
        part
        for part in (
            f"constraint {constraint}" if constraint else "",
            f"table {table}" if table else "",
            f"column {column}" if column else "",
            f"SQLSTATE {sqlstate}",
        )
        if part
    )
    field = CONSTRAINT_FIELDS.get(constraint or "") or (column if table == "letters" else None)
    if field:
        return f"{field}: refused by the database ({name}: {where})"
    return f"refused by the database ({name}: {where})"
