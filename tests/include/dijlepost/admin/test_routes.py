"""The seams of the assembled app, read from its routes: every route knows who is signed in, and every
route that changes something goes through the administrator check (the role and the same-origin proof)
before it runs. A route added without them fails here, before any request shows it."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from include.dijlepost.admin import deps, views
from include.dijlepost.admin.app import create_app
from include.dijlepost.admin.deps import Identity

CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
ROLE_CHECKS = {deps.administrator, views.form_change}


def nobody() -> Identity:
    return Identity("nobody", False)


def api_routes() -> list[APIRoute]:
    app = create_app(lambda: psycopg.connect("postgresql:///unused"), nobody)
    return [r for r in app.routes if isinstance(r, APIRoute)]


def calls(dependant: Dependant) -> Iterator[object]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from calls(sub)


def test_the_app_has_read_and_change_routes():
    methods = {m for r in api_routes() for m in r.methods}
    assert "GET" in methods and methods & CHANGING
    assert {r.path for r in api_routes() if r.methods & CHANGING} == {
        "/api/v1/departments/{department}/phase",
        "/api/v1/exemptions",
        "/api/v1/exemptions/{recipient_pseudonym}/remove",
        "/departments/{department}/phase",
        "/exemptions/add",
        "/exemptions/remove",
    }


def test_every_route_knows_who_is_signed_in():
    for route in api_routes():
        assert deps.current_user in set(calls(route.dependant)), route.path


def test_every_change_route_depends_on_the_administrator_check():
    for route in api_routes():
        if route.methods & CHANGING:
            assert ROLE_CHECKS & set(calls(route.dependant)), f"{route.methods} {route.path}"


def test_no_read_route_asks_for_the_administrator_check():
    """Reading is open to every user who may view the page; the check would refuse a viewer."""
    for route in api_routes():
        if not route.methods & CHANGING:
            assert not ROLE_CHECKS & set(calls(route.dependant)), route.path


def test_the_user_seam_is_bound_to_the_given_identify():
    app = create_app(lambda: psycopg.connect("postgresql:///unused"), nobody)
    assert app.dependency_overrides == {deps.current_user: nobody}


def test_a_browser_not_signed_in_is_sent_to_the_login_page_and_an_api_client_gets_401():
    from fastapi.testclient import TestClient

    from .conftest import header_identity

    def never() -> psycopg.Connection:
        raise AssertionError("no connection is opened for a request that is not signed in")

    html = {"Accept": "text/html"}
    with_login = create_app(
        never, header_identity, login_url=lambda request: f"/login?next={request.url.path}"
    )
    with TestClient(with_login, follow_redirects=False) as client:
        page = client.get("/", headers=html)
        assert (page.status_code, page.headers["location"]) == (303, "/login?next=/")
        api = client.get("/api/v1/me", headers=html)
        assert (api.status_code, api.json()) == (401, {"detail": "Not authenticated"})
        post = client.post("/exemptions/add", headers=html)
        assert post.status_code == 401
    with TestClient(create_app(never, header_identity), follow_redirects=False) as client:
        assert client.get("/", headers=html).status_code == 401
