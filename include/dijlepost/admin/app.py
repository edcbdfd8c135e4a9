"""The rollout administration app: a server-rendered page and a JSON API over `rollout.py`.

`create_app(connect, identify)` builds a FastAPI app that knows nothing about Airflow:

- `connect()` returns a new psycopg 3 connection to the dijlepost database (PostgresHook's `get_conn()`
  with SQLAlchemy 2, or a plain `psycopg.connect`);
- `identify` is a FastAPI dependency returning the signed-in `Identity` (name, is_admin) or raising
  HTTPException(401/403).

The Airflow plugin (`plugins/dijlepost_admin.py`) passes a PostgresHook on the `dijlepost_db`
Connection and an `identify` built on Airflow's own JWT authentication and auth manager; tests of the
app alone pass a plain URL. All validation stays in `rollout.py`: a refused change answers 422 (API)
or 400 (page) with the reason, and nothing is written. Only administrators may change anything;
everyone else gets the same page without forms, and 403 on every change; every change must also
prove it comes from this site's page (`origin.py`, against cross-site request forgery).

The parts, in this package:

- `deps.py`: the dependencies: the signed-in user (`current_user`, bound here to `identify`), the
  settings the app was built with, the request's database connection, the administrator check;
- `origin.py`: the same-origin proof every change needs;
- `views.py`: the departments' overview, and the page as a dependency, with how a form's change answers;
- `read_routes.py`: the page and the API's reads; `change_routes.py`: the API's changes and the forms;
- `page.py`: the page's HTML; `figures.py`: recent runs and the shadow report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from include.dijlepost.admin import change_routes, read_routes
from include.dijlepost.admin.deps import AdminSettings, Connection, admin_settings, current_user
from include.dijlepost.admin.views import PageRefused
from include.dijlepost.rollout import RolloutChangeRefused
from include.dijlepost.tariffs import Tariffs


def create_app(
    connect: Callable[[], Connection],
    identify: Callable[..., Any],
    *,
    pseudonym_key: Callable[[], bytes] | None = None,
    tariffs: Callable[[], Tariffs] = Tariffs.from_env,
    login_url: Callable[[Request], str] | None = None,
    ui_url: str = "",
) -> FastAPI:
    """`identify`: a FastAPI dependency returning the signed-in `Identity`; `pseudonym_key`: the key that
    turns a recipient id into a pseudonym (default: the settings'); `login_url`: where a browser that is
    not signed in is sent (default: it gets the 401); `ui_url`: the Airflow UI's address (`[api] base_url`)
    the page's run links start with; empty: the same host as the page."""
    app = FastAPI(
        title="dijlepost rollout administration",
        version="1",
        description="Rollout phases per department, pilot groups and paper exemptions.",
        exception_handlers={RolloutChangeRefused: _refused, PageRefused: _page_refused},
    )
    app.state.admin_settings = AdminSettings(
        connect=connect, tariffs=tariffs, pseudonym_key=pseudonym_key, login_url=login_url, ui_url=ui_url
    )
    app.dependency_overrides[current_user] = identify
    app.include_router(read_routes.router)
    app.include_router(change_routes.router)
    if login_url is not None:
        app.exception_handler(HTTPException)(_to_login)
    return app


async def _refused(request: Request, exc: RolloutChangeRefused) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=422)


async def _page_refused(request: Request, exc: PageRefused) -> Response:
    return exc.response


async def _to_login(request: Request, exc: HTTPException) -> Response:
    """A browser that is not signed in asking for the page goes to the login page; every other refusal
    is answered as FastAPI would."""
    wants_html = (
        request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
        and not request.url.path.startswith(request.scope.get("root_path", "") + "/api/")
    )
    login_url = admin_settings(request).login_url
    if exc.status_code == 401 and wants_html and login_url is not None:
        return RedirectResponse(login_url(request), status_code=303)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
