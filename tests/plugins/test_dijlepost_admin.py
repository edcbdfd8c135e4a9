"""The admin page inside a real Airflow 3 API server, driven by a real headless Chromium.

A fresh Airflow metadata database on the test PostgreSQL, a throwaway AIRFLOW_HOME, SimpleAuthManager
with an administrator and a viewer (known passwords), the plugin loaded from `plugins/`, the dijlepost
database as the `dijlepost_db` Connection. The browser signs in through Airflow's own login page,
opens the page through the Admin menu (the plugin's navigation entry, shown in the UI's iframe), and:
- the administrator changes a phase with a reason and sees it in the history;
- the viewer sees the page without forms, and a forged POST with the viewer's session is refused.
Chromium is Debian's package (`.ci/run` installs it); Playwright only drives it, it downloads nothing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.browser import CHROMIUM
from tests.support.database import SERVER
from tests.support.tools import require_tool

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
USERS = {"ada": ("admin", "ada-" + uuid.uuid4().hex[:12]), "vik": ("viewer", "vik-" + uuid.uuid4().hex[:12])}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def airflow_api(pg_url, tmp_path_factory):
    """A real `airflow api-server` with the plugin; yields its base URL."""
    require_tool(CHROMIUM, "chromium")
    home = tmp_path_factory.mktemp("airflow-admin-page")
    (home / "dags").mkdir()
    meta = f"dijlepost_airflow_admin_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{meta}"')
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({name: pw for name, (_, pw) in USERS.items()}))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": SERVER.replace("postgresql://", "postgresql+psycopg://")
            + f"/{meta}",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{n}:{role}" for n, (role, _) in USERS.items()
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW_CONN_DIJLEPOST_DB": pg_url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
    )
    log = (home / "api-server.log").open("w")
    server = None
    try:
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            check=True,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=180,
        )
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow",
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/api/v2/version", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"airflow api-server did not start; see {home / 'api-server.log'}:\n"
                    + (home / "api-server.log").read_text()[-3000:]
                )
            time.sleep(0.3)
        yield base
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and its own workers, nothing else
            try:
                server.wait(timeout=2)  # a throwaway server: no need to wait for a graceful drain
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{meta}" WITH (FORCE)')


@pytest.fixture
def phases(db):
    """Phases as the shared `db` fixture leaves them (all live), plus the 0006 columns reset."""
    db.execute("UPDATE rollout_phases SET pilot_percent = 0")
    db.execute("TRUNCATE paper_exemption_history RESTART IDENTITY")
    db.commit()

    def read():
        rows = db.execute(
            "SELECT department, phase, changed_by, reason FROM rollout_phases ORDER BY department"
        ).fetchall()
        hist = db.execute(
            "SELECT department, from_phase, to_phase, changed_by, reason FROM rollout_history ORDER BY id"
        ).fetchall()
        db.commit()
        return rows, hist

    return read


def sign_in_and_open_the_page(browser, base: str, user: str):
    """Sign in on Airflow's login page, then open Admin > Rollout; returns (page, the page's frame)."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{base}/")
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(USERS[user][1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name="Rollout").click()
    page.wait_for_url("**/plugin/dijlepost-rollout")
    frame = page.frame_locator("iframe")
    frame.locator("#phase-finance").wait_for()
    return page, frame


def test_an_administrator_changes_a_phase_in_the_airflow_ui_and_sees_it_in_the_history(
    airflow_api, browser, phases
):
    page, frame = sign_in_and_open_the_page(browser, airflow_api, "ada")
    try:
        assert frame.locator("#user").inner_text() == "ada"
        assert frame.locator("#phase-gas").inner_text() == "live"

        # a refused change first: no reason given (the browser's own check is bypassed on purpose)
        frame.locator("#reason-gas").evaluate("el => el.removeAttribute('required')")
        frame.locator("#phase-select-gas").select_option("shadow")
        frame.locator("#submit-gas").click()
        assert "reason is required" in frame.locator("#error").inner_text()
        assert phases()[1] == []

        frame.locator("#phase-select-gas").select_option("shadow")
        frame.locator("#reason-gas").fill("two weeks of shadow before the pilot")
        frame.locator("#submit-gas").click()
        frame.locator("#notice").wait_for()
        assert frame.locator("#phase-gas").inner_text() == "shadow"
        first_row = frame.locator("#history tr").nth(1).inner_text()
        assert all(
            part in first_row
            for part in ("gas", "ada", "live", "shadow", "two weeks of shadow before the pilot")
        )
        assert frame.locator("#shadow-gas").is_visible()  # the shadow report appears
    finally:
        page.context.close()
    rows, hist = phases()
    assert ("gas", "shadow", "ada", "two weeks of shadow before the pilot") in rows
    assert hist == [("gas", "live", "shadow", "ada", "two weeks of shadow before the pilot")]


def test_a_viewer_sees_the_page_read_only_and_cannot_change_anything(airflow_api, browser, phases):
    before = phases()
    page, frame = sign_in_and_open_the_page(browser, airflow_api, "vik")
    try:
        assert frame.locator("#user").inner_text() == "vik"
        assert "read-only" in frame.locator("#access").inner_text()
        assert frame.locator("form").count() == 0
        assert frame.locator("#phase-gas").inner_text() == "live"
        # the viewer's own session (cookie) forging what the form would send: refused server-side
        forged = page.request.post(
            f"{airflow_api}/dijlepost-rollout/departments/gas/phase",
            form={"phase": "paper", "reason": "sneaky"},
        )
        assert forged.status == 403 and "only administrators" in forged.text()
        api = page.request.put(
            f"{airflow_api}/dijlepost-rollout/api/v1/departments/gas/phase",
            data={"phase": "paper", "reason": "sneaky"},
        )
        assert api.status == 403
        exempt = page.request.post(
            f"{airflow_api}/dijlepost-rollout/api/v1/exemptions",
            data={"recipient_pseudonym": "r-abc", "reason": "sneaky"},
        )
        assert exempt.status == 403
    finally:
        page.context.close()
    assert phases() == before


def test_the_api_needs_airflow_authentication_and_takes_a_bearer_token(airflow_api, phases):
    with httpx.Client(base_url=airflow_api, timeout=10) as c:
        assert c.get("/dijlepost-rollout/api/v1/departments").status_code == 401
        assert c.get(
            "/dijlepost-rollout/api/v1/departments", headers={"Authorization": "Bearer not-a-token"}
        ).status_code in (401, 403)
        tokens = {
            u: c.post("/auth/token", json={"username": u, "password": USERS[u][1]}).json()["access_token"]
            for u in USERS
        }
        me = c.get(
            "/dijlepost-rollout/api/v1/me", headers={"Authorization": f"Bearer {tokens['vik']}"}
        ).json()
        assert me == {"name": "vik", "is_admin": False}
        r = c.put(
            "/dijlepost-rollout/api/v1/departments/finance/phase",
            headers={"Authorization": f"Bearer {tokens['ada']}"},
            json={"phase": "pilot", "reason": "ten percent first", "pilot_percent": 10},
        )
        assert r.status_code == 200, r.text
        r = c.put(
            "/dijlepost-rollout/api/v1/departments/finance/phase",
            headers={"Authorization": f"Bearer {tokens['ada']}"},
            json={"phase": "pilot", "reason": "too many", "pilot_percent": 150},
        )
        assert r.status_code == 422 and "outside 0..100" in r.json()["detail"]
    rows, hist = phases()
    assert ("finance", "pilot", "ada", "ten percent first") in rows
    assert hist == [("finance", "live", "pilot", "ada", "ten percent first")]


def test_a_page_of_another_origin_cannot_post_with_the_administrators_session(airflow_api, browser, phases):
    """Another web page on the same host (another port: the same site, so the browser sends the session
    cookie) auto-submits the phase form: refused by the same-origin proof. So are posts with the
    session that say `Origin: null` or carry no origin at all. Nothing changes."""
    before = phases()
    page, _ = sign_in_and_open_the_page(browser, airflow_api, "ada")
    evil = f"http://127.0.0.1:{_free_port()}"
    target = f"{airflow_api}/dijlepost-rollout/departments/gas/phase"
    form = (
        f'<form id="f" method="post" action="{target}"><input name="phase" value="paper">'
        '<input name="reason" value="forged"></form><script>document.getElementById("f").submit()</script>'
    )
    try:
        page.route(f"{evil}/**", lambda route: route.fulfill(content_type="text/html", body=form))
        with page.expect_response(target) as answer:
            page.goto(f"{evil}/offer")
        response = answer.value
        assert response.request.headers.get("origin") == evil
        assert response.status == 403 and "cross-" in response.text()
        for headers, detail in (({"Origin": "null"}, "not a web page of this site"), ({}, "no proof")):
            sent = page.request.post(target, form={"phase": "paper", "reason": "scripted"}, headers=headers)
            assert sent.status == 403 and detail in sent.text(), headers
    finally:
        page.context.close()
    assert phases() == before
