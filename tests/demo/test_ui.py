"""`python -m demo --ui` on a small demo set, then its Airflow UI driven by a real headless Chromium.

The demo runs as a person runs it (its own embedded PostgreSQL, eBox sandbox, print house and Airflow
processes in a throwaway directory) until it prints the UI's address and login. Then, as a data
engineer, an administrator and an auditor would, the browser signs in on Airflow's login page and
sees: the three wave DAGs in the DAG list; in a wave run's grid the `chunk` task group with its tasks,
a chunk task's instances labelled "chunk N"; a chunk task's log; Admin -> Rollout with the three
phases the demo set. Finally Ctrl-C (SIGINT) stops the demo, and with it every process it started.
Chromium is Debian's package (scripts/system-deps installs it); Playwright only drives it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.browser import CHROMIUM
from tests.support.tools import require_tool

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
WAVES = ["letters_finance", "letters_gas", "letters_economy_housing"]
# 60 letters in chunks of 16: finance (32 letters and the demo's wrong rows) has several chunks.
DEMO_ARGS = ["--letters", "60", "--chunk-size", "16", "--ui"]
UI_LINE = re.compile(r"the Airflow UI: (http://127\.0\.0\.1:\d+)/\s+login: (\S+) / (\S+)")
READY_TIMEOUT_S = 1200


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

    def wait_for_ui(self) -> tuple[str, str, str]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.lines:
                if match := UI_LINE.search(line):
                    return match.groups()
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
        base, user, password = demo.wait_for_ui()
        yield demo, base, user, password
    finally:
        demo.stop()
        shutil.rmtree(var, ignore_errors=True)


@pytest.fixture(scope="module")
def page(demo_ui, browser):
    """Signed in on Airflow's own login page with the login the demo printed."""
    _, base, user, password = demo_ui
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{base}/")
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    yield page
    context.close()


def demo_run_id(demo_ui, dag_id: str) -> str:
    """The run the demo triggered, read through the REST API with the printed login."""
    _, base, user, password = demo_ui
    token = httpx.post(
        f"{base}/auth/token", json={"username": user, "password": password}, timeout=30
    ).json()["access_token"]
    runs = httpx.get(
        f"{base}/api/v2/dags/{dag_id}/dagRuns", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).json()["dag_runs"]
    assert [r["state"] for r in runs] == ["success"], runs
    return runs[0]["dag_run_id"]


def test_the_demo_ran_the_three_waves_and_printed_a_login(demo_ui):
    demo, base, user, password = demo_ui
    for dag_id in WAVES:
        assert any(line.strip().startswith(f"{dag_id}: success in ") for line in demo.lines), demo.output
    assert user == "admin" and len(password) >= 12
    assert httpx.get(f"{base}/api/v2/monitor/health", timeout=10).status_code == 200


def test_the_dag_list_shows_the_three_waves(page, demo_ui):
    page.goto(f"{demo_ui[1]}/dags")
    for dag_id in WAVES:
        page.get_by_role("link", name=dag_id, exact=True).wait_for()


def test_a_wave_s_grid_shows_the_chunk_tasks_labelled_chunk_n(page, demo_ui):
    base = demo_ui[1]
    run_id = demo_run_id(demo_ui, "letters_finance")
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
    page.goto(f"{base}/dags/letters_finance/runs/{run_id}/tasks/chunk.render_letters/mapped")
    labels = page.get_by_role("link", name=re.compile(r"^chunk \d+$"))
    labels.first.wait_for()
    texts = sorted(labels.all_inner_texts(), key=lambda t: int(t.split()[1]))
    assert len(texts) >= 2 and texts == [f"chunk {i}" for i in range(len(texts))]


def test_a_chunk_task_s_log_opens(page, demo_ui):
    base = demo_ui[1]
    run_id = demo_run_id(demo_ui, "letters_finance")
    page.goto(f"{base}/dags/letters_finance/runs/{run_id}/tasks/chunk.render_letters/mapped")
    page.get_by_role("link", name="chunk 0", exact=True).click()
    page.wait_for_url("**/tasks/chunk.render_letters/mapped/0**")
    # the task's own log line, as the render task wrote it
    line = page.get_by_text(re.compile(r"event=letters_rendered department=finance chunk=0 rendered=\d+"))
    line.first.wait_for()


def test_the_rollout_page_shows_the_three_phases(page, demo_ui):
    page.goto(f"{demo_ui[1]}/")
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name="Rollout").click()
    page.wait_for_url("**/plugin/dijlepost-rollout")
    frame = page.frame_locator("iframe")
    frame.locator("#phase-finance").wait_for()
    phases = {d: frame.locator(f"#phase-{d}").inner_text() for d in ("finance", "gas", "economy_housing")}
    assert phases == {"finance": "live", "gas": "pilot", "economy_housing": "shadow"}


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
