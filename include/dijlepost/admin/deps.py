"""The admin app's dependencies: who is signed in, what the app was built with, the database
connection of a request, and the administrator check every change goes through.

- `current_user` is the seam for identity: it stands for the `identify` dependency `create_app` is
  given (Airflow's JWT login and auth manager in the plugin, a header in the tests), bound with
  `app.dependency_overrides`, so each route declares the user it needs without knowing where it
  comes from.
- `admin_settings` is what `create_app` was given (`AdminSettings`, kept on `app.state`).
- `db` is a new psycopg 3 connection for the request, rolled back and closed when it is answered: a
  change commits inside `rollout.py`, nothing else stays.
- `administrator` (the API) refuses a change with 403 unless it shows a same-origin proof
  (`origin.same_origin_proof`) and the user is an administrator; the page's forms answer the same
  refusals as a page (`views.form_change`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Annotated, Any, cast

import psycopg
from fastapi import Depends, HTTPException, Request

from include.dijlepost.admin.origin import same_origin_proof
from include.dijlepost.tariffs import Tariffs
from include.dijlepost.waves import DEPARTMENTS

Connection = psycopg.Connection[Any]


@dataclass(frozen=True)
class Identity:
    name: str
    is_admin: bool


@dataclass(frozen=True)
class AdminSettings:
    """What the app is built with (see `create_app`)."""

    connect: Callable[[], Connection]
    tariffs: Callable[[], Tariffs]
    pseudonym_key: Callable[[], bytes] | None = None
    login_url: Callable[[Request], str] | None = None
    ui_url: str = ""

    def key(self) -> bytes:
        """The pseudonym key: as given, or from the settings, their secrets registered with Airflow's masker."""
        if self.pseudonym_key is None:
            from include.dijlepost.airflow_support import settings

            return settings().pseudonym_key
        return self.pseudonym_key()


class NotAdmin(HTTPException):
    def __init__(self, who: Identity):
        super().__init__(403, f"only administrators may change the rollout; {who.name} has read-only access")


def current_user() -> Identity:
    """The signed-in user; `create_app` binds this to the `identify` dependency it is given."""
    raise NotImplementedError("create_app binds current_user to its identify dependency")


def admin_settings(request: Request) -> AdminSettings:
    return cast("AdminSettings", request.app.state.admin_settings)


def db(settings: Annotated[AdminSettings, Depends(admin_settings)]) -> Iterator[Connection]:
    with closing(settings.connect()) as conn:
        try:
            yield conn
        finally:
            conn.rollback()


def administrator(request: Request, who: Annotated[Identity, Depends(current_user)]) -> Identity:
    """The user, if they may change something here (same-origin proof first, then the role); else 403."""
    same_origin_proof(request)
    if not who.is_admin:
        raise NotAdmin(who)
    return who


def known_department(department: str) -> str:
    """The path's department, or 404 (called in the route, after the request's own checks)."""
    if department not in DEPARTMENTS:
        raise HTTPException(
            404, f"unknown department {department!r}; expected one of {', '.join(DEPARTMENTS)}"
        )
    return department


CurrentUser = Annotated[Identity, Depends(current_user)]
Administrator = Annotated[Identity, Depends(administrator)]
Settings = Annotated[AdminSettings, Depends(admin_settings)]
Conn = Annotated[Connection, Depends(db)]
