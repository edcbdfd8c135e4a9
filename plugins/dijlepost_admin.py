"""Airflow plugin: the dijlepost rollout administration page and REST API inside the Airflow 3 UI.

- `fastapi_apps`: the app of `include/dijlepost/admin/app.py`, mounted by the Airflow API server at
  /dijlepost-rollout (page at /dijlepost-rollout/, JSON API at /dijlepost-rollout/api/v1/...).
- `external_views`: a navigation entry "Rollout" (Admin menu) that shows the page inside the UI at
  /plugin/dijlepost-rollout.

Who is signed in comes from Airflow itself: the JWT the API server issued at login (the `_token`
cookie of the UI, or an `Authorization: Bearer` header for API clients), resolved by Airflow's
`get_user` dependency; what they may do comes from the configured auth manager. Reading needs access
to the custom view "Dijlepost Rollout"; changing needs the administrator role (SimpleAuthManager: role
ADMIN; other auth managers: `is_authorized_custom_view(method="PUT", resource_name="Dijlepost Rollout")`).
The dijlepost database is the `dijlepost_db` Connection (PostgresHook).

The app is built on the first request, so loading plugins in the scheduler or a worker imports nothing
of FastAPI or the admin code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from airflow.plugins_manager import AirflowPlugin

if TYPE_CHECKING:
    import psycopg
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

URL_PREFIX = "/dijlepost-rollout"
URL_ROUTE = "dijlepost-rollout"
RESOURCE_NAME = "Dijlepost Rollout"
DB_CONN_ID = "dijlepost_db"


def _connect() -> psycopg.Connection[Any]:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    # the hook's annotation covers psycopg 2 and 3; with psycopg 3 installed it is a psycopg 3 connection
    return cast("psycopg.Connection[Any]", PostgresHook(postgres_conn_id=DB_CONN_ID).get_conn())


def _is_admin(auth_manager: BaseAuthManager[Any], user: BaseUser) -> bool:
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    if isinstance(auth_manager, SimpleAuthManager):
        # SimpleAuthManager lets every role "PUT" a custom view; the administrator role is ADMIN.
        return (
            isinstance(user, SimpleAuthManagerUser) and bool(user.role) and SimpleAuthManager._is_admin(user)
        )
    return bool(auth_manager.is_authorized_custom_view(method="PUT", resource_name=RESOURCE_NAME, user=user))


def build_app() -> FastAPI:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user
    from airflow.configuration import conf
    from fastapi import Depends, HTTPException, Request

    from include.dijlepost.admin.app import create_app
    from include.dijlepost.admin.deps import Identity

    def identify(user: BaseUser = Depends(get_user)) -> Identity:
        auth_manager = get_auth_manager()
        if not auth_manager.is_authorized_custom_view(method="GET", resource_name=RESOURCE_NAME, user=user):
            raise HTTPException(403, f"{user.get_name()} may not view the rollout administration")
        return Identity(name=user.get_name(), is_admin=_is_admin(auth_manager, user))

    def login_url(request: Request) -> str:
        return get_auth_manager().get_url_login(next_url=str(request.url))

    # The run links open the run in this Airflow UI: its public address, `[api] base_url`.
    return create_app(
        _connect, identify, login_url=login_url, ui_url=conf.get("api", "base_url", fallback="") or ""
    )


class _AppOnFirstRequest:
    """An ASGI app that builds the real one when the API server first routes a request to it."""

    def __init__(self, factory: Callable[[], ASGIApp]):
        self._factory = factory
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = self._factory()
        await self._app(scope, receive, send)


class DijlepostAdminPlugin(AirflowPlugin):
    name = "dijlepost_admin"
    fastapi_apps = [  # noqa: RUF012 - AirflowPlugin declares these as plain attributes
        {
            "app": _AppOnFirstRequest(build_app),
            "url_prefix": URL_PREFIX,
            "name": "dijlepost rollout administration",
        }
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Rollout",
            "href": URL_PREFIX + "/",
            "url_route": URL_ROUTE,
            "destination": "nav",
            "category": "admin",
        }
    ]
