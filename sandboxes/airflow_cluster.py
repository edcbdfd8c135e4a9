"""A real Airflow 3 deployment on this machine, for the tests that run the DAGs end to end
(tests/dags/), the demo (`python -m demo`) and the scale benchmark (`benchmarks/scale.py`). The
services the DAGs talk to (PostgreSQL, the eBox sandbox, the print house) are started by
`sandboxes.services`.

`AirflowCluster` gives Airflow its metadata database (a fresh one on a PostgreSQL server, dropped at
the end, or a given one that is kept), runs `airflow db migrate`, creates the pools, and starts the
real processes, each in its own process group (a Ctrl-C in the terminal reaches only the caller, which
stops them in order):

    airflow api-server      (the UI, the REST API and the execution API that task processes talk to,
                             on 127.0.0.1 and a free or given port)
    airflow dag-processor   (parses dags/ into the metadata database)
    airflow scheduler       (with LocalExecutor it also runs the tasks, `parallelism` at a time; each
                             task's log is written under AIRFLOW_HOME/logs, where the UI reads it)
    airflow celery worker   (CeleryExecutor only: one per name in `celery_workers`, each with its own
                             --celery-hostname, listening on the default, render and delivery queues)

Every process shares one JWT secret and one API secret key. Scheduled runs are switched off
(`use_job_schedule = False`): only the runs that `trigger` creates happen, and `wait` waits for them
to end. SimpleAuthManager knows the administrator `user` (with `password`), the logins of `users`
({name: role}) and those the environment adds in Airflow's own `AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS`
(`name:role,...`); roles are SimpleAuthManager's `viewer`, `user`, `op` and `admin`. `logins` holds
each one's role and password (`passwords` gives a login a fixed password; the others get a random
one). `stop()` ends exactly the process groups it started (and drops the metadata database it
created); use it as a context manager so that this happens even when a test fails.

Celery workers on one machine report the same host name to Airflow; each worker is given its own
`[core] hostname_callable` (`worker_hostname` below, reading DIJLEPOST_WORKER_NAME) so that the
`hostname` column of `task_instance` says which worker ran a task, as it does across machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from include.dijlepost.airflow_support import POOL_SPECS
from sandboxes.services import ROOT, free_port

# The PostgreSQL server on which AirflowCluster creates its fresh metadata databases.
PG_SERVER = os.environ.get("DIJLEPOST_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
# A dedicated Redis database number for the test broker (override when something else uses it).
REDIS_URL = os.environ.get("DIJLEPOST_TEST_REDIS", "redis://127.0.0.1:6379/13")
QUEUES = "default,render,delivery"
# The pools of include.dijlepost.airflow_support, with this machine's slots: name -> (slots, description).
POOLS = {spec.name: (spec.slots or os.cpu_count() or 2, spec.description) for spec in POOL_SPECS.values()}
FINAL_RUN_STATES = {"success", "failed"}
ROLES = ("viewer", "user", "op", "admin")  # SimpleAuthManager's roles, least to most


def parse_logins(text: str) -> dict[str, str]:
    """`name:role,name:role` (the form of `[core] simple_auth_manager_users`) as {name: role}."""
    logins = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, role = item.partition(":")
        if not name or role.lower() not in ROLES:
            raise ValueError(f"login {item!r} must be NAME:ROLE with ROLE one of {', '.join(ROLES)}")
        logins[name] = role.lower()
    return logins


def worker_hostname() -> str:
    """`[core] hostname_callable` for a Celery worker: the worker's own name (see module doc)."""
    return os.environ.get("DIJLEPOST_WORKER_NAME") or socket.getfqdn()


@dataclass
class AirflowCluster:
    workdir: Path
    extra_env: dict = field(default_factory=dict)  # connections, DIJLEPOST_* settings
    executor: str = "LocalExecutor"
    parallelism: int = 2
    celery_workers: tuple[str, ...] = ()  # e.g. ("worker1", "worker2")
    worker_concurrency: int = 2
    pools: dict = field(default_factory=lambda: dict(POOLS))
    # An existing metadata database to use and keep (the demo's); None: a fresh one on `server`,
    # dropped by stop().
    metadata_url: str | None = None
    server: str = PG_SERVER
    port: int | None = None  # of the api-server; None: a free one
    user: str = "operator"  # the SimpleAuthManager administrator
    password: str | None = None  # None: a random one
    users: dict = field(default_factory=dict)  # more logins, {name: role}
    passwords: dict = field(default_factory=dict)  # fixed passwords of some logins, {name: password}

    def __post_init__(self):
        self.workdir = Path(self.workdir)
        self._own_database = self.metadata_url is None
        if self._own_database:
            self.metadata_db = f"dijlepost_airflow_{uuid.uuid4().hex[:8]}"
            self.metadata_url = f"{self.server}/{self.metadata_db}"
        self.port = self.port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self._env: dict | None = None
        self.password = self.password or secrets.token_hex(16)
        # {name: (role, password)}: every login of the UI and the REST API
        self.logins = {name: (role, self._password_of(name)) for name, role in self._roles().items()}
        self._token: str | None = None

    # -- logins ---------------------------------------------------------------------------------
    def _roles(self) -> dict[str, str]:
        """{name: role} of the environment's logins, then `users`, then the administrator."""
        roles = {
            **parse_logins(os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "")),
            **{name: role.lower() for name, role in self.users.items()},
            self.user: "admin",
        }
        parse_logins(",".join(f"{n}:{r}" for n, r in roles.items()))  # a wrong role fails here
        return roles

    def _password_of(self, name: str) -> str:
        if name == self.user:
            return self.password
        return self.passwords.get(name) or secrets.token_hex(16)

    # -- configuration --------------------------------------------------------------------------
    def env(self) -> dict:
        """The environment of every Airflow process (computed once: the secrets are shared)."""
        if self._env is None:
            self._env = {
                **os.environ,
                **self._airflow_settings(),
                **self._celery_settings(),
                **self.extra_env,
            }
        return self._env

    def _sqlalchemy_url(self) -> str:
        return self.metadata_url.replace("postgresql://", "postgresql+psycopg://", 1)

    def _airflow_settings(self) -> dict[str, str]:
        return {
            "AIRFLOW_HOME": str(self.workdir / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Europe/Brussels",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{name}:{role}" for name, (role, _) in self.logins.items()
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.workdir / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self._sqlalchemy_url(),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }

    def _celery_settings(self) -> dict[str, str]:
        if self.executor != "CeleryExecutor":
            return {}
        return {
            "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self._sqlalchemy_url(),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
        }

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> AirflowCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """The metadata database, migrated, with the logins' passwords and the pools; then the processes,
        once the api-server answers."""
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self._write_passwords()
        self._create_metadata_database()
        self.airflow("db", "migrate")
        self._import_pools()
        self._spawn(
            "api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        )
        self._spawn("dag-processor", ["dag-processor"])
        self._spawn("scheduler", ["scheduler", "--skip-serve-logs"])
        for name in self.celery_workers:
            self._spawn(name, self._celery_worker_args(name), self.worker_env(name))
        self._wait_for_api()

    def _write_passwords(self) -> None:
        """SimpleAuthManager's passwords file, readable by this user only."""
        passwords = self.workdir / "passwords.json"
        passwords.write_text(json.dumps({name: password for name, (_, password) in self.logins.items()}))
        passwords.chmod(0o600)

    def _create_metadata_database(self) -> None:
        if self._own_database:
            with psycopg.connect(f"{self.server}/postgres", autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.metadata_db}"')

    def _import_pools(self) -> None:
        pools_file = self.workdir / "pools.json"
        pools_file.write_text(
            json.dumps(
                {
                    name: {"slots": slots, "description": what, "include_deferred": False}
                    for name, (slots, what) in self.pools.items()
                }
            )
        )
        self.airflow("pools", "import", str(pools_file))

    def _celery_worker_args(self, name: str) -> list[str]:
        return [
            "celery",
            "worker",
            "--celery-hostname",
            f"{name}@%h",
            "--queues",
            QUEUES,
            "--concurrency",
            str(self.worker_concurrency),
            "--skip-serve-logs",
            "--without-gossip",
            "--without-mingle",
        ]

    @staticmethod
    def worker_env(name: str) -> dict[str, str]:
        """What a Celery worker's environment adds: its name, and `worker_hostname` to report it."""
        return {
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{worker_hostname.__module__}.{worker_hostname.__qualname__}",
            "DIJLEPOST_WORKER_NAME": name,
        }

    def stop(self) -> None:
        """End the process groups it started, newest first, then drop the metadata database it created."""
        self._stop_processes()
        if self._own_database:
            self._drop_metadata_database()

    def _stop_processes(self) -> None:
        for proc in reversed(list(self.processes.values())):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # whatever is left of the group (task processes), also after the leader exited
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.processes.clear()

    def _drop_metadata_database(self) -> None:
        try:
            with psycopg.connect(f"{self.server}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.metadata_db}" WITH (FORCE)')
        except psycopg.Error:
            pass

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one of the started processes and its children (fault injection)."""
        os.killpg(self.processes[name].pid, sig)

    def _spawn(self, name: str, args: list[str], env: dict | None = None) -> None:
        log = (self.workdir / "logs" / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env={**self.env(), **(env or {})},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def airflow(self, *args: str, timeout: float = 300) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        return proc.stdout

    def _wait_for_api(self, timeout: float = 120) -> None:
        import httpx

        def healthy() -> bool:
            try:
                return httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self._poll_until(healthy, timeout, 1, lambda: f"api-server not up after {timeout}s")

    def _poll_until(self, done, timeout: float, poll: float, what_failed) -> None:
        """Until `done()`, checking before each try that every started process still runs; a
        TimeoutError saying `what_failed()` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            if done():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what_failed()}; see {self.workdir / 'logs'}")
            time.sleep(poll)

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    # -- runs -----------------------------------------------------------------------------------
    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.metadata_url) as conn:
            return conn.execute(sql, params).fetchall()

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180) -> None:
        """Until the dag-processor has serialised every one of `dag_ids`."""

        def parsed() -> bool:
            sql = "SELECT dag_id FROM serialized_dag WHERE dag_id = ANY(%s)"
            return {r[0] for r in self.query(sql, (list(dag_ids),))} >= set(dag_ids)

        self._poll_until(parsed, timeout, 1, lambda: f"DAGs {dag_ids} not parsed after {timeout}s")

    def trigger(self, dag_id: str, conf: dict | None = None, run_id: str | None = None) -> str:
        """Trigger a run through the REST API, as the UI does (a CLI process costs seconds of CPU)."""
        import httpx

        run_id = run_id or f"manual__{dag_id}__{uuid.uuid4().hex[:8]}"
        base = self.base_url
        if self._token is None:
            answer = httpx.post(
                f"{base}/auth/token", json={"username": self.user, "password": self.password}, timeout=30
            )
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        answer = httpx.post(
            f"{base}/api/v2/dags/{dag_id}/dagRuns",
            timeout=60,
            headers={"Authorization": f"Bearer {self._token}"},
            json={"dag_run_id": run_id, "logical_date": None, "conf": conf or {}},
        )
        if answer.status_code >= 400:
            raise RuntimeError(f"triggering {dag_id} failed: {answer.status_code} {answer.text[:500]}")
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        return rows[0][0] if rows else None

    def wait(self, runs: list[tuple[str, str]], timeout: float = 600, poll: float = 1.0) -> dict:
        """Wait until every (dag_id, run_id) is success or failed; returns {(dag_id, run_id): state}."""
        states: dict = {}

        def finished() -> bool:
            states.update({r: self.run_state(*r) for r in runs})
            return all(s in FINAL_RUN_STATES for s in states.values())

        self._poll_until(finished, timeout, poll, lambda: f"runs not finished after {timeout}s: {states}")
        return states

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        with psycopg.connect(self.metadata_url, row_factory=dict_row) as conn:
            return conn.execute(
                "SELECT task_id, map_index, state, hostname, start_date, end_date, try_number, queue, pool, "
                "id::text AS id FROM task_instance WHERE dag_id = %s AND run_id = %s "
                "ORDER BY start_date NULLS LAST",
                (dag_id, run_id),
            ).fetchall()

    def xcom_returns(self, dag_id: str, run_id: str, task_id: str) -> list:
        rows = self.query(
            "SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = %s "
            "AND key = 'return_value' ORDER BY map_index",
            (dag_id, run_id, task_id),
        )
        return [r[0] if not isinstance(r[0], (bytes, str)) else json.loads(r[0]) for r in rows]
