"""Scale: a whole wave of N letters through a real Airflow scheduler and LocalExecutor.

    .venv/bin/python -m benchmarks.scale --letters 100000
    .venv/bin/python -m benchmarks.scale --series 10000,30000,100000
    .venv/bin/python -m benchmarks.scale --letters 100000 --repeat 3   # the median ratio of three runs

For each N, on this machine:
1. a fresh outbox database on the PostgreSQL server (DIJLEPOST_BENCH_PG, default 127.0.0.1:5432),
   migrated, seeded by COPY with N letters from the demo generator (finance 45 %, GAS 30 %, Economy &
   Housing 25 %; nl/fr/de; citizens and companies; about half of the recipients with an active eBox,
   a few NO_DIGITAL_USER), all three departments `live`;
2. the eBox sandbox (HTTPS) and the print house's SFTP server, each in its own process so that
   neither competes with this driver for a GIL; recipients registered through the sandbox's admin API;
3. Airflow as deployed: api-server, dag-processor and scheduler with LocalExecutor, parallelism =
   cores, a fresh metadata database (`sandboxes/airflow_cluster.py`); the three wave DAGs are
   triggered at once with `batch_size` = their letters and `chunk_size` (default 500);
4. after the runs, counted where the letters arrived: every letter must be in a final state, the eBox
   must hold one message for each letter delivered there and none for any other (matched by the
   PDF's SHA-256 in the sandbox's store, not by Idempotency-Key), and the print house, which takes
   the batches out of its inbox and prints them (`sandboxes.printhouse.simulator`), must have printed
   each letter handed to it exactly once (its own print log); the benchmark exits 1 otherwise;
5. the bare rendering loop: `LetterRenderer().render` over the same letters (or an evenly spread
   sample with `--bare-letters`: every k-th letter, so the wave's mix), one process per core, half
   of them before the waves and half after (a drifting machine weighs on both sides alike).

Reports wall time (trigger to the last run's end), letters/s end to end, letters/s of each stage
(letters the stage handled / time from its first task's start to its last task's end, and per
task-second), peak RSS of the largest task process (sampled from outside every 0.5 s, `PeakRss`), the
Airflow overhead (time within the runs when no task of the wave was running) and the ratio end-to-end
/ bare rendering throughput. A JSON copy of every result goes
to <workdir>/result-<N>.json (result-<N>-run<K>.json with `--repeat`). Never part of `make test`.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cpu_accounting import TASK_TITLE, CpuAccounting, product_and_stand_ins  # noqa: E402
from demo import dataset  # noqa: E402
from include.dijlepost import clock  # noqa: E402
from include.dijlepost.db.logins import ensure_login  # noqa: E402
from include.dijlepost.db.migrate import migrate  # noqa: E402
from include.dijlepost.intake import COMPARED  # noqa: E402
from include.dijlepost.outbox import LETTER_COLUMNS  # noqa: E402
from include.dijlepost.rollout import set_phase  # noqa: E402
from sandboxes.airflow_cluster import POOLS, AirflowCluster  # noqa: E402
from sandboxes.services import Service, start_ebox_sandbox  # noqa: E402
from sandboxes.services import start_printhouse as start_printhouse_sftp  # noqa: E402

PG_SERVER = os.environ.get("DIJLEPOST_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
MIX = {"finance": 0.45, "gas": 0.30, "economy_housing": 0.25}
DAGS = {"finance": "letters_finance", "gas": "letters_gas", "economy_housing": "letters_economy_housing"}
FINAL = ("delivered_ebox", "handed_to_print", "quarantined")
DELIVERY_SLOTS = 2


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


# -- services ------------------------------------------------------------------------------------
def start_ebox(work: Path) -> tuple[Service, httpx.Client, dict]:
    return start_ebox_sandbox(
        work / "ebox-sandbox", work / "ebox-sandbox.log", args=("--token-lifetime", "3600")
    )


def start_printhouse(work: Path, port: int = 0) -> tuple[Service, Path, dict]:
    directory = work / "printhouse"
    service, connection = start_printhouse_sftp(directory, work / "printhouse.log", port=port)
    return service, directory, connection


PIPELINE_LOGIN = "dijlepost_bench_pipeline"


def _pg_connection(url: str) -> dict:
    """The Airflow Connection of the wave runs: the pipeline's own login (member of dijlepost_pipeline
    only, as in production; the DAGs refuse a superuser), created on the server when missing (trust
    auth on the benchmark's server, so no password)."""
    p = urlsplit(url)
    with psycopg.connect(url) as admin:
        ensure_login(admin, PIPELINE_LOGIN, "dijlepost_pipeline")
    return {
        "conn_type": "postgres",
        "host": p.hostname,
        "port": p.port or 5432,
        "login": PIPELINE_LOGIN,
        "password": "",
        "schema": p.path.lstrip("/"),
    }


# -- seeding -------------------------------------------------------------------------------------
def production_airflow_settings(path: Path = ROOT / "astro-config.yaml") -> dict[str, str]:
    """The deployment's `AIRFLOW__SCHEDULER__*` and `AIRFLOW__DAG_PROCESSOR__*` environment variables."""
    import yaml

    variables = yaml.safe_load(path.read_text())["deployment"]["environment_variables"]
    return {
        v["key"]: str(v["value"])
        for v in variables
        if v["key"].startswith(("AIRFLOW__SCHEDULER__", "AIRFLOW__DAG_PROCESSOR__"))
    }


def mix_for(n: int) -> dict[str, int]:
    counts = {d: int(n * share) for d, share in MIX.items()}
    counts["finance"] += n - sum(counts.values())
    return counts


def copy_letters(conn, letters: list[dict]) -> None:
    """Put generated letters into the outbox with COPY (pending, as intake would leave them)."""
    cols = ("letter_id", *COMPARED)
    with conn.cursor() as cur, cur.copy(f"COPY letters ({', '.join(cols)}) FROM STDIN") as copy:
        for r in letters:
            copy.write_row([json.dumps(r["payload"]) if c == "payload" else r[c] for c in cols])
    conn.commit()


def seed(url: str, ebox: httpx.Client, n: int, seed_no: int) -> dict[str, int]:
    mix = mix_for(n)
    data = dataset.build(
        seed=seed_no, mix=mix, today=clock.today(), prefix="S", ebox_share=0.5, mistakes=False
    )
    with psycopg.connect(url) as conn:
        copy_letters(conn, data.letters)
        for department in mix:
            set_phase(conn, department, "live", "scale benchmark", "benchmarks.scale")
    recipients = [
        {
            "kind": k,
            "id": rid,
            "active": True,
            "exclusively_ebox": excl,
            "no_digital_user": (k, rid) in data.no_digital_user,
        }
        for (k, rid), excl in data.ebox_active.items()
    ]
    for i in range(0, len(recipients), 5000):
        ebox.post("/_sandbox/recipients", json=recipients[i : i + 5000]).raise_for_status()
    return mix


# -- the bare rendering loop ---------------------------------------------------------------------
_renderer = None


def _init_renderer() -> None:
    global _renderer
    from include.dijlepost.rendering import LetterRenderer

    _renderer = LetterRenderer()


def _render_many(letters: list[dict]) -> int:
    for letter in letters:
        _renderer.render(letter)
    return len(letters)


def bare_sample(url: str, size: int, half: int) -> list[dict]:
    """Half `half` (0 or 1) of an evenly spread sample of `size` letters: every k-th letter in id order,
    so that the sample has the wave's mix of departments and letter types (the letters are seeded
    department by department, and they do not all cost the same to render), then every other one of
    those, so that the two halves have the same mix too."""
    with psycopg.connect(url) as conn:
        total = conn.execute("SELECT count(*) FROM letters WHERE status <> 'quarantined'").fetchone()[0]
        step = max(1, total // max(size, 1))
        cur = conn.execute(
            f"SELECT {LETTER_COLUMNS} FROM (SELECT *, row_number() OVER (ORDER BY id) - 1 AS nr FROM letters "
            "WHERE status <> 'quarantined') l WHERE nr %% %s = 0 AND nr / %s < %s AND (nr / %s) %% 2 = %s "
            "ORDER BY id",
            (step, step, size, step, half),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def bare_render(url: str, processes: int, size: int, half: int) -> tuple[int, float]:
    letters = bare_sample(url, size, half)
    chunks = [letters[i : i + 200] for i in range(0, len(letters), 200)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes, initializer=_init_renderer) as pool:
        t0 = time.monotonic()
        done = sum(pool.imap_unordered(_render_many, chunks))
        elapsed = time.monotonic() - t0
    return done, elapsed


# -- faults at scale -----------------------------------------------------------------------------
EBOX_FAULTS = {"error_rate": 0.05, "error_status": 503, "timeout_rate": 0.01, "timeout_delay_seconds": 8}
EBOX_CLIENT_TIMEOUT_S = 5


class EboxOutage(threading.Thread):
    """An eBox outage in the middle of the wave: once a chunk's eBox delivery has been running for a
    few seconds, every call to the eBox (token endpoint included) answers 503 for `seconds`; the other
    eBox faults go on around it. Afterwards it reads how many calls the sandbox answered with the
    outage, and how the letters' quarantine reasons look."""

    def __init__(self, cluster, run_ids: list[str], ebox: httpx.Client, seconds: float, seed: int):
        super().__init__(name="ebox-outage", daemon=True)
        self.cluster, self.run_ids, self.ebox, self.seconds, self.seed = cluster, run_ids, ebox, seconds, seed
        self.stop_event = threading.Event()
        self.started_at: float | None = None
        self.detail: dict = {}

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            running = self.cluster.query(
                "SELECT count(*) FROM task_instance WHERE run_id = ANY(%s) AND task_id = 'chunk.deliver_to_ebox' "
                "AND state = 'running' AND start_date < now() - interval '3 seconds'",
                (self.run_ids,),
            )
            if running and running[0][0]:
                break
        if self.stop_event.is_set():
            return
        self.ebox.put(
            "/_sandbox/faults", json={**EBOX_FAULTS, "seed": self.seed, "outage_seconds": self.seconds}
        ).raise_for_status()
        self.started_at = time.monotonic()
        say(f"fault: the eBox answers 503 to every call for {self.seconds:.0f} s from now")
        self.stop_event.wait(self.seconds + 1)
        stats = self.ebox.get("/_sandbox/faults").json()["stats"]
        self.detail = {
            "seconds": self.seconds,
            "calls_during_outage": stats["outage_answers"],
            "detail": f"a {self.seconds:.0f} s eBox outage mid-wave: {stats['outage_answers']} calls reached "
            "the eBox during it (each answered 503)",
        }
        say(f"fault: {self.detail['detail']}")


# The eBox client's retry log line (include/dijlepost/ebox/client.py) for an error answer and a timeout.
EBOX_ERROR_LINE = re.compile(rf"eBox POST \S+: HTTP {EBOX_FAULTS['error_status']} \(attempt")
EBOX_TIMEOUT_LINE = re.compile(r"eBox POST \S+: \w*Timeout \(attempt")


class PrintHouse(threading.Thread):
    """The print house's side, as a print house works: every second it takes the complete batches out
    of its inbox (to `printed/`), prints them and answers (`sandboxes.printhouse.simulator`). It runs
    here, on the served tree, so that killing the SFTP server does not kill the printer."""

    def __init__(self, root: Path):
        super().__init__(daemon=True)
        self.root = root
        self.stop_event = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            self.consume()

    def consume(self) -> dict:
        from sandboxes.printhouse.simulator import process_inbox

        try:
            return process_inbox(self.root)
        except OSError as exc:  # the inbox is read while the server writes it; the next round retries
            self.errors.append(repr(exc))
            return {}

    def stop(self) -> None:
        self.stop_event.set()
        self.join()
        self.consume()  # what arrived after the last round


class FaultInjector(threading.Thread):
    """While the runs go: SIGKILL one running render_letters task process a few seconds into its chunk;
    kill + restart the print house's SFTP server once in the middle of an upload (as soon as a `.part`
    file shows in its inbox); then SIGKILL one running hand_over_to_print task process the moment a
    complete batch (its `.sha256` file) shows in the inbox, before the print house takes it. Each
    fault is recorded with what shows it happened; `confirm` checks the rest after the runs."""

    def __init__(self, cluster: AirflowCluster, run_ids: list[str], work: Path, services: list, url: str):
        super().__init__(daemon=True)
        self.cluster, self.run_ids, self.work, self.services, self.url = cluster, run_ids, work, services, url
        self.stop_event = threading.Event()
        self.faults: dict[str, dict] = {}
        self.errors: list[str] = []

    @property
    def done(self) -> list[str]:
        return [f"{name}: {f['detail']}" for name, f in self.faults.items()] + self.errors

    def _running(self, task_id: str) -> list[tuple]:
        return self.cluster.query(
            "SELECT pid, extract(epoch FROM now() - start_date), dag_id, map_index, try_number FROM task_instance "
            "WHERE run_id = ANY(%s) AND task_id = %s AND state = 'running' AND pid IS NOT NULL",
            (self.run_ids, task_id),
        )

    def _kill_task(
        self, name: str, task_id: str, pid: int, dag_id: str, map_index: int, try_number: int, detail: str
    ) -> None:
        os.kill(pid, signal.SIGKILL)
        self.faults[name] = {
            "task_id": task_id,
            "dag_id": dag_id,
            "map_index": map_index,
            "killed_try": try_number,
            "detail": f"{detail} ({dag_id} {task_id}[{map_index}], try {try_number}, pid {pid})",
        }

    def run(self) -> None:
        inbox = self.work / "printhouse" / "root" / "inbox"
        while not self.stop_event.wait(0.5) and len(self.faults) < 3:
            try:
                if "render_task_killed" not in self.faults:
                    for pid, age, dag_id, map_index, try_number in self._running("chunk.render_letters"):
                        if age >= 3:
                            self._kill_task(
                                "render_task_killed",
                                "chunk.render_letters",
                                pid,
                                dag_id,
                                map_index,
                                try_number,
                                f"killed {age:.0f}s into its chunk",
                            )
                            break
                if "sftp_server_killed" not in self.faults and self._running("chunk.hand_over_to_print"):
                    deadline = time.monotonic() + 20
                    while not any(inbox.glob("*.part")) and time.monotonic() < deadline:
                        time.sleep(0.01)
                    parts = sorted(p.name for p in inbox.glob("*.part"))
                    if not parts:
                        continue  # no upload caught in the act; try with the next hand-over
                    old = self.services[-1]
                    port = json.loads((self.work / "printhouse" / "connection.json").read_text())["port"]
                    os.kill(old.proc.pid, signal.SIGKILL)
                    code = old.proc.wait()
                    time.sleep(2)
                    self.services[-1] = start_printhouse(self.work, port)[0]
                    self.faults["sftp_server_killed"] = {
                        "exit_code": code,
                        "part_files": parts,
                        "detail": f"print house SFTP server killed (exit {code}) while {parts[0]} was being "
                        "written, restarted 2s later",
                    }
                elif "sftp_server_killed" in self.faults and "hand_over_killed" not in self.faults:
                    seen = {p.name for p in inbox.glob("*.zip.sha256")}
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline and not self.stop_event.is_set():
                        running = self._running("chunk.hand_over_to_print")
                        fresh = {p.name for p in inbox.glob("*.zip.sha256")} - seen
                        if running and fresh:
                            pid, _, dag_id, map_index, try_number = running[0]
                            batch_id = sorted(fresh)[0][: -len(".zip.sha256")]
                            self._kill_task(
                                "hand_over_killed",
                                "chunk.hand_over_to_print",
                                pid,
                                dag_id,
                                map_index,
                                try_number,
                                f"killed as batch {batch_id} arrived complete in the inbox",
                            )
                            with psycopg.connect(self.url) as conn:
                                [status] = conn.execute(
                                    "SELECT status FROM print_batches WHERE batch_id = %s", (batch_id,)
                                ).fetchone()
                            self.faults["hand_over_killed"]["batch_status_at_kill"] = status
                            self.faults["hand_over_killed"]["detail"] += f"; the batch was {status} then"
                            break
                        time.sleep(0.005)
            except (OSError, psycopg.Error, RuntimeError, TimeoutError) as exc:
                self.errors.append(f"fault injection error: {exc!r}")
                return

    def confirm(self, airflow_home: Path) -> list[str]:
        """What did not happen, in words (empty when every fault was injected and took effect)."""
        missing = []
        for name in ("render_task_killed", "sftp_server_killed", "hand_over_killed"):
            if name not in self.faults:
                missing.append(f"fault not injected: {name}")
        for name in ("render_task_killed", "hand_over_killed"):
            f = self.faults.get(name)
            if f is None:
                continue
            # A killed task instance comes back as its next try: Airflow saw the kill.
            rows = self.cluster.query(
                "SELECT max(try_number) FROM task_instance WHERE run_id = ANY(%s) AND dag_id = %s AND task_id = %s "
                "AND map_index = %s",
                (self.run_ids, f["dag_id"], f["task_id"], f["map_index"]),
            )
            f["tries"] = rows[0][0]
            if not rows[0][0] or rows[0][0] <= f["killed_try"]:
                missing.append(f"fault without effect: {name} (the task was not retried)")
        if (
            "sftp_server_killed" in self.faults
            and self.faults["sftp_server_killed"]["exit_code"] != -signal.SIGKILL
        ):
            missing.append("fault without effect: sftp_server_killed (the server was not killed)")
        # The eBox faults, as the client met them: its retry log lines in the task logs.
        seen = Counter()
        for path in (airflow_home / "logs").rglob("*.log"):
            text = path.read_text(errors="replace")
            seen["error"] += len(EBOX_ERROR_LINE.findall(text))
            seen["timeout"] += len(EBOX_TIMEOUT_LINE.findall(text))
        self.faults["ebox_errors"] = {
            "answers_seen": seen["error"],
            "detail": f"{seen['error']} injected HTTP {EBOX_FAULTS['error_status']} "
            "answers met by the eBox client",
        }
        self.faults["ebox_timeouts"] = {
            "answers_seen": seen["timeout"],
            "detail": f"{seen['timeout']} answers too late for the eBox client",
        }
        for kind in ("error", "timeout"):
            if not seen[kind]:
                missing.append(f"fault without effect: no eBox {kind} reached the client")
        return missing


# -- measuring -----------------------------------------------------------------------------------
def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


class PeakRss(threading.Thread):
    """The largest resident set of each task process, sampled from outside every `interval` seconds
    (psutil; the process title `airflow worker -- <task instance id>` names the task instance). A peak
    shorter than the interval can be missed: the figures are a lower bound."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True, name="peak-rss")
        self.interval = interval
        self.by_task_instance: dict[str, float] = defaultdict(float)
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._halt.wait(self.interval):
            # No `attrs` here: process_iter shares its Process objects between threads, and `attrs`
            # would replace the `info` that CpuAccounting's thread is reading.
            for p in psutil.process_iter():
                try:
                    m = TASK_TITLE.search(" ".join(p.cmdline()))
                    if m:
                        mib = p.memory_info().rss / 2**20
                        self.by_task_instance[m.group(1)] = max(self.by_task_instance[m.group(1)], mib)
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue

    def stop(self, ti_tasks: dict[str, str]) -> dict[str, float]:
        """The peak per task id (over its mapped instances and tries), in MiB."""
        self._halt.set()
        self.join()
        by_task: dict[str, float] = defaultdict(float)
        for ti, mib in self.by_task_instance.items():
            task_id = ti_tasks.get(ti)
            if task_id:
                by_task[task_id] = round(max(by_task[task_id], mib), 1)
        return dict(by_task)


class ProgressLines(threading.Thread):
    """A line per wave run whenever its progress in the outbox changed, every `interval` seconds, so
    that a long benchmark shows that it works (one small query per run: nothing the figures notice)."""

    def __init__(self, url: str, runs: list[tuple[str, str]], interval: float = 15.0):
        super().__init__(daemon=True, name="progress")
        self.url, self.runs, self.interval = url, list(runs), interval
        self._halt = threading.Event()

    def run(self) -> None:
        from include.dijlepost.progress import describe, run_progress

        shown: dict = {}
        with psycopg.connect(self.url) as conn:
            while not self._halt.wait(self.interval):
                for dag_id, run_id in list(self.runs):
                    line = describe(run_progress(conn, f"{dag_id}:{run_id}"))
                    if shown.get((dag_id, run_id)) != line:
                        shown[(dag_id, run_id)] = line
                        say(f"{dag_id}: {line}")

    def stop(self) -> None:
        self._halt.set()
        self.join()


def verify(url: str, ebox: httpx.Client, printhouse_dir: Path) -> dict:
    """What arrived, counted where it arrived: the eBox's messages per letter (matched by the PDF's
    SHA-256, not by the Idempotency-Key, which the eBox would refuse a second time anyway) and the
    letters the print house printed (its own print log, after it consumed its inbox)."""
    from sandboxes.printhouse.simulator import printed_letters

    with psycopg.connect(url) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM letters GROUP BY status").fetchall())
        letters = conn.execute("SELECT letter_id, status, pdf_sha256 FROM letters").fetchall()
        rendered = conn.execute("SELECT count(*) FROM letters WHERE rendered_at IS NOT NULL").fetchone()[0]
        by_claim = dict(conn.execute("SELECT claim_run_id, count(*) FROM letters GROUP BY 1").fetchall())
        quarantined_by_ebox = conn.execute(
            "SELECT count(*) FROM letters WHERE status = 'quarantined' AND quarantine_reason LIKE 'ebox%%'"
        ).fetchone()[0]
        evidence = dict(
            conn.execute(
                "SELECT coalesce(handover_evidence, status), count(*) FROM print_batches GROUP BY 1"
            ).fetchall()
        )
    by_digest: dict[str, list[str]] = defaultdict(list)
    for letter_id, _, sha in letters:
        if sha:
            by_digest[base64.urlsafe_b64encode(bytes.fromhex(sha)).decode().rstrip("=")].append(letter_id)
    messages: Counter = Counter()
    unmatched = 0
    for p in ebox.get("/_sandbox/publications").json():
        if p.get("code") == "NO_DIGITAL_USER":
            continue  # not delivered: the eBox said so, and the letter went on paper
        owners = {lid for a in p["attachments"] for lid in by_digest.get(a["sha256"], [])}
        if not owners:
            unmatched += 1
        messages.update(owners)
    printed = printed_letters(printhouse_dir / "root")
    ebox_ids = {lid for lid, status, _ in letters if status == "delivered_ebox"}
    paper_ids = {lid for lid, status, _ in letters if status == "handed_to_print"}
    problems = []
    if set(statuses) - set(FINAL):
        problems.append(
            f"letters not in a final state: { {s: c for s, c in statuses.items() if s not in FINAL} }"
        )
    twice = sum(1 for c in messages.values() if c > 1)
    if twice or unmatched or set(messages) != ebox_ids:
        problems.append(
            f"the eBox does not hold each delivered letter exactly once: {twice} letters in it more "
            f"than once, {len(ebox_ids - set(messages))} delivered letters missing, "
            f"{len(set(messages) - ebox_ids)} other letters in it, {unmatched} messages of no letter"
        )
    printed_twice = sum(1 for c in printed.values() if c > 1)
    if printed_twice or set(printed) != paper_ids:
        problems.append(
            f"the print house did not print each paper letter exactly once: {printed_twice} printed "
            f"more than once, {len(paper_ids - set(printed))} handed over but not printed, "
            f"{len(set(printed) - paper_ids)} printed but not handed over"
        )
    inbox_left = sorted(p.name for p in (printhouse_dir / "root" / "inbox").iterdir())
    if inbox_left:
        problems.append(f"left in the print house's inbox: {inbox_left[:5]}")
    return {
        "statuses": statuses,
        "rendered": rendered,
        "ebox_messages": sum(messages.values()),
        "ebox_letters_more_than_once": twice,
        "printed_letters": sum(printed.values()),
        "letters_printed_more_than_once": printed_twice,
        "print_batches": evidence,
        "letters_by_claim": by_claim,
        "quarantined_by_ebox": quarantined_by_ebox,
        "problems": problems,
    }


def spent_dir(args) -> Path:
    """Where a run's files go when it is done; removed once, after the last run (`remove_spent`).

    Removing a run's 100,000 files right after it made the next run's file creations dearer for
    minutes on this machine's ext4 volume, which has no journal: ext4 then skips every inode freed in
    the last minute (six while its block is not yet written back), checking them one by one on each
    new file (`recently_deleted` in `find_inode_bit`; benchmarks/document_store.py measures it).
    Moving a directory frees nothing."""
    return Path(args.workdir) / ".spent"


def set_aside(path: Path, args) -> None:
    if path.exists():
        spent_dir(args).mkdir(parents=True, exist_ok=True)
        path.rename(spent_dir(args) / uuid.uuid4().hex)


def remove_spent(args) -> None:
    if spent_dir(args).exists():
        shutil.rmtree(spent_dir(args), ignore_errors=True)
        os.sync()


def run_once(n: int, args, run_no: int = 1) -> dict:
    work = Path(args.workdir) / f"n{n}"
    set_aside(work, args)
    work.mkdir(parents=True)
    cores = args.parallelism
    outbox_db = f"dijlepost_bench_{uuid.uuid4().hex[:8]}"
    url = f"{PG_SERVER}/{outbox_db}"
    services: list[Service] = []
    os.environ.setdefault("DIJLEPOST_PSEUDONYM_KEY", secrets.token_hex(32))
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{outbox_db}"')
    try:
        with psycopg.connect(url) as conn:
            migrate(conn)
        say(f"N={n}: starting the eBox sandbox and the print house (own processes)")
        ebox_svc, ebox, ebox_conn = start_ebox(work)
        services.append(ebox_svc)
        if args.faults:
            ebox_conn["extra"]["timeout_seconds"] = EBOX_CLIENT_TIMEOUT_S
        ph_svc, ph_dir, ph_conn = start_printhouse(work)
        # the Connection's compress extra, set either way (PrintHouseHook's default is off)
        ph_conn["extra"]["compress"] = "true" if args.sftp_compression == "on" else "false"
        services.append(ph_svc)
        t = time.monotonic()
        mix = seed(url, ebox, n, args.seed)
        say(f"seeded {n} letters {mix} in {time.monotonic() - t:.0f}s")
        if args.faults:
            ebox.put("/_sandbox/faults", json={**EBOX_FAULTS, "seed": args.seed}).raise_for_status()
            say(
                f"faults: eBox {EBOX_FAULTS}, client timeout {EBOX_CLIENT_TIMEOUT_S}s; a render task process "
                "will be killed, the SFTP server dropped once mid-upload, a hand-over task killed as its batch "
                "arrives; the print house consumes its inbox throughout"
            )
        # The bare loop runs half before and half after the waves (Airflow not started yet, or stopped):
        # a machine whose speed drifts during a long run then weighs on both sides of the ratio alike.
        bare_total = min(args.bare_letters or n, n)
        say(
            f"bare rendering loop, first half of {bare_total} letters spread over the wave ({cores} processes)"
        )
        bare_before = bare_render(url, cores, bare_total, half=0)
        env = {
            "AIRFLOW_CONN_DIJLEPOST_DB": json.dumps(_pg_connection(url)),
            "AIRFLOW_CONN_EBOX_DEFAULT": json.dumps(ebox_conn),
            "AIRFLOW_CONN_PRINTHOUSE_SFTP": json.dumps(ph_conn),
            "DIJLEPOST_DOCUMENT_ROOT": str(work / "documents"),
            "DIJLEPOST_PRINT_WORK_DIR": str(work / "print-batches"),
            "DIJLEPOST_RETRY_DELAY_SECONDS": "10",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # the production deployment's scheduler and dag-processor settings, read from astro-config.yaml
            # (the tests' clusters keep Airflow's defaults)
            **production_airflow_settings(),
            "AIRFLOW__CORE__MAX_MAP_LENGTH": "4096",
        }
        # Rendering is CPU-bound: the `rendering` pool lets one chunk render per core. Delivery tasks mostly
        # wait on the eBox and the SFTP server, so the executor has DELIVERY_SLOTS slots more than that.
        pools = {**POOLS, "rendering": (cores, "chunks rendered at once (one per core)")}
        say(
            f"starting Airflow: api-server, dag-processor, scheduler (LocalExecutor, parallelism "
            f"{cores + DELIVERY_SLOTS}, rendering pool {cores})"
        )
        with AirflowCluster(
            work / "airflow", env, executor="LocalExecutor", parallelism=cores + DELIVERY_SLOTS, pools=pools
        ) as cluster:
            cluster.wait_for_dags(list(DAGS.values()))
            say("triggering the three wave DAGs")
            chunking = {
                "chunk_size": args.chunk_size,
                **({"max_chunks": args.max_chunks} if args.max_chunks else {}),
            }
            cpu = CpuAccounting()
            cpu.start()
            memory = PeakRss()
            memory.start()
            t0, t0_wall = time.monotonic(), time.time()
            runs = [
                (DAGS[d], cluster.trigger(DAGS[d], {"batch_size": max(1, c), **chunking}))
                for d, c in mix.items()
            ]
            injector, faults_done, fault_details, outage = None, [], {}, None
            # Under faults the print house takes batches while the wave runs, as a real one would (a
            # batch taken between a crash and its retry is what could be printed twice); otherwise it
            # comes by after the runs, so that its work does not weigh on the measured figures.
            printer = PrintHouse(ph_dir / "root")
            if args.faults:
                printer.start()
                injector = FaultInjector(cluster, [r for _, r in runs], work, services, url)
                injector.start()
                if args.outage_seconds:
                    outage = EboxOutage(cluster, [r for _, r in runs], ebox, args.outage_seconds, args.seed)
                    outage.start()
            progress = ProgressLines(url, runs)
            progress.start()
            states = cluster.wait(runs, timeout=args.timeout, poll=2)
            first_wall = time.monotonic() - t0
            if outage:
                outage.stop_event.set()
                outage.join()
            if injector:
                injector.stop_event.set()
                injector.join()
                faults_done = injector.done
                for line in faults_done:
                    say(f"fault: {line}")
                say(f"first runs: {states}; an operator reruns every wave once")
                ebox.put("/_sandbox/faults", json={}).raise_for_status()
                reruns = [
                    (DAGS[d], cluster.trigger(DAGS[d], {"batch_size": max(1, c), **chunking}))
                    for d, c in mix.items()
                ]
                progress.runs = reruns
                rerun_states = cluster.wait(reruns, timeout=args.timeout, poll=2)
                say(f"reruns: {rerun_states}")
                runs += reruns
                states = {**states, **rerun_states}
                injector.run_ids = [r for _, r in runs]
                fault_problems = injector.confirm(cluster.workdir / "airflow")
                if outage is not None:
                    if not outage.detail:
                        fault_problems.append("fault not injected: ebox_outage")
                    else:
                        injector.faults["ebox_outage"] = outage.detail
                faults_done, fault_details = injector.done, injector.faults
            wall = time.monotonic() - t0
            progress.stop()
            cpu_used = cpu.stop()
            tis = [ti | {"dag_id": d} for d, r in runs for ti in cluster.task_instances(d, r)]
            ti_tasks = dict(
                cluster.query(
                    "SELECT id::text, task_id FROM task_instance WHERE run_id = ANY(%s) UNION ALL "
                    "SELECT task_instance_id::text, task_id FROM task_instance_history WHERE run_id = ANY(%s)",
                    ([r for _, r in runs], [r for _, r in runs]),
                )
            )
            run_spans = cluster.query(
                "SELECT min(start_date), max(end_date) FROM dag_run WHERE run_id = ANY(%s)",
                ([r for _, r in runs],),
            )
            rss = memory.stop(ti_tasks)
        say(f"runs finished in {wall:.0f}s: {states}")
        if printer.is_alive():
            printer.stop()
        else:
            printer.consume()
        check = verify(url, ebox, ph_dir)
        if args.faults:
            check["problems"] += fault_problems + [f"print house: {e}" for e in printer.errors]
            if check["quarantined_by_ebox"]:
                check["problems"].append(
                    f"{check['quarantined_by_ebox']} letters quarantined by an eBox answer under transient faults"
                )
        say(
            f"bare rendering loop, second half of {bare_total} letters spread over the wave ({cores} processes)"
        )
        bare_after = bare_render(url, cores, bare_total, half=1)
        bare_n, bare_s = bare_before[0] + bare_after[0], bare_before[1] + bare_after[1]
    finally:
        for svc in reversed(services):
            svc.stop()
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{outbox_db}" WITH (FORCE)')
        if not args.keep:
            for sub in ("documents", "print-batches", "printhouse"):
                set_aside(work / sub, args)  # removed after the last run, see spent_dir

    # (a claim of nothing expands the chunk group to zero: Airflow leaves one skipped placeholder per
    # task, map_index -1, which is not a chunk)
    ran = [
        t
        for t in tis
        if t["start_date"]
        and t["end_date"]
        and not (t["task_id"].startswith("chunk.") and t["map_index"] == -1)
    ]
    intervals = [(t["start_date"].timestamp(), t["end_date"].timestamp()) for t in ran]
    first, last = run_spans[0]
    run_wall = (last - first).total_seconds()
    busy = _union_seconds(intervals)
    stage_letters = {
        "chunk.render_letters": check["rendered"],
        "chunk.deliver_to_ebox": check["statuses"].get("delivered_ebox", 0),
        "chunk.hand_over_to_print": check["statuses"].get("handed_to_print", 0),
    }
    stages = {}
    for task_id in sorted({t["task_id"] for t in ran}):
        mine = [t for t in ran if t["task_id"] == task_id]
        span = max(t["end_date"] for t in mine) - min(t["start_date"] for t in mine)
        task_seconds = sum((t["end_date"] - t["start_date"]).total_seconds() for t in mine)
        entry = {
            "tasks": len(mine),
            "span_s": round(span.total_seconds(), 1),
            "task_s": round(task_seconds, 1),
            "cpu_s": round(
                sum(s for ti, s in cpu_used["by_task_instance_cpu_s"].items() if ti_tasks.get(ti) == task_id),
                1,
            ),
            "retries": sum(1 for t in mine if (t["try_number"] or 1) > 1),
        }
        if task_id in stage_letters:
            entry["letters"] = stage_letters[task_id]
            entry["letters_per_s"] = round(stage_letters[task_id] / max(span.total_seconds(), 1e-9), 1)
            entry["letters_per_task_s"] = round(stage_letters[task_id] / max(task_seconds, 1e-9), 1)
        stages[task_id] = entry
    e2e = n / wall
    bare = bare_n / bare_s
    product_cpu_s, stand_in_cpu_s = product_and_stand_ins(cpu_used["by_role_cpu_s"])
    # Without the stand-ins (in production the eBox and the print house run elsewhere), the same letters
    # would have had their cores' time back: the wall time less the stand-ins' CPU spread over the cores.
    wall_without_stand_ins = max(wall - stand_in_cpu_s / cores, 1e-9)
    result = {
        "letters": n,
        "mix": mix,
        "cores": cores,
        "chunk_size": args.chunk_size,
        "max_chunks": args.max_chunks,
        "sftp_compression": args.sftp_compression,
        "chunks": stages.get("chunk.render_letters", {}).get("tasks"),
        "run_states": list(states.values()),
        "wall_s": round(wall, 1),
        "first_runs_wall_s": round(first_wall, 1),
        "letters_per_s": round(e2e, 1),
        "dag_run_span_s": round(run_wall, 1),
        "airflow_overhead_s": round(max(0.0, run_wall - busy), 1),
        "airflow_overhead_share": round(max(0.0, run_wall - busy) / run_wall, 3) if run_wall else None,
        "stages": stages,
        "peak_rss_mib": max(rss.values()) if rss else None,
        "peak_rss_mib_by_task": rss,
        "bare_letters": bare_n,
        "bare_s": round(bare_s, 1),
        "bare_letters_per_s": round(bare, 1),
        "bare_letters_per_s_before_after": [round(b[0] / b[1], 1) for b in (bare_before, bare_after)],
        "ratio_e2e_to_bare": round(e2e / bare, 3),
        "ratio_e2e_to_bare_without_stand_ins": round(n / wall_without_stand_ins / bare, 3),
        "product_cpu_s": product_cpu_s,
        "stand_in_cpu_s": stand_in_cpu_s,
        "check": check,
        "faults": faults_done,
        "fault_details": fault_details,
        "cpu_s_by_role": cpu_used["by_role_cpu_s"],
        "cpu_s_available": round(cpu_used["wall_s"] * cores, 1),
        "machine_cpu_s": cpu_used["machine_cpu_s"],
        # every task instance as seconds after the trigger: the start chain and the tail can be read here
        "timeline": sorted(
            (
                [
                    t["dag_id"],
                    t["task_id"],
                    t["map_index"],
                    t["try_number"],
                    round(t["start_date"].timestamp() - t0_wall, 1),
                    round(t["end_date"].timestamp() - t0_wall, 1),
                ]
                for t in ran
            ),
            key=lambda r: r[4],
        ),
    }
    name = f"result-{n}.json" if args.repeat == 1 else f"result-{n}-run{run_no}.json"
    (Path(args.workdir) / name).write_text(json.dumps(result, indent=2, default=str))
    return result


def medians(results: list[dict]) -> list[dict]:
    """Per N (in the order first run): how many runs, and the median wall time, end-to-end rate and
    ratio over them. One run cannot tell a 5 % change from this machine's drift; the median of a few
    can, better."""
    by_n: dict[int, list[dict]] = {}
    for r in results:
        by_n.setdefault(r["letters"], []).append(r)
    return [
        {
            "letters": n,
            "runs": len(rs),
            "wall_s": statistics.median(r["wall_s"] for r in rs),
            "letters_per_s": statistics.median(r["letters_per_s"] for r in rs),
            "ratio_e2e_to_bare": statistics.median(r["ratio_e2e_to_bare"] for r in rs),
            "ratios": [r["ratio_e2e_to_bare"] for r in rs],
        }
        for n, rs in by_n.items()
    ]


def report(r: dict) -> None:
    print(
        f"\nN = {r['letters']} letters {r['mix']} on {r['cores']} cores, chunk_size {r['chunk_size']}, "
        f"max_chunks {r['max_chunks'] or 'DAG default'}: {r['chunks']} chunks; SFTP compression {r['sftp_compression']}"
    )
    print(f"  runs:                  {', '.join(r['run_states'])}")
    print(
        f"  wall time:             {r['wall_s']} s (trigger to last run end)   dag runs span {r['dag_run_span_s']} s"
    )
    print(f"  end to end:            {r['letters_per_s']} letters/s")
    if r.get("first_runs_wall_s") and r["faults"]:
        print(f"  first runs:            {r['first_runs_wall_s']} s (trigger to the last first run's end)")
    before, after = r["bare_letters_per_s_before_after"]
    print(
        f"  bare rendering:        {r['bare_letters_per_s']} letters/s ({r['bare_letters']} letters, "
        f"{r['cores']} processes, {r['bare_s']} s; {before} before the waves, {after} after)"
    )
    print(
        f"  ratio e2e / bare:      {r['ratio_e2e_to_bare']} with the whole machine, "
        f"{r['ratio_e2e_to_bare_without_stand_ins']} with the stand-ins' CPU left out"
    )
    print(
        f"  Airflow overhead:      {r['airflow_overhead_s']} s with no task of the wave running "
        f"({(r['airflow_overhead_share'] or 0) * 100:.1f} % of the runs' span)"
    )
    print(f"  peak RSS, largest task process: {r['peak_rss_mib']} MiB")
    print(
        f"  CPU seconds:           product {r['product_cpu_s']} (tasks, scheduler, dag-processor, api-server, "
        f"PostgreSQL), stand-ins {r['stand_in_cpu_s']} (eBox sandbox, print house), of {r['cpu_s_available']} available"
    )
    print(f"  CPU seconds by role:   {r['cpu_s_by_role']}")
    print(f"  whole machine (kernel): {r['machine_cpu_s']}")
    print(
        f"  {'task':<28}{'tasks':>6}{'span s':>9}{'task s':>9}{'cpu s':>8}{'letters':>9}{'letters/s':>11}"
        f"{'per task-s':>12}{'peak MiB':>10}{'retried':>9}"
    )
    for task_id, s in r["stages"].items():
        print(
            f"  {task_id:<28}{s['tasks']:>6}{s['span_s']:>9}{s['task_s']:>9}{s['cpu_s']:>8}{s.get('letters', ''):>9}"
            f"{s.get('letters_per_s', ''):>11}{s.get('letters_per_task_s', ''):>12}"
            f"{r['peak_rss_mib_by_task'].get(task_id, ''):>10}{s['retries']:>9}"
        )
    c = r["check"]
    for line in r["faults"]:
        print(f"  fault injected:        {line}")
    print(
        f"  outcome:               {c['statuses']}; the eBox holds {c['ebox_messages']} messages "
        f"({c['ebox_letters_more_than_once']} letters more than once), the print house printed "
        f"{c['printed_letters']} letters ({c['letters_printed_more_than_once']} more than once); "
        f"print batches {c['print_batches']}"
    )
    if len(c["letters_by_claim"]) > 3:
        print(f"  letters by the run that finished them: {c['letters_by_claim']}")
    for p in c["problems"]:
        print(f"  PROBLEM: {p}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--letters", type=int, default=100_000)
    parser.add_argument("--series", help="comma-separated N values, e.g. 10000,30000,100000")
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument(
        "--max-chunks",
        type=int,
        default=None,
        help="at most this many chunks per wave run (default: the DAG's, 16)",
    )
    parser.add_argument(
        "--parallelism",
        type=int,
        default=os.cpu_count() or 2,
        help="cores to use: rendering pool slots and bare-rendering processes (default: all); "
        f"the executor gets {DELIVERY_SLOTS} slots more for delivery tasks",
    )
    parser.add_argument(
        "--bare-letters",
        type=int,
        default=None,
        help="render only this many letters in the bare loop (default: all of them)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per N, each on a fresh database; prints the median ratio per N",
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the runs")
    parser.add_argument("--workdir", default=str(ROOT / "var" / "bench" / "scale"))
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the PDFs, batches and print inbox (a later run of the same N sets them "
        "aside in <workdir>/.spent, which the next invocation removes)",
    )
    parser.add_argument(
        "--sftp-compression",
        choices=("on", "off"),
        default="off",
        help="SSH compression to the print house (PrintHouseHook's default: off); on is what a "
        "print house behind a slow link is configured with",
    )
    parser.add_argument(
        "--faults",
        action="store_true",
        help="eBox 5%% errors + 1%% timeouts, a render task killed, the SFTP server killed "
        "mid-upload, a hand-over task killed as its batch arrives, the print house "
        "consuming its inbox throughout; then one rerun of every wave. Exits 1 when a "
        "fault did not happen or a letter arrived twice (see docs/scaling.md)",
    )
    parser.add_argument(
        "--outage-seconds",
        type=float,
        default=180,
        help="with --faults: an eBox outage of this many seconds (every call answered 503) once the "
        "first chunk publishes; 0 for none (default 180)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.series.split(",")] if args.series else [args.letters]
    results = []
    remove_spent(args)  # left by an interrupted earlier invocation
    try:
        for n in sizes:
            for run_no in range(1, args.repeat + 1):
                r = run_once(n, args, run_no)
                report(r)
                results.append(r)
    finally:
        if not args.keep:
            remove_spent(args)
    if len(results) > 1:
        print("\nseries (linear cost: seconds per 1000 letters should stay flat)")
        print(f"  {'N':>8}{'wall s':>9}{'letters/s':>11}{'s/1000':>9}{'ratio':>8}{'peak MiB':>10}")
        for r in results:
            print(
                f"  {r['letters']:>8}{r['wall_s']:>9}{r['letters_per_s']:>11}"
                f"{r['wall_s'] / r['letters'] * 1000:>9.2f}{r['ratio_e2e_to_bare']:>8}{r['peak_rss_mib']:>10}"
            )
    if args.repeat > 1:
        print(f"\nmedian of {args.repeat} runs per N")
        print(f"  {'N':>8}{'wall s':>9}{'letters/s':>11}{'ratio':>8}   ratios")
        for m in medians(results):
            print(
                f"  {m['letters']:>8}{m['wall_s']:>9.1f}{m['letters_per_s']:>11.1f}{m['ratio_e2e_to_bare']:>8.3f}   "
                f"{', '.join(str(x) for x in m['ratios'])}"
            )
    # Under --faults a first run may fail after its retries; what counts is the outcome after the rerun.
    return (
        0
        if all(
            not r["check"]["problems"] and (args.faults or set(r["run_states"]) == {"success"})
            for r in results
        )
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
