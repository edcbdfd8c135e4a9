"""Logins for the roles of the migrations, and the check that the pipeline's login is not privileged.

    ensure_login(conn, name, role)   a LOGIN role, NOSUPERUSER NOBYPASSRLS, member of `role` (and of no
                                     other role this function grants); idempotent and safe when another
                                     session creates the same login at the same moment (roles belong
                                     to the server, not to one database)
    privileges(conn)                 whether the connection's login is a superuser or bypasses RLS
    refuse_privileged_login(conn, setting)   ConfigurationError naming `setting` when it is, unless
                                     DIJLEPOST_ALLOW_PRIVILEGED_LOGIN=1 (a DBA's one-off run only)

A superuser or BYPASSRLS login would defeat what migrations 0009 and 0012 set up: it skips row-level
security (so a refused row is quoted whole in the error, into task logs) and the state machine's
triggers. `make demo`, the tests and the documented deployment create and use such logins instead.
"""

from __future__ import annotations

import os

from psycopg import sql

from include.dijlepost.settings import ConfigurationError

OVERRIDE = "DIJLEPOST_ALLOW_PRIVILEGED_LOGIN"


def ensure_login(conn, name: str, role: str, password: str | None = None) -> None:
    """Create `name` as a LOGIN member of `role` if missing, make sure it holds no superuser or
    BYPASSRLS attribute, and set its password when one is given. Commits."""
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "DO $$ BEGIN "
                "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN "
                "CREATE ROLE {role_name} LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE {member_of}; END IF; "
                "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            ).format(name=sql.Literal(name), role_name=sql.Identifier(name), member_of=sql.Identifier(role))
        )
        conn.commit()
        cur.execute(
            "SELECT rolsuper OR rolbypassrls, pg_has_role(%s, %s, 'MEMBER') FROM pg_roles WHERE rolname = %s",
            (name, role, name),
        )
        privileged, member = cur.fetchone()
        if privileged:
            cur.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER NOBYPASSRLS").format(sql.Identifier(name)))
        if not member:
            cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(name)))
        if password is not None:
            cur.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
            )
    conn.commit()


def privileges(conn) -> tuple[str, bool, bool]:
    """(login, is superuser, bypasses RLS) of the connection's session user."""
    with conn.cursor() as cur:
        cur.execute("SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = session_user")
        row = cur.fetchone()
    conn.commit()
    return row


def refuse_privileged_login(conn, setting: str) -> None:
    """Raise ConfigurationError naming `setting` (where the login comes from) when the connection's
    login is a superuser or has BYPASSRLS, unless DIJLEPOST_ALLOW_PRIVILEGED_LOGIN is `1`."""
    login, superuser, bypassrls = privileges(conn)
    if not (superuser or bypassrls):
        return
    if os.environ.get(OVERRIDE) == "1":
        return
    what = "a superuser" if superuser else "a role with BYPASSRLS"
    raise ConfigurationError(
        f"{setting}: the database login {login!r} is {what}, which skips row-level security and the "
        "letter state machine; use a login that holds only dijlepost_pipeline (docs/audit.md). "
        f"For a DBA's one-off run only: {OVERRIDE}=1"
    )
