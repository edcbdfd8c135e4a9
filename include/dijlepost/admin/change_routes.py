"""The changing side: the JSON API's changes (`PUT`/`POST /api/v1/...`) behind `deps.administrator`, and
the page's forms (`POST /departments/...`, `/exemptions/...`) behind `views.form_change`. Every change
goes through `rollout.py`, which checks it, writes it and its audit row in one transaction, or refuses
it and writes nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, StrictInt

from include.dijlepost import rollout
from include.dijlepost.admin.deps import Administrator, AdminSettings, Conn, Settings
from include.dijlepost.admin.views import FormChange
from include.dijlepost.rollout import RolloutChangeRefused

router = APIRouter()


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


def to_pseudonym(
    settings: AdminSettings, value: str | None, kind: str | None, recipient_id: str | None
) -> str:
    """A pseudonym as given, or computed from a kind and id (the id itself is never stored)."""
    from include.dijlepost.recipients import InvalidRecipientId, normalize_recipient_id, pseudonym

    value = (value or "").strip()
    if value:
        return value
    recipient_id = (recipient_id or "").strip()
    if not recipient_id:
        raise RolloutChangeRefused("give a recipient: a pseudonym (r-...) or a kind and id")
    from include.dijlepost.settings import ConfigurationError

    try:
        return pseudonym(settings.key(), kind or "", normalize_recipient_id(kind or "", recipient_id))
    except InvalidRecipientId as exc:
        raise RolloutChangeRefused(str(exc)) from None
    except ConfigurationError as exc:
        raise HTTPException(503, f"cannot turn a recipient id into a pseudonym here: {exc}") from None


# ------------------------------------------------------------------ JSON API


@router.put("/api/v1/departments/{department}/phase")
def change_phase(department: str, change: PhaseChange, who: Administrator, conn: Conn):
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


@router.post("/api/v1/exemptions")
def add_exemption(body: ExemptionAdd, who: Administrator, conn: Conn, settings: Settings) -> JSONResponse:
    p = to_pseudonym(settings, body.recipient_pseudonym, body.kind, body.recipient_id)
    added = rollout.add_exemption(conn, p, body.reason, who.name)
    return JSONResponse({"recipient_pseudonym": p, "added": added}, status_code=201 if added else 200)


@router.post("/api/v1/exemptions/{recipient_pseudonym}/remove")
def remove_exemption(recipient_pseudonym: str, body: ExemptionRemove, who: Administrator, conn: Conn):
    removed = rollout.remove_exemption(conn, recipient_pseudonym, body.reason, who.name)
    if not removed:
        raise HTTPException(404, f"{recipient_pseudonym} has no paper exemption")
    return {"recipient_pseudonym": recipient_pseudonym, "removed": True}


# ------------------------------------------------------------------ the page's forms
# A field a browser leaves empty arrives as ""; `rollout.py` refuses what is missing with the reason.


class PhaseForm(BaseModel):
    phase: str = ""
    reason: str = ""
    pilot_percent: str = ""  # digits, or empty to keep the stored percentage


class ExemptionAddForm(BaseModel):
    recipient: str = ""  # a pseudonym (r-...), or a national register / KBO number turned into one
    kind: str = "citizen"
    reason: str = ""


class ExemptionRemoveForm(BaseModel):
    recipient_pseudonym: str = ""
    reason: str = ""


@router.post("/departments/{department}/phase", response_class=HTMLResponse)
def form_phase(department: str, view: FormChange, form: Annotated[PhaseForm, Form()]) -> Response:
    def act() -> str:
        percent = form.pilot_percent if form.pilot_percent.strip() else None
        who = view.who.name
        rollout.set_phase(
            view.conn, department, form.phase, form.reason, who, None, percent, refuse_unchanged=True
        )
        return f"phase:{department}"

    return view.change(act)


@router.post("/exemptions/add", response_class=HTMLResponse)
def form_exemption_add(
    view: FormChange, settings: Settings, form: Annotated[ExemptionAddForm, Form()]
) -> Response:
    def act() -> str:
        value = form.recipient.strip()
        by_pseudonym = value.startswith("r-")
        p = to_pseudonym(
            settings, value if by_pseudonym else None, form.kind, None if by_pseudonym else value
        )
        added = rollout.add_exemption(view.conn, p, form.reason, view.who.name)
        return "exemption-added" if added else "exemption-exists"

    return view.change(act)


@router.post("/exemptions/remove", response_class=HTMLResponse)
def form_exemption_remove(view: FormChange, form: Annotated[ExemptionRemoveForm, Form()]) -> Response:
    def act() -> str:
        removed = rollout.remove_exemption(view.conn, form.recipient_pseudonym, form.reason, view.who.name)
        return "exemption-removed" if removed else "exemption-absent"

    return view.change(act)
