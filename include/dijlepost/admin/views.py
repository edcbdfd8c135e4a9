"""What the page and the API show: the departments' overview, JSON-safe values, and the page itself as a
dependency (`PageView`), which is also how a form change answers: a redirect back to the page with a
notice, or the page again with the reason it was refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from include.dijlepost import rollout
from include.dijlepost.admin import figures
from include.dijlepost.admin.deps import (
    AdminSettings,
    Conn,
    Connection,
    CurrentUser,
    Identity,
    NotAdmin,
    Settings,
)
from include.dijlepost.admin.origin import same_origin_proof
from include.dijlepost.admin.page import render_page
from include.dijlepost.audit import run_url
from include.dijlepost.rollout import RolloutChangeRefused
from include.dijlepost.waves import DEPARTMENTS, WAVES

NOTICES = {
    "exemption-added": "Paper exemption registered.",
    "exemption-exists": "That recipient already had a paper exemption; nothing changed.",
    "exemption-removed": "Paper exemption removed.",
    "exemption-absent": "That recipient had no paper exemption; nothing changed.",
}


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def overview(conn: Connection, settings: AdminSettings) -> list[dict[str, Any]]:
    """Every department in wave order (finance, gas, economy_housing): phase, recent runs with their
    links into Airflow, history, and the shadow report while in shadow or once it has letters."""
    t = settings.tariffs()
    out = []
    order = {d: i for i, d in enumerate(DEPARTMENTS)}
    for row in sorted(rollout.show(conn), key=lambda r: order.get(r["department"], len(order))):
        d = row["department"]
        report = figures.shadow_report(conn, d, t)
        out.append(
            {
                **row,
                "title": WAVES[d].title if d in WAVES else d,
                "recent_runs": [
                    {
                        **r,
                        "url": run_url(settings.ui_url, *r["run"].split(":", 1)) if ":" in r["run"] else None,
                    }
                    for r in figures.recent_runs(conn, d)
                ],
                "history": rollout.history(conn, d, limit=10),
                "shadow_report": report.to_dict() if row["phase"] == "shadow" or report.decided else None,
            }
        )
    return out


def _prefix(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _notice(request: Request) -> str | None:
    done = request.query_params.get("done", "")
    if done.startswith("phase:") and done[6:] in DEPARTMENTS:
        return f"Phase of {done[6:]} changed; it takes effect at the next run."
    return NOTICES.get(done)


@dataclass(frozen=True)
class PageView:
    """The page for this request's user, read on this request's connection."""

    request: Request
    who: Identity
    conn: Connection
    settings: AdminSettings

    def render(self, *, error: str | None = None, status: int = 200) -> HTMLResponse:
        html = render_page(
            prefix=_prefix(self.request),
            who=self.who,
            departments=overview(self.conn, self.settings),
            history=rollout.history(self.conn, limit=25),
            exemptions=rollout.exemptions(self.conn),
            exemption_history=rollout.exemption_history(self.conn, limit=25),
            phases=rollout.PHASES,
            error=error,
            notice=_notice(self.request),
            tariffs=self.settings.tariffs(),
        )
        return HTMLResponse(html, status_code=status)

    def change(self, action: Callable[[], str]) -> Response:
        """Run a form's change: back to the page with the notice `action` returns (303), or the page
        again with the reason it was refused (400, or the refusal's own status) and nothing changed."""
        try:
            notice = action()
        except RolloutChangeRefused as exc:
            return self.render(error=f"refused, nothing changed: {exc}", status=400)
        except HTTPException as exc:
            return self.render(error=f"nothing changed: {exc.detail}", status=exc.status_code)
        return RedirectResponse(f"{_prefix(self.request)}/?done={notice}", status_code=303)


def page_view(request: Request, who: CurrentUser, conn: Conn, settings: Settings) -> PageView:
    return PageView(request, who, conn, settings)


class PageRefused(Exception):
    """A form's change refused before it ran; the answer is the page with the reason (see `create_app`)."""

    def __init__(self, response: Response):
        super().__init__(response.status_code)
        self.response = response


def form_change(view: Annotated[PageView, Depends(page_view)]) -> PageView:
    """The page of a user who may change something from it (the role first, then the same-origin
    proof); else the page again with the refusal's status (403) and reason, and nothing runs."""
    if not view.who.is_admin:
        raise PageRefused(view.render(error=NotAdmin(view.who).detail, status=403))
    try:
        same_origin_proof(view.request)
    except HTTPException as exc:
        raise PageRefused(view.render(error=exc.detail, status=exc.status_code)) from None
    return view


Page = Annotated[PageView, Depends(page_view)]
FormChange = Annotated[PageView, Depends(form_change)]
