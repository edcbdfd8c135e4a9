"""The rollout administration app (JSON API and page) in-process against the real PostgreSQL."""

from __future__ import annotations

import re
from html import unescape

import psycopg
import pytest

from include.dijlepost.recipients import pseudonym
from include.dijlepost.rollout import read_state
from include.dijlepost.waves import DEPARTMENTS

from .conftest import NRN, SAME_ORIGIN, add_letters

pytestmark = pytest.mark.integration

KEY = b"test-pseudonym-key-not-secret"


def phase_rows(db):
    rows = db.execute(
        "SELECT department, phase, pilot_allowlist, pilot_percent, changed_by, reason "
        "FROM rollout_phases ORDER BY department"
    ).fetchall()
    db.commit()
    return rows


def history_rows(db):
    rows = db.execute(
        "SELECT department, from_phase, to_phase, changed_by, reason FROM rollout_history ORDER BY id"
    ).fetchall()
    db.commit()
    return rows


def exemption_rows(db):
    rows = db.execute("SELECT recipient_pseudonym, added_by, reason FROM paper_exemptions").fetchall()
    hist = db.execute(
        "SELECT recipient_pseudonym, action, changed_by, reason FROM paper_exemption_history ORDER BY id"
    ).fetchall()
    db.commit()
    return rows, hist


def text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


# --------------------------------------------------------------------------- API: reading


def test_me_says_who_is_signed_in_and_whether_they_may_change(as_admin, as_viewer):
    assert as_admin.get("/api/v1/me").json() == {"name": "ann.admin", "is_admin": True}
    assert as_viewer.get("/api/v1/me").json() == {"name": "vic.viewer", "is_admin": False}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/me",
        "/api/v1/departments",
        "/api/v1/history",
        "/api/v1/exemptions",
        "/api/v1/departments/gas/shadow-report",
        "/",
    ],
)
def test_nothing_is_shown_without_a_signed_in_user(anonymous, path):
    assert anonymous.get(path).status_code == 401


def test_departments_lists_every_department_with_its_phase_and_figures(rollout_db, as_viewer):
    rollout_db.execute(
        "UPDATE rollout_phases SET phase = 'pilot', pilot_allowlist = %s, pilot_percent = 15 "
        "WHERE department = 'gas'",
        (["r-1", "r-2"],),
    )
    rollout_db.commit()
    add_letters(
        rollout_db,
        "gas",
        3,
        run="letters_gas:run-1",
        status="delivered_ebox",
        channel="ebox",
        rollout_phase="pilot",
    )
    add_letters(
        rollout_db,
        "gas",
        2,
        run="letters_gas:run-1",
        status="handed_to_print",
        channel="paper",
        rollout_phase="pilot",
    )
    add_letters(rollout_db, "gas", 1, run="letters_gas:run-1", status="quarantined", rollout_phase="pilot")
    body = as_viewer.get("/api/v1/departments").json()
    assert [d["department"] for d in body] == list(DEPARTMENTS)  # in wave order
    gas = next(d for d in body if d["department"] == "gas")
    assert (gas["phase"], gas["pilot_size"], gas["pilot_percent"]) == ("pilot", 2, 15)
    run = gas["recent_runs"][0]
    assert (run["run"], run["ebox"], run["paper"], run["quarantined"], run["unfinished"]) == (
        "letters_gas:run-1",
        3,
        2,
        1,
        0,
    )
    assert gas["shadow_report"] is None  # not in shadow, never was
    finance = next(d for d in body if d["department"] == "finance")
    assert finance["recent_runs"] == []


def test_one_department_and_an_unknown_one(as_viewer):
    assert as_viewer.get("/api/v1/departments/finance").json()["phase"] == "live"
    r = as_viewer.get("/api/v1/departments/culture")
    assert r.status_code == 404 and "unknown department 'culture'" in r.json()["detail"]


# --------------------------------------------------------------------------- API: changing the phase


def test_admin_changes_a_phase_and_it_is_in_the_history(rollout_db, as_admin, as_viewer):
    r = as_admin.put(
        "/api/v1/departments/economy_housing/phase",
        json={"phase": "pilot", "reason": "pilot with a tenth", "pilot_percent": 10},
    )
    assert r.status_code == 200, r.text
    assert r.json()["from_phase"] == "live" and r.json()["to_phase"] == "pilot"
    assert r.json()["changed_by"] == "ann.admin"
    state = read_state(rollout_db, "economy_housing")
    assert (state.phase, state.pilot_percent) == ("pilot", 10)
    hist = as_viewer.get("/api/v1/departments/economy_housing/history").json()
    assert [
        (h["from_phase"], h["to_phase"], h["changed_by"], h["reason"], h["pilot_percent"]) for h in hist
    ] == [("live", "pilot", "ann.admin", "pilot with a tenth", 10)]
    assert as_viewer.get("/api/v1/history").json()[0]["department"] == "economy_housing"


def test_admin_sets_an_allowlist_of_pseudonyms(rollout_db, as_admin):
    r = as_admin.put(
        "/api/v1/departments/gas/phase",
        json={"phase": "pilot", "reason": "volunteers", "pilot_allowlist": ["r-b", "r-a"]},
    )
    assert r.status_code == 200, r.text
    assert read_state(rollout_db, "gas").pilot_allowlist == {"r-a", "r-b"}


@pytest.mark.parametrize(
    "department,body,detail",
    [
        ("culture", {"phase": "live", "reason": "why"}, "unknown department"),
        ("gas", {"phase": "on", "reason": "why"}, "unknown phase"),
        ("gas", {"phase": "paper", "reason": "  "}, "reason is required"),
        ("gas", {"phase": "pilot", "reason": "why", "pilot_percent": 101}, "outside 0..100"),
        ("gas", {"phase": "pilot", "reason": "why", "pilot_percent": -5}, "outside 0..100"),
        ("gas", {"phase": "pilot", "reason": "why"}, "needs a pilot group"),
        ("gas", {"phase": "pilot", "reason": "why", "pilot_allowlist": [NRN]}, "not recipient pseudonyms"),
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(rollout_db, as_admin, department, body, detail):
    before = phase_rows(rollout_db), history_rows(rollout_db)
    r = as_admin.put(f"/api/v1/departments/{department}/phase", json=body)
    assert r.status_code == 422
    assert detail in r.json()["detail"]
    assert (phase_rows(rollout_db), history_rows(rollout_db)) == before


@pytest.mark.parametrize(
    "body",
    [{"phase": "paper"}, {"reason": "why"}, {"phase": "pilot", "reason": "x", "pilot_percent": "many"}],
)
def test_malformed_requests_are_refused_by_the_schema(rollout_db, as_admin, body):
    before = phase_rows(rollout_db)
    assert as_admin.put("/api/v1/departments/gas/phase", json=body).status_code == 422
    assert phase_rows(rollout_db) == before


def test_a_viewer_cannot_change_a_phase(rollout_db, as_viewer):
    before = phase_rows(rollout_db), history_rows(rollout_db)
    r = as_viewer.put("/api/v1/departments/gas/phase", json={"phase": "paper", "reason": "try"})
    assert r.status_code == 403 and "only administrators" in r.json()["detail"]
    assert (phase_rows(rollout_db), history_rows(rollout_db)) == before


def test_a_cross_site_request_is_refused_even_for_an_admin(rollout_db, as_admin):
    before = phase_rows(rollout_db)
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        r = as_admin.put(
            "/api/v1/departments/gas/phase", json={"phase": "paper", "reason": "x"}, headers=headers
        )
        assert r.status_code == 403, headers
    assert phase_rows(rollout_db) == before
    ok = as_admin.put(
        "/api/v1/departments/gas/phase",
        json={"phase": "paper", "reason": "same site"},
        headers={"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
    )
    assert ok.status_code == 200


# --------------------------------------------------------------------------- API: exemptions


def test_admin_adds_and_removes_an_exemption_by_national_register_number(rollout_db, as_admin, as_viewer):
    p = pseudonym(KEY, "citizen", NRN)
    r = as_admin.post(
        "/api/v1/exemptions",
        json={
            "kind": "citizen",
            "recipient_id": "85.07.30-033.28",
            "reason": "digipunt: no internet at home",
        },
    )
    assert r.status_code == 201 and r.json() == {"recipient_pseudonym": p, "added": True}
    again = as_admin.post("/api/v1/exemptions", json={"recipient_pseudonym": p, "reason": "again"})
    assert again.status_code == 200 and again.json()["added"] is False
    assert [e["recipient_pseudonym"] for e in as_viewer.get("/api/v1/exemptions").json()] == [p]

    assert as_admin.post(f"/api/v1/exemptions/{p}/remove", json={"reason": " "}).status_code == 422
    assert as_admin.post(f"/api/v1/exemptions/{p}/remove", json={"reason": "internet now"}).json()["removed"]
    assert as_admin.post(f"/api/v1/exemptions/{p}/remove", json={"reason": "twice"}).status_code == 404
    rows, hist = exemption_rows(rollout_db)
    assert rows == []
    assert hist == [
        (p, "add", "ann.admin", "digipunt: no internet at home"),
        (p, "remove", "ann.admin", "internet now"),
    ]
    assert [h["action"] for h in as_viewer.get("/api/v1/exemptions/history").json()] == ["remove", "add"]
    assert NRN not in str(hist)


@pytest.mark.parametrize(
    "body,detail",
    [
        ({"kind": "citizen", "recipient_id": "85073003329", "reason": "x"}, "not a valid national register"),
        ({"kind": "martian", "recipient_id": NRN, "reason": "x"}, "unknown recipient kind"),
        ({"kind": "citizen", "recipient_id": NRN, "reason": ""}, "reason is required"),
        ({"reason": "x"}, "give a recipient"),
        ({"recipient_pseudonym": NRN, "reason": "x"}, "not a recipient pseudonym"),
    ],
)
def test_bad_exemptions_are_refused_and_change_nothing(rollout_db, as_admin, body, detail):
    r = as_admin.post("/api/v1/exemptions", json=body)
    assert r.status_code == 422 and detail in r.json()["detail"]
    assert NRN not in r.text
    assert exemption_rows(rollout_db) == ([], [])


def test_a_viewer_cannot_touch_exemptions(rollout_db, as_admin, as_viewer):
    as_admin.post("/api/v1/exemptions", json={"recipient_pseudonym": "r-abc", "reason": "digipunt"})
    before = exemption_rows(rollout_db)
    assert (
        as_viewer.post("/api/v1/exemptions", json={"recipient_pseudonym": "r-def", "reason": "x"}).status_code
        == 403
    )
    assert as_viewer.post("/api/v1/exemptions/r-abc/remove", json={"reason": "x"}).status_code == 403
    assert exemption_rows(rollout_db) == before


# --------------------------------------------------------------------------- the page


def test_the_page_shows_every_department_and_forms_only_to_an_admin(rollout_db, as_admin, as_viewer):
    admin_page, viewer_page = as_admin.get("/"), as_viewer.get("/")
    assert admin_page.status_code == viewer_page.status_code == 200
    for d in DEPARTMENTS:
        assert f'id="phase-{d}"' in admin_page.text and f'id="phase-{d}"' in viewer_page.text
        assert f'action="/departments/{d}/phase"' in admin_page.text
    assert "<form" not in viewer_page.text
    assert "read-only" in text(viewer_page.text) and "vic.viewer" in viewer_page.text


def test_the_page_form_changes_the_phase_and_shows_it_in_the_history(rollout_db, as_admin):
    r = as_admin.post(
        "/departments/gas/phase",
        data={"phase": "shadow", "reason": "measure first", "pilot_percent": ""},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/?done=phase:gas"
    page = as_admin.get(r.headers["location"])
    assert 'id="phase-gas">shadow<' in page.text
    assert "Phase of gas changed" in text(page.text)
    assert re.search(
        r"<td>gas</td><td>ann\.admin</td>\s*<td>live</td><td>shadow</td><td>measure first</td>", page.text
    )


def test_the_page_form_refuses_bad_input_with_the_reason_and_changes_nothing(rollout_db, as_admin):
    before = phase_rows(rollout_db), history_rows(rollout_db)
    r = as_admin.post(
        "/departments/gas/phase", data={"phase": "pilot", "reason": "x", "pilot_percent": "250"}
    )
    assert r.status_code == 400
    assert "refused, nothing changed: pilot percentage 250 is outside 0..100" in text(r.text)
    r = as_admin.post("/departments/gas/phase", data={"phase": "paper", "reason": ""})
    assert r.status_code == 400 and "reason is required" in r.text
    assert (phase_rows(rollout_db), history_rows(rollout_db)) == before


def test_a_viewer_posting_the_form_is_refused(rollout_db, as_viewer):
    before = phase_rows(rollout_db), history_rows(rollout_db)
    r = as_viewer.post("/departments/gas/phase", data={"phase": "paper", "reason": "sneaky"})
    assert r.status_code == 403 and "only administrators" in r.text
    r = as_viewer.post("/exemptions/add", data={"recipient": "r-abc", "reason": "sneaky"})
    assert r.status_code == 403
    assert (phase_rows(rollout_db), history_rows(rollout_db)) == before
    assert exemption_rows(rollout_db) == ([], [])


def test_the_page_manages_exemptions_without_showing_the_number(rollout_db, as_admin):
    r = as_admin.post(
        "/exemptions/add", data={"kind": "citizen", "recipient": NRN, "reason": "social service"}
    )
    assert r.status_code == 200 and "Paper exemption registered." in r.text  # after the redirect
    p = pseudonym(KEY, "citizen", NRN)
    assert p in r.text and NRN not in r.text
    r = as_admin.post("/exemptions/remove", data={"recipient_pseudonym": p, "reason": ""})
    assert r.status_code == 400 and "reason is required" in r.text
    r = as_admin.post("/exemptions/remove", data={"recipient_pseudonym": p, "reason": "moved away"})
    assert "Paper exemption removed." in r.text
    assert exemption_rows(rollout_db)[1] == [
        (p, "add", "ann.admin", "social service"),
        (p, "remove", "ann.admin", "moved away"),
    ]


def test_page_text_is_escaped(rollout_db, as_admin):
    as_admin.put(
        "/api/v1/departments/gas/phase", json={"phase": "paper", "reason": "<script>alert(1)</script>"}
    )
    page = as_admin.get("/").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_the_page_links_stay_under_the_mount_prefix(pg_url, rollout_db, app):
    from fastapi.testclient import TestClient
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/dijlepost-rollout", app=app)])
    with TestClient(outer, headers={"X-Test-User": "ann.admin:admin", **SAME_ORIGIN}) as c:
        page = c.get("/dijlepost-rollout/").text
        assert 'action="/dijlepost-rollout/departments/gas/phase"' in page
        r = c.post(
            "/dijlepost-rollout/departments/gas/phase",
            data={"phase": "paper", "reason": "mounted"},
            follow_redirects=False,
        )
        assert r.headers["location"] == "/dijlepost-rollout/?done=phase:gas"


def test_adding_by_number_without_a_pseudonym_key_is_a_clear_configuration_error(
    pg_url, rollout_db, monkeypatch
):
    from fastapi.testclient import TestClient

    from include.dijlepost.admin.app import create_app

    from .conftest import header_identity

    monkeypatch.delenv("DIJLEPOST_PSEUDONYM_KEY", raising=False)
    app = create_app(lambda: psycopg.connect(pg_url), header_identity)  # key from the environment
    with TestClient(app, headers={"X-Test-User": "ann.admin:admin", **SAME_ORIGIN}) as c:
        r = c.post("/api/v1/exemptions", json={"kind": "citizen", "recipient_id": NRN, "reason": "digipunt"})
        assert r.status_code == 503 and "DIJLEPOST_PSEUDONYM_KEY" in r.json()["detail"] and NRN not in r.text
        ok = c.post("/api/v1/exemptions", json={"recipient_pseudonym": "r-abc", "reason": "digipunt"})
        assert ok.status_code == 201  # by pseudonym it still works
    assert exemption_rows(rollout_db)[0] == [("r-abc", "ann.admin", "digipunt")]


# --------------------------------------------------------------------------- same-origin proof and inputs


def _changes(db):
    return phase_rows(db), history_rows(db), exemption_rows(db)


@pytest.mark.parametrize(
    "headers,detail",
    [
        ({}, "no proof that it comes from this site"),
        ({"Origin": "null"}, "not a web page of this site"),
        ({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, "not a web page of this site"),
        ({"Sec-Fetch-Site": "same-site"}, "cross-site request refused"),
        ({"Sec-Fetch-Site": "none"}, "cross-site request refused"),
        ({"Origin": "http://testserver.evil.example"}, "its Origin is another site"),
        ({"Origin": "http://testserver:8081"}, "its Origin is another site"),
        # the same host and port as the request, but not its scheme (http)
        ({"Origin": "https://testserver:8080", "Host": "testserver:8080"}, "its Origin is another site"),
        ({"Origin": "https://testserver"}, "its Origin is another site"),
        (
            {
                "Origin": "http://airflow.mechelen.example",
                "X-Forwarded-Host": "airflow.mechelen.example",
                "X-Forwarded-Proto": "https",
            },
            "its Origin is another site",
        ),
        ({"Origin": "file://"}, "not a web page of this site"),
        ({"Origin": "http://evil.example", "X-Forwarded-Host": "airflow.mechelen.example"}, "another site"),
    ],
)
def test_a_change_without_a_same_origin_proof_is_refused(
    rollout_db, admin_without_browser_headers, headers, detail
):
    client = admin_without_browser_headers
    before = _changes(rollout_db)
    r = client.put("/api/v1/departments/gas/phase", json={"phase": "paper", "reason": "x"}, headers=headers)
    assert r.status_code == 403 and detail in r.json()["detail"], (headers, r.text)
    r = client.post("/departments/gas/phase", data={"phase": "paper", "reason": "x"}, headers=headers)
    assert r.status_code == 403 and detail in text(r.text), headers
    r = client.post("/exemptions/add", data={"recipient": "r-abc", "reason": "x"}, headers=headers)
    assert r.status_code == 403
    r = client.post(
        "/api/v1/exemptions", json={"recipient_pseudonym": "r-abc", "reason": "x"}, headers=headers
    )
    assert r.status_code == 403
    assert _changes(rollout_db) == before


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://testserver"},  # a browser that does not send Sec-Fetch-Site
        {"Sec-Fetch-Site": "same-origin"},  # one that sends no Origin
        {"Origin": "http://testserver:80", "Sec-Fetch-Site": "same-origin"},
        {
            "Origin": "https://airflow.mechelen.example",
            "X-Forwarded-Host": "airflow.mechelen.example",
            "X-Forwarded-Proto": "https",
        },
        {"Authorization": "Bearer token-of-an-api-client"},  # not a browser: its own credential
    ],
)
def test_a_change_with_a_same_origin_proof_or_its_own_credential_is_accepted(
    rollout_db, admin_without_browser_headers, headers
):
    r = admin_without_browser_headers.put(
        "/api/v1/departments/gas/phase", json={"phase": "paper", "reason": "proof"}, headers=headers
    )
    assert r.status_code == 200, (headers, r.text)
    assert read_state(rollout_db, "gas").phase == "paper"


def test_reading_needs_no_same_origin_proof(admin_without_browser_headers):
    assert admin_without_browser_headers.get("/api/v1/departments").status_code == 200
    assert admin_without_browser_headers.get("/").status_code == 200


@pytest.mark.parametrize("percent", ["²", "１０", "٣", "1_0", "+5", "10.5", "9" * 5000])
def test_the_form_refuses_a_pilot_percentage_that_is_not_ascii_digits(rollout_db, as_admin, percent):
    before = _changes(rollout_db)
    r = as_admin.post(
        "/departments/gas/phase", data={"phase": "pilot", "reason": "x", "pilot_percent": percent}
    )
    assert r.status_code == 400, r.text
    assert "refused, nothing changed: pilot percentage" in text(r.text)
    assert "digits 0-9 only" in text(r.text) and "9" * 100 not in r.text
    assert _changes(rollout_db) == before


@pytest.mark.parametrize("percent", ["10", 10.0, "²", True])
def test_the_api_takes_a_pilot_percentage_as_a_json_integer_only(rollout_db, as_admin, percent):
    before = _changes(rollout_db)
    r = as_admin.put(
        "/api/v1/departments/gas/phase", json={"phase": "pilot", "reason": "x", "pilot_percent": percent}
    )
    assert r.status_code == 422
    assert _changes(rollout_db) == before


def test_a_reason_is_bounded_on_the_page_and_in_the_api(rollout_db, as_admin):
    before = _changes(rollout_db)
    huge = "x" * 1_000_000
    r = as_admin.post("/departments/gas/phase", data={"phase": "paper", "reason": huge})
    assert r.status_code == 400 and "the reason is 1000000 characters long; at most 500" in text(r.text)
    assert huge[:1000] not in r.text
    r = as_admin.put("/api/v1/departments/gas/phase", json={"phase": "paper", "reason": huge})
    assert r.status_code == 422 and "at most 500" in r.json()["detail"]
    r = as_admin.post("/exemptions/add", data={"kind": "citizen", "recipient": NRN, "reason": huge})
    assert r.status_code == 400 and "at most 500" in text(r.text)
    assert _changes(rollout_db) == before


def test_a_change_to_the_phase_a_department_already_has_is_refused(rollout_db, as_admin):
    before = _changes(rollout_db)
    assert read_state(rollout_db, "gas").phase == "live"
    r = as_admin.post(
        "/departments/gas/phase", data={"phase": "live", "reason": "again", "pilot_percent": ""}
    )
    assert r.status_code == 400
    assert "refused, nothing changed: gas is already in phase live" in text(r.text)
    r = as_admin.put("/api/v1/departments/gas/phase", json={"phase": "live", "reason": "again"})
    assert r.status_code == 422 and "already in phase live" in r.json()["detail"]
    assert _changes(rollout_db) == before
    r = as_admin.put(
        "/api/v1/departments/gas/phase",
        json={"phase": "live", "reason": "pilot size kept", "pilot_percent": 5},
    )
    assert r.status_code == 200  # the same phase with another pilot group is a change


def test_the_page_links_each_recent_run_to_its_run_in_airflow_with_times_in_brussels(pg_url, rollout_db):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from fastapi.testclient import TestClient

    from include.dijlepost.admin.app import create_app

    from .conftest import TARIFFS, header_identity

    run_id = "manual__2026-03-02T07:00:00+00:00"
    add_letters(rollout_db, "gas", 1, run=f"letters_gas:{run_id}", status="delivered_ebox", channel="ebox")
    app = create_app(
        # a session in UTC: the page must still show the city's clock
        lambda: psycopg.connect(pg_url, options="-c TimeZone=UTC"),
        header_identity,
        tariffs=lambda: TARIFFS,
        ui_url="http://127.0.0.1:8080/",
    )
    with TestClient(app, headers={"X-Test-User": "carl.auditor:viewer"}) as c:
        page = c.get("/").text
    href = "http://127.0.0.1:8080/dags/letters_gas/runs/manual__2026-03-02T07%3A00%3A00%2B00%3A00"
    assert f'<a href="{href}" title=' in page
    started = rollout_db.execute(
        "SELECT min(claimed_at) FROM letters WHERE claim_run_id = %s", (f"letters_gas:{run_id}",)
    ).fetchone()[0]
    rollout_db.commit()
    shown = started.astimezone(ZoneInfo("Europe/Brussels")).strftime("%Y-%m-%d %H:%M %Z")
    assert shown.endswith(("CET", "CEST")) and f"<td>{shown}</td>" in page
    assert datetime.now(ZoneInfo("UTC")).strftime("%H:%M UTC") not in page
