"""`python -m demo --ui` on a small demo set, then each user's day in its Airflow UI, driven by a real
headless Chromium under that user's own login.

The demo runs as a person runs it (its own embedded PostgreSQL, eBox sandbox, print house and Airflow
processes in a throwaway directory) until it prints the UI's address, one login per user and the
`export` line for the CLI. Then, in a browser set to Europe/Brussels as the city's machines are:
- the data engineer (role op) sees the three wave DAGs, a wave run's grid with its chunk tasks
  labelled "chunk N" and a chunk task's log; clears the delivery tasks of a finished run, and their
  reruns say what they found (already delivered / handed over in try 1) and end in success; the
  Rollout page is read-only for them;
- the administrator changes a phase on Admin -> Rollout, sees it in the history under their own
  name, sees the paper exemptions the demo registered in the exemption history, and follows a
  recent run's link to the run;
- the auditor runs `dijlepost audit trace` with the demo's exports and opens every link it prints:
  each is the task log that wrote the event, the delivery task's log naming the letter; the Rollout
  page is read-only, a change and a trigger are refused.
Screenshots of each user's pages go to var/test-artifacts/demo-ui/ (DIJLEPOST_TEST_ARTIFACTS).
Finally Ctrl-C (SIGINT) stops the demo, and with it every process it started.
Chromium is Debian's package (scripts/system-deps installs it); Playwright only drives it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psutil
import psycopg
import pytest

from tests.support.browser import CHROMIUM
from tests.support.tools import require_tool

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("DIJLEPOST_TEST_ARTIFACTS", ROOT / "var" / "test-artifacts")) / "demo-ui"
WAVES = ["letters_finance", "letters_gas", "letters_economy_housing"]
# 60 letters in chunks of 16: finance (32 letters and the demo's wrong rows) has several chunks.
DEMO_ARGS = ["--letters", "60", "--chunk-size", "16", "--ui"]
UI_LINE = re.compile(r"the Airflow UI: (http://127\.0\.0\.1:\d+)/")
LOGIN_LINE = re.compile(r"^\s+login: (\S+) / (\S+)\s+\(role (\w+);")
READY_LINE = "Ctrl-C stops Airflow"
READY_TIMEOUT_S = 1200
BRUSSELS = ZoneInfo("Europe/Brussels")
USERS = {"engineer": "op", "admin": "admin", "auditor": "viewer"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    """The demo process; its output collected by a thread, so that a full pipe never blocks it."""

    def __init__(self, var: Path, port: int):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DIJLEPOST_"))}
        env["DIJLEPOST_DEMO_DIR"] = str(var)
        self.var = var
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "demo", *DEMO_ARGS, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_ui(self) -> tuple[str, dict[str, tuple[str, str]], str]:
        """(the UI's address, {login: (role, password)}, the `export` line) once the demo printed them."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            lines = list(self.lines)
            if any(READY_LINE in line for line in lines):
                base = next(m[1] for line in lines if (m := UI_LINE.search(line)))
                logins = {m[1]: (m[3], m[2]) for line in lines if (m := LOGIN_LINE.match(line))}
                export = next(line.strip() for line in lines if line.strip().startswith("export "))
                return base, logins, export
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the demo exited with {self.proc.returncode} before the UI was up:\n"
                    + self.output[-5000:]
                )
            time.sleep(1)
        pytest.fail(f"the demo's UI was not up after {READY_TIMEOUT_S}s:\n" + self.output[-5000:])

    def stop(self) -> None:
        """When a test failed before Ctrl-C stopped it: Ctrl-C now (the demo stops the processes it
        started, which have process groups of their own), its own group killed only as a last resort."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def demo_ui():
    require_tool(CHROMIUM, "chromium")
    # Not pytest's tmp_path: pgserver runs PostgreSQL as its own system user, which must reach pgdata.
    var = Path(tempfile.mkdtemp(prefix="dijlepost-demo-ui-", dir="/tmp"))
    var.chmod(0o755)
    demo = Demo(var, _free_port())
    try:
        base, logins, export = demo.wait_for_ui()
        yield demo, base, logins, export
    finally:
        demo.stop()
        shutil.rmtree(var, ignore_errors=True)


@pytest.fixture(scope="module")
def signed_in(demo_ui, browser):
    """`signed_in(user)`: a page signed in on Airflow's own login page with that user's printed login,
    in a browser whose clock is Europe/Brussels. One browser context per user, kept for the module."""
    _, base, logins, _ = demo_ui
    pages = {}

    def open_as(user: str):
        if user not in pages:
            context = browser.new_context(
                viewport={"width": 1400, "height": 1000}, timezone_id="Europe/Brussels"
            )
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{base}/")
            page.wait_for_url("**/auth/login**")
            page.get_by_label("Username").fill(user)
            page.get_by_label("Password").fill(logins[user][1])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/auth/login" not in url)
            pages[user] = page
        return pages[user]

    yield open_as
    for page in pages.values():
        page.context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def token(demo_ui, user: str) -> str:
    _, base, logins, _ = demo_ui
    answer = httpx.post(
        f"{base}/auth/token", json={"username": user, "password": logins[user][1]}, timeout=30
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def api(demo_ui, user: str, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(
        method,
        f"{demo_ui[1]}/api/v2{path}",
        headers={"Authorization": f"Bearer {token(demo_ui, user)}", **kwargs.pop("headers", {})},
        timeout=60,
        **kwargs,
    )


def demo_run(demo_ui, dag_id: str) -> dict:
    """The run the demo triggered, read through the REST API with the auditor's login."""
    runs = api(demo_ui, "auditor", "GET", f"/dags/{dag_id}/dagRuns").json()["dag_runs"]
    assert [r["state"] for r in runs] == ["success"], runs
    return runs[0]


def exported(demo_ui) -> dict:
    """The variables of the demo's `export` line, as a shell sets them."""
    out = subprocess.run(
        ["bash", "-c", demo_ui[3] + " && env"], capture_output=True, text=True, check=True
    ).stdout
    return dict(
        line.split("=", 1) for line in out.splitlines() if line.startswith(("DIJLEPOST_", "AIRFLOW__"))
    )


def test_the_demo_ran_everything_and_printed_one_login_per_user_and_the_cli_exports(demo_ui):
    demo, base, logins, _ = demo_ui
    for dag_id in [*WAVES, "print_house_acknowledgements", "letters_evaluation"]:
        assert any(line.strip().startswith(f"{dag_id}: success in ") for line in demo.lines), demo.output
    assert {user: role for user, (role, _) in logins.items()} == USERS
    assert all(len(password) >= 12 for _, password in logins.values())
    assert len({password for _, password in logins.values()}) == 3
    assert "only the runs the demo triggers" in demo.output  # why "Next Run" passes without a run
    # the forced failure's alert, as the demo's mail server received it
    assert "print_house_acknowledgements: failed (the file is refused" in demo.output
    assert (
        "Subject: dijlepost alert: print_house_acknowledgements / check_unacknowledged_batches failed"
        in demo.output
    )
    assert "To: ict-dijlepost@mechelen.example" in demo.output
    # the waves' progress while they ran, from the outbox
    assert re.search(r"letters_finance: \d+/\d+ chunks done; \d+ delivered to the eBox", demo.output)
    env = exported(demo_ui)
    assert env["AIRFLOW__API__BASE_URL"] == base and len(env["DIJLEPOST_PSEUDONYM_KEY"]) == 64
    with psycopg.connect(env["DIJLEPOST_DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM letters").fetchone()[0] > 0
        # the demo's paper exemptions went through the rollout code: each is in the history
        exempt, history = conn.execute(
            "SELECT (SELECT count(*) FROM paper_exemptions), (SELECT count(*) FROM paper_exemption_history)"
        ).fetchone()
        assert exempt > 0 and history == exempt
    assert httpx.get(f"{base}/api/v2/monitor/health", timeout=10).status_code == 200


# --------------------------------------------------------------------------- the data engineer


def test_the_engineer_sees_the_three_waves_and_their_times_in_brussels(signed_in, demo_ui):
    page = signed_in("engineer")
    page.goto(f"{demo_ui[1]}/dags")
    for dag_id in WAVES:
        page.get_by_role("link", name=dag_id, exact=True).wait_for()
    shot(page, "engineer-dags")
    run = demo_run(demo_ui, "letters_finance")
    started = datetime.fromisoformat(run["start_date"])
    page.goto(f"{demo_ui[1]}/dags/letters_finance/runs/{run['dag_run_id']}/details")
    page.get_by_text(started.astimezone(BRUSSELS).strftime("%Y-%m-%d %H:%M:%S")).first.wait_for()
    assert started.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S") not in page.inner_text("body")
    shot(page, "engineer-run-details-brussels")


def test_a_wave_s_grid_shows_the_chunk_tasks_labelled_chunk_n(signed_in, demo_ui):
    page = signed_in("engineer")
    base = demo_ui[1]
    run_id = demo_run(demo_ui, "letters_finance")["dag_run_id"]
    page.goto(f"{base}/dags/letters_finance/runs/{run_id}")
    page.get_by_text("chunk [ ]", exact=True).wait_for()
    # the mapped task group opens in the grid to the tasks each chunk goes through
    page.locator("#task-chunk [aria-label='Toggle group']").click()
    for task in (
        "decide_channels",
        "render_letters",
        "choose_channels",
        "deliver_to_ebox",
        "hand_over_to_print",
    ):
        page.locator(f"[data-task-id='chunk.{task}']").first.wait_for()
    shot(page, "engineer-grid")
    page.goto(f"{base}/dags/letters_finance/runs/{run_id}/tasks/chunk.render_letters/mapped")
    labels = page.get_by_role("link", name=re.compile(r"^chunk \d+$"))
    labels.first.wait_for()
    texts = sorted(labels.all_inner_texts(), key=lambda t: int(t.split()[1]))
    assert len(texts) >= 2 and texts == [f"chunk {i}" for i in range(len(texts))]


def test_a_chunk_task_s_log_opens(signed_in, demo_ui):
    page = signed_in("engineer")
    base = demo_ui[1]
    run_id = demo_run(demo_ui, "letters_finance")["dag_run_id"]
    page.goto(f"{base}/dags/letters_finance/runs/{run_id}/tasks/chunk.render_letters/mapped")
    page.get_by_role("link", name="chunk 0", exact=True).click()
    page.wait_for_url("**/tasks/chunk.render_letters/mapped/0**")
    # the task's own log line, as the render task wrote it
    line = page.get_by_text(re.compile(r"event=letters_rendered department=finance chunk=0 rendered=\d+"))
    line.first.wait_for()
    shot(page, "engineer-task-log")


def rollout_page(page, base: str):
    page.goto(f"{base}/")
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name="Rollout").click()
    page.wait_for_url("**/plugin/dijlepost-rollout")
    frame = page.frame_locator("iframe")
    frame.locator("#phase-finance").wait_for()
    return frame


@pytest.mark.parametrize("user", ["engineer", "auditor"])
def test_the_rollout_page_is_read_only_for_the_engineer_and_the_auditor(signed_in, demo_ui, user):
    page = signed_in(user)
    frame = rollout_page(page, demo_ui[1])
    assert frame.locator("#user").inner_text() == user
    assert "read-only" in frame.locator("#access").inner_text()
    assert frame.locator("form").count() == 0
    phases = {d: frame.locator(f"#phase-{d}").inner_text() for d in ("finance", "gas", "economy_housing")}
    assert phases["finance"] == "live" and phases["gas"] == "pilot"
    shot(page, f"{user}-rollout-read-only")
    forged = page.request.post(
        f"{demo_ui[1]}/dijlepost-rollout/departments/gas/phase", form={"phase": "paper", "reason": "mine"}
    )
    assert forged.status == 403 and "only administrators" in forged.text()


def test_the_auditor_may_not_trigger_a_wave(demo_ui):
    answer = api(demo_ui, "auditor", "POST", "/dags/letters_finance/dagRuns", json={"logical_date": None})
    assert answer.status_code == 403, answer.text


# --------------------------------------------------------------------------- the administrator


def test_the_administrator_changes_a_phase_under_their_own_name(signed_in, demo_ui):
    page = signed_in("admin")
    frame = rollout_page(page, demo_ui[1])
    assert frame.locator("#user").inner_text() == "admin"
    assert frame.locator("#phase-economy_housing").inner_text() == "shadow"
    # the paper exemptions the demo registered are in the exemption history, by whom and why
    history = frame.get_by_role("table", name="exemption history")
    assert history.locator("tr").count() > 1 and "digipunt Mechelen" in history.inner_text()
    frame.locator("#phase-select-economy_housing").select_option("paper")
    frame.locator("#reason-economy_housing").fill("back to paper while the templates are reviewed")
    frame.locator("#submit-economy_housing").click()
    frame.locator("#notice").wait_for()
    assert frame.locator("#phase-economy_housing").inner_text() == "paper"
    first_row = frame.locator("#history tr").nth(1).inner_text()
    assert "admin" in first_row and "back to paper while the templates are reviewed" in first_row
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d CES?T", first_row), first_row  # the city's clock
    shot(page, "admin-rollout-changed")


def test_the_rollout_page_links_each_recent_run_to_the_run(signed_in, demo_ui):
    """The Rollout view is a sandboxed frame of the Airflow UI (no top-level navigation): the run's link
    opens the run in that frame."""
    page = signed_in("admin")
    frame = rollout_page(page, demo_ui[1])
    run_id = demo_run(demo_ui, "letters_finance")["dag_run_id"]
    link = frame.locator("#dept-finance td a").first
    assert link.inner_text() == f"letters_finance:{run_id}"
    assert link.get_attribute("href") == f"{demo_ui[1]}/dags/letters_finance/runs/{run_id}"
    link.click()
    frame.get_by_text("chunk [ ]", exact=True).wait_for()  # the run's grid, not a 404
    assert any(f.url.endswith(f"/dags/letters_finance/runs/{run_id}") for f in page.frames)
    shot(page, "admin-run-from-rollout-page")


# --------------------------------------------------------------------------- the auditor


def audit_trace(demo_ui, letter_id: str) -> str:
    """`dijlepost audit trace` in a shell with the demo's printed export line, as the auditor runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DIJLEPOST_"))}
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f"{demo_ui[3]} && {shlex.quote(sys.executable)} -m include.dijlepost.cli audit trace {letter_id}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize(
    ("what", "where"),
    [("ebox", "status = 'delivered_ebox'"), ("paper", "print_status = 'posted'")],
)
def test_the_auditor_follows_every_link_of_an_audit_trace_to_its_task_log(signed_in, demo_ui, what, where):
    with psycopg.connect(exported(demo_ui)["DIJLEPOST_DATABASE_URL"]) as conn:
        (letter_id,) = conn.execute(
            f"SELECT letter_id FROM letters WHERE {where} ORDER BY letter_id LIMIT 1"
        ).fetchone()
    out = audit_trace(demo_ui, letter_id)
    links = re.findall(r"^\s+log (\S+)$", out, re.MULTILINE)
    assert len(links) >= 4 and all(link.startswith(f"{demo_ui[1]}/dags/") for link in links), out
    assert re.search(r"\d\d:\d\d:\d\d\.\d+ CES?T ", out), out  # times in Europe/Brussels
    page = signed_in("auditor")
    for n, link in enumerate(links):
        page.goto(link)
        page.get_by_text(re.compile(r"event=\w+")).first.wait_for()
        if "/tasks/chunk.deliver_to_ebox/" in link or "/tasks/chunk.hand_over_to_print/" in link:
            # the delivery task names the letters it delivered: the auditor finds this one
            page.get_by_text(re.compile(rf"letters=[\w,-]*\b{re.escape(letter_id)}\b")).first.wait_for()
            shot(page, f"auditor-{what}-delivery-log")
        if "/dags/print_house_acknowledgements/" in link:
            page.get_by_text(re.compile(r"event=print_house_files_collected")).first.wait_for()
            shot(page, "auditor-print-house-acknowledgements-log")
        assert "404" not in page.title(), (n, link)
    assert ("deliver_to_ebox" if what == "ebox" else "print_house_acknowledgements") in " ".join(links)


# --------------------------------------------------------------------------- a rerun


def test_the_engineer_clears_the_delivery_tasks_of_a_finished_run_and_each_rerun_says_what_it_found(
    signed_in, demo_ui
):
    """Cleared in a finished run (as the UI's Clear does), deliver_to_ebox and hand_over_to_print run a
    second try: nothing is sent again, each says what try 1 did, and each ends in success."""
    run_id = demo_run(demo_ui, "letters_finance")["dag_run_id"]
    tis = api(
        demo_ui,
        "engineer",
        "GET",
        f"/dags/letters_finance/dagRuns/{run_id}/taskInstances",
        params={"limit": 500},
    ).json()["task_instances"]
    chosen = {}
    for task in ("chunk.deliver_to_ebox", "chunk.hand_over_to_print"):
        chosen[task] = next(t["map_index"] for t in tis if t["task_id"] == task and t["state"] == "success")
    answer = api(
        demo_ui,
        "engineer",
        "POST",
        "/dags/letters_finance/clearTaskInstances",
        json={
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [[task, index] for task, index in chosen.items()],
            "only_failed": False,
            "include_downstream": False,
            "reset_dag_runs": True,
        },
    )
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 600
    while True:
        states = {
            task: api(
                demo_ui,
                "engineer",
                "GET",
                f"/dags/letters_finance/dagRuns/{run_id}/taskInstances/{task}/{index}",
            ).json()
            for task, index in chosen.items()
        }
        if all(
            s["try_number"] == 2 and s["state"] in ("success", "failed", "skipped") for s in states.values()
        ):
            break
        assert time.monotonic() < deadline, states
        time.sleep(2)
    assert {task: s["state"] for task, s in states.items()} == dict.fromkeys(chosen, "success")
    found = {
        "chunk.deliver_to_ebox": r"event=ebox_delivered_earlier .*already delivered to the eBox in try 1: \d+ letters?",
        "chunk.hand_over_to_print": r"event=print_handed_over_earlier .*already handed over in try 1: batch finance-\w+-[0-9a-f]+, \d+ letters?",
    }
    page = signed_in("engineer")
    for task, index in chosen.items():
        page.goto(f"{demo_ui[1]}/dags/letters_finance/runs/{run_id}/tasks/{task}/mapped/{index}?try_number=2")
        page.get_by_text(re.compile(found[task])).first.wait_for()
        shot(page, f"engineer-rerun-{task.split('.')[1]}")
    # nothing was sent twice: the run's letters are where try 1 left them, the run succeeded again
    deadline = time.monotonic() + 300
    while demo_run_state(demo_ui, run_id) != "success":
        assert time.monotonic() < deadline
        time.sleep(2)


def demo_run_state(demo_ui, run_id: str) -> str:
    return api(demo_ui, "engineer", "GET", f"/dags/letters_finance/dagRuns/{run_id}").json()["state"]


def test_ctrl_c_stops_the_demo_and_everything_it_started(demo_ui):
    """Last in the module: it ends the demo the other tests looked at."""
    demo, base, _, _ = demo_ui
    os.kill(demo.proc.pid, signal.SIGINT)
    assert demo.proc.wait(timeout=120) == 0, demo.output[-3000:]
    tail = demo.output.split("Ctrl-C stops", 1)[1]
    assert "stopping Airflow, the sandboxes and PostgreSQL" in tail
    # nothing but the demo's own lines after the UI line: no tracebacks, no pgserver chatter
    assert "Traceback" not in tail and "pgserver" not in tail and "[info" not in tail, tail
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/api/v2/monitor/health", timeout=5)
    assert not (demo.var / "pgdata" / "postmaster.pid").exists(), "the embedded PostgreSQL still runs"
    with pytest.raises(ProcessLookupError):
        os.killpg(demo.proc.pid, 0)
    # the Airflow processes (each in a process group of its own) and PostgreSQL are gone too
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get("DIJLEPOST_DEMO_DIR") == str(demo.var) or str(demo.var) in " ".join(
                proc.info["cmdline"] or []
            ):
                left.append(proc.info)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    assert left == []
