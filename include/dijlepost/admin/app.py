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
everyone else gets the same page without forms, and 403 on every change.

Cross-site request forgery: Airflow's session cookie is SameSite=Lax, and every request that changes
something (`same_origin_proof`) must prove it comes from this site's own page: a browser sends
`Sec-Fetch-Site` and/or `Origin` with every POST and PUT, and the request is refused (403) unless
`Sec-Fetch-Site` is `same-origin` and `Origin` is this host (never `null`, the origin of sandboxed
frames, `data:` pages and some redirects). A request with neither header is refused too, unless it
carries its own credential in an `Authorization` header (an API client with a bearer token: a
cross-site form cannot set that header, and Airflow then ignores the session cookie).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, StrictInt

from include.dijlepost import rollout
from include.dijlepost.admin import figures
from include.dijlepost.admin.page import render_page
from include.dijlepost.audit import run_url
from include.dijlepost.rollout import RolloutChangeRefused
from include.dijlepost.tariffs import Tariffs
from include.dijlepost.waves import DEPARTMENTS, WAVES


@dataclass(frozen=True)
class Identity:
    name: str
    is_admin: bool


class PhaseChange(BaseModel):
    phase: str
    reason: str
    pilot_percent: StrictInt | None = None  # a JSON number: "10" or 10.0 are refused
    pilot_allowlist: list[str] | None = None  # recipient pseudonyms (r-...)


class ExemptionAdd(BaseModel):
    reason: str
    recipient_pseudonym: str | None = None  # either a pseudonym ...
    kind: str | None = None  # ... or a kind and id, turned into a pseudonym here
    recipient_id: str | None = None


class ExemptionRemove(BaseModel):
    reason: str


class NotAdmin(HTTPException):
    def __init__(self, who: Identity):
        super().__init__(403, f"only administrators may change the rollout; {who.name} has read-only access")


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def create_app(
    connect: Callable[[], object],
    identify: Callable,
    *,
    pseudonym_key: Callable[[], bytes] | None = None,
    tariffs: Callable[[], Tariffs] = Tariffs.from_env,
    login_url: Callable[[Request], str] | None = None,
    ui_url: str = "",
) -> FastAPI:
    """`ui_url`: the Airflow UI's address (`[api] base_url`) the page's run links start with; empty:
    the same host as the page."""
    app = FastAPI(
        title="dijlepost rollout administration",
        version="1",
        description="Rollout phases per department, pilot groups and paper exemptions.",
    )

    def db() -> Iterator[object]:
        with closing(connect()) as conn:
            try:
                yield conn
            finally:
                conn.rollback()

    def admin(request: Request, who: Identity = Depends(identify)) -> Identity:
        same_origin_proof(request)
        if not who.is_admin:
            raise NotAdmin(who)
        return who

    def key() -> bytes:
        if pseudonym_key is None:  # the settings, their secrets registered with Airflow's masker
            from include.dijlepost.airflow_support import settings

            return settings().pseudonym_key
        return pseudonym_key()

    def to_pseudonym(value: str | None, kind: str | None, recipient_id: str | None) -> str:
        """A pseudonym as given, or computed from a kind and id (the id itself is never stored)."""
        from include.dijlepost.recipients import InvalidRecipientId, normalize_recipient_id, pseudonym

        value = (value or "").strip()
        if value:
            return value
        if not (recipient_id or "").strip():
            raise RolloutChangeRefused("give a recipient: a pseudonym (r-...) or a kind and id")
        from include.dijlepost.settings import ConfigurationError

        try:
            return pseudonym(key(), kind or "", normalize_recipient_id(kind or "", recipient_id.strip()))
        except InvalidRecipientId as exc:
            raise RolloutChangeRefused(str(exc)) from None
        except ConfigurationError as exc:
            raise HTTPException(503, f"cannot turn a recipient id into a pseudonym here: {exc}") from None

    @app.exception_handler(RolloutChangeRefused)
    async def refused(request: Request, exc: RolloutChangeRefused):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    def department_or_404(department: str) -> str:
        if department not in DEPARTMENTS:
            raise HTTPException(
                404, f"unknown department {department!r}; expected one of {', '.join(DEPARTMENTS)}"
            )
        return department

    def overview(conn) -> list[dict]:
        t = tariffs()
        out = []
        order = {d: i for i, d in enumerate(DEPARTMENTS)}  # wave order: finance, gas, economy_housing
        for row in sorted(rollout.show(conn), key=lambda r: order.get(r["department"], len(order))):
            d = row["department"]
            report = figures.shadow_report(conn, d, t)
            out.append(
                {
                    **row,
                    "title": WAVES[d].title if d in WAVES else d,
                    "recent_runs": [
                        {**r, "url": run_url(ui_url, *r["run"].split(":", 1)) if ":" in r["run"] else None}
                        for r in figures.recent_runs(conn, d)
                    ],
                    "history": rollout.history(conn, d, limit=10),
                    "shadow_report": report.to_dict() if row["phase"] == "shadow" or report.decided else None,
                }
            )
        return out

    # ------------------------------------------------------------------ JSON API

    @app.get("/api/v1/me")
    def me(who: Identity = Depends(identify)):
        return {"name": who.name, "is_admin": who.is_admin}

    @app.get("/api/v1/departments")
    def departments(who: Identity = Depends(identify), conn=Depends(db)):
        return _json_safe(overview(conn))

    @app.get("/api/v1/departments/{department}")
    def department(department: str, who: Identity = Depends(identify), conn=Depends(db)):
        department_or_404(department)
        return _json_safe(next(d for d in overview(conn) if d["department"] == department))

    @app.put("/api/v1/departments/{department}/phase")
    def change_phase(department: str, change: PhaseChange, who: Identity = Depends(admin), conn=Depends(db)):
        before, after = rollout.set_phase(
            conn,
            department,
            change.phase,
            change.reason,
            who.name,
            change.pilot_allowlist,
            change.pilot_percent,
            refuse_unchanged=True,
        )
        return {
            "department": department,
            "from_phase": before,
            "to_phase": after,
            "changed_by": who.name,
            "takes_effect": "at the next run",
        }

    @app.get("/api/v1/departments/{department}/history")
    def department_history(
        department: str, limit: int = 100, who: Identity = Depends(identify), conn=Depends(db)
    ):
        department_or_404(department)
        return _json_safe(rollout.history(conn, department, limit=min(max(limit, 1), 1000)))

    @app.get("/api/v1/departments/{department}/runs")
    def department_runs(department: str, limit: int = 5, who: Identity = Depends(identify), conn=Depends(db)):
        department_or_404(department)
        return _json_safe(figures.recent_runs(conn, department, limit=min(max(limit, 1), 100)))

    @app.get("/api/v1/departments/{department}/shadow-report")
    def department_shadow_report(
        department: str, days: int | None = None, who: Identity = Depends(identify), conn=Depends(db)
    ):
        department_or_404(department)
        return figures.shadow_report(conn, department, tariffs(), days).to_dict()

    @app.get("/api/v1/history")
    def all_history(limit: int = 100, who: Identity = Depends(identify), conn=Depends(db)):
        return _json_safe(rollout.history(conn, limit=min(max(limit, 1), 1000)))

    @app.get("/api/v1/exemptions")
    def list_exemptions(who: Identity = Depends(identify), conn=Depends(db)):
        return _json_safe(rollout.exemptions(conn))

    @app.get("/api/v1/exemptions/history")
    def exemptions_history(
        recipient_pseudonym: str | None = None,
        limit: int = 100,
        who: Identity = Depends(identify),
        conn=Depends(db),
    ):
        return _json_safe(rollout.exemption_history(conn, recipient_pseudonym, min(max(limit, 1), 1000)))

    @app.post("/api/v1/exemptions")
    def add_exemption(body: ExemptionAdd, who: Identity = Depends(admin), conn=Depends(db)):
        p = to_pseudonym(body.recipient_pseudonym, body.kind, body.recipient_id)
        added = rollout.add_exemption(conn, p, body.reason, who.name)
        return JSONResponse({"recipient_pseudonym": p, "added": added}, status_code=201 if added else 200)

    @app.post("/api/v1/exemptions/{recipient_pseudonym}/remove")
    def remove_exemption(
        recipient_pseudonym: str, body: ExemptionRemove, who: Identity = Depends(admin), conn=Depends(db)
    ):
        removed = rollout.remove_exemption(conn, recipient_pseudonym, body.reason, who.name)
        if not removed:
            raise HTTPException(404, f"{recipient_pseudonym} has no paper exemption")
        return {"recipient_pseudonym": recipient_pseudonym, "removed": True}

    # ------------------------------------------------------------------ the page

    def page(request: Request, who: Identity, conn, *, error: str | None = None, status: int = 200):
        html = render_page(
            prefix=request.scope.get("root_path", "").rstrip("/"),
            who=who,
            departments=overview(conn),
            history=rollout.history(conn, limit=25),
            exemptions=rollout.exemptions(conn),
            exemption_history=rollout.exemption_history(conn, limit=25),
            phases=rollout.PHASES,
            error=error,
            notice=_notice(request),
            tariffs=tariffs(),
        )
        return HTMLResponse(html, status_code=status)

    def form_action(request: Request, who: Identity, conn, action: Callable[[], str]):
        if not who.is_admin:
            return page(request, who, conn, error=NotAdmin(who).detail, status=403)
        try:
            same_origin_proof(request)
        except HTTPException as exc:
            return page(request, who, conn, error=exc.detail, status=exc.status_code)
        try:
            notice = action()
        except RolloutChangeRefused as exc:
            return page(request, who, conn, error=f"refused, nothing changed: {exc}", status=400)
        except HTTPException as exc:
            return page(request, who, conn, error=f"nothing changed: {exc.detail}", status=exc.status_code)
        prefix = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(f"{prefix}/?done={notice}", status_code=303)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, who: Identity = Depends(identify), conn=Depends(db)):
        return page(request, who, conn)

    @app.post("/departments/{department}/phase", response_class=HTMLResponse)
    def form_phase(
        request: Request,
        department: str,
        phase: str = Form(""),
        reason: str = Form(""),
        pilot_percent: str = Form(""),
        who: Identity = Depends(identify),
        conn=Depends(db),
    ):
        def act():
            rollout.set_phase(
                conn,
                department,
                phase,
                reason,
                who.name,
                None,
                pilot_percent if pilot_percent.strip() else None,
                refuse_unchanged=True,
            )
            return f"phase:{department}"

        return form_action(request, who, conn, act)

    @app.post("/exemptions/add", response_class=HTMLResponse)
    def form_exemption_add(
        request: Request,
        recipient: str = Form(""),
        kind: str = Form("citizen"),
        reason: str = Form(""),
        who: Identity = Depends(identify),
        conn=Depends(db),
    ):
        def act():
            value = recipient.strip()
            p = to_pseudonym(
                value if value.startswith("r-") else None, kind, None if value.startswith("r-") else value
            )
            return (
                "exemption-added" if rollout.add_exemption(conn, p, reason, who.name) else "exemption-exists"
            )

        return form_action(request, who, conn, act)

    @app.post("/exemptions/remove", response_class=HTMLResponse)
    def form_exemption_remove(
        request: Request,
        recipient_pseudonym: str = Form(""),
        reason: str = Form(""),
        who: Identity = Depends(identify),
        conn=Depends(db),
    ):
        def act():
            removed = rollout.remove_exemption(conn, recipient_pseudonym, reason, who.name)
            return "exemption-removed" if removed else "exemption-absent"

        return form_action(request, who, conn, act)

    if login_url is not None:

        @app.exception_handler(HTTPException)
        async def to_login(request: Request, exc: HTTPException):
            wants_html = (
                request.method == "GET"
                and "text/html" in request.headers.get("accept", "")
                and not request.url.path.startswith(request.scope.get("root_path", "") + "/api/")
            )
            if exc.status_code == 401 and wants_html:
                return RedirectResponse(login_url(request), status_code=303)
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return app


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_and_port(netloc: str, scheme: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit(f"//{netloc}")
        return (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None


def _origin(scheme: str, netloc: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an origin: `http://host` and `https://host` are two origins."""
    where = _host_and_port(netloc, scheme)
    return None if where is None else (scheme, *where)


def same_origin_proof(request: Request) -> None:
    """Refuse (403) a request that changes something unless it shows it comes from this site.

    `Sec-Fetch-Site`, when sent, must be `same-origin`; `Origin`, when sent, must be this origin, the
    same scheme, host and port (the request's scheme and `Host` header, or `X-Forwarded-Proto` and
    `X-Forwarded-Host` behind a reverse proxy: none can be set by a cross-site form) and not `null`;
    one of the two must be there, unless the request brings its own credential in an `Authorization`
    header.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        raise HTTPException(403, f"cross-site request refused (Sec-Fetch-Site: {site[:20]})")
    origin = request.headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin) if origin != "null" else None
        if parts is None or parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
            raise HTTPException(403, "request refused: its Origin is not a web page of this site")
        theirs = _origin(parts.scheme, parts.netloc)
        scheme = request.url.scheme
        forwarded = (request.headers.get("x-forwarded-proto") or scheme).split(",")[0].strip().lower()
        ours = {
            _origin(proto, h.split(",")[0].strip())
            for proto, h in (
                (scheme, request.headers.get("host")),
                (forwarded, request.headers.get("x-forwarded-host")),
            )
            if h
        }
        if theirs is None or theirs not in ours:
            raise HTTPException(403, "cross-origin request refused: its Origin is another site")
    if site is None and origin is None and "authorization" not in request.headers:
        raise HTTPException(
            403,
            "request refused: no proof that it comes from this site's page (the browser sent neither "
            "Origin nor Sec-Fetch-Site); API clients authenticate with an Authorization header",
        )


NOTICES = {
    "exemption-added": "Paper exemption registered.",
    "exemption-exists": "That recipient already had a paper exemption; nothing changed.",
    "exemption-removed": "Paper exemption removed.",
    "exemption-absent": "That recipient had no paper exemption; nothing changed.",
}


def _notice(request: Request) -> str | None:
    done = request.query_params.get("done", "")
    if done.startswith("phase:") and done[6:] in DEPARTMENTS:
        return f"Phase of {done[6:]} changed; it takes effect at the next run."
    return NOTICES.get(done)
