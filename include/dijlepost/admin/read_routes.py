"""The reading side: the page (`GET /`) and the JSON API's reads (`GET /api/v1/...`), open to every
user who may view the rollout administration."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from include.dijlepost import rollout
from include.dijlepost.admin import figures
from include.dijlepost.admin.deps import Conn, CurrentUser, Settings, known_department
from include.dijlepost.admin.views import Page, json_safe, overview

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def index(view: Page) -> HTMLResponse:
    return view.render()


@router.get("/api/v1/me")
def me(who: CurrentUser):
    return {"name": who.name, "is_admin": who.is_admin}


@router.get("/api/v1/departments")
def departments(who: CurrentUser, conn: Conn, settings: Settings):
    return json_safe(overview(conn, settings))


@router.get("/api/v1/departments/{department}")
def department(who: CurrentUser, conn: Conn, settings: Settings, department: str):
    known_department(department)
    return json_safe(next(d for d in overview(conn, settings) if d["department"] == department))


@router.get("/api/v1/departments/{department}/history")
def department_history(who: CurrentUser, conn: Conn, department: str, limit: int = 100):
    known_department(department)
    return json_safe(rollout.history(conn, department, limit=min(max(limit, 1), 1000)))


@router.get("/api/v1/departments/{department}/runs")
def department_runs(who: CurrentUser, conn: Conn, department: str, limit: int = 5):
    known_department(department)
    return json_safe(figures.recent_runs(conn, department, limit=min(max(limit, 1), 100)))


@router.get("/api/v1/departments/{department}/shadow-report")
def department_shadow_report(
    who: CurrentUser, conn: Conn, settings: Settings, department: str, days: int | None = None
):
    known_department(department)
    return figures.shadow_report(conn, department, settings.tariffs(), days).to_dict()


@router.get("/api/v1/history")
def all_history(who: CurrentUser, conn: Conn, limit: int = 100):
    return json_safe(rollout.history(conn, limit=min(max(limit, 1), 1000)))


@router.get("/api/v1/exemptions")
def list_exemptions(who: CurrentUser, conn: Conn):
    return json_safe(rollout.exemptions(conn))


@router.get("/api/v1/exemptions/history")
def exemptions_history(
    who: CurrentUser, conn: Conn, recipient_pseudonym: str | None = None, limit: int = 100
):
    return json_safe(rollout.exemption_history(conn, recipient_pseudonym, min(max(limit, 1), 1000)))
