"""The processes that stand in for the city's infrastructure on one machine, started the same way by the
tests (tests/support/), the demo (`python -m demo`) and the benchmarks (benchmarks/).

- `start_embedded_postgres(pgdata)`: an embedded PostgreSQL (pgserver) on a Unix socket, for a
  machine with no PostgreSQL server (the demo);
- `start_ebox_sandbox(directory)` and `start_printhouse(directory)`: the eBox sandbox over HTTPS and
  the print house's SFTP server (`python -m sandboxes.ebox`, `python -m sandboxes.printhouse`) as
  processes of their own, each a `Service`, returned once they serve;
- `start_sshd()`: OpenSSH's sshd on loopback as the print house (`SshdServer`; see below);
- `AirflowCluster`: a real Airflow 3 deployment.

sshd plays the print house with OpenSSH's own host key verification, public-key authentication,
chroot and `internal-sftp`. It runs with its own config, host key and client key on a free port. sshd
is strict about the chroot: every component of its path must be root-owned and not group- or
world-writable, which rules out /tmp; the state directory therefore lives in /run (root-owned tmpfs)
and `stop()` removes it. It needs root, to chroot and to switch to the SFTP user.

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
(`use_job_schedule = False`): only the runs that `trigger` creates happen. SimpleAuthManager knows
the administrator `user` (with `password`), the logins of `users` ({name: role}) and those the
environment adds in Airflow's own `AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS` (`name:role,...`);
roles are SimpleAuthManager's `viewer`, `user`, `op` and `admin`. `logins` holds each one's role and
password (`passwords` gives a login a fixed password; the others get a random one). `stop()` ends exactly the process groups it started (and drops
the metadata database it created); use it as a context manager so that this happens even when a test
fails.

Celery workers on one machine report the same host name to Airflow; each worker is given its own
`[core] hostname_callable` (`worker_hostname` below, reading DIJLEPOST_WORKER_NAME) so that the
`hostname` column of `task_instance` says which worker ran a task, as it does across machines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from include.dijlepost.airflow_support import POOL_SPECS
from include.dijlepost.printhouse import sftp_connection

ROOT = Path(__file__).resolve().parents[1]
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


# -- embedded PostgreSQL ---------------------------------------------------------------------------
def start_embedded_postgres(pgdata: Path):
    """Start (or reuse) pgserver's PostgreSQL on a Unix socket in `pgdata`; returns the server, whose
    `cleanup()` stops it. Its own progress messages stay out of the caller's output."""
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls back to /tmp.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

        pgdata = Path(pgdata)
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return pgserver.get_server(pgdata, cleanup_mode="stop")


def ensure_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE `name` unless it exists (psycopg URL of a database to connect to for that)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


# -- the sandboxes as processes --------------------------------------------------------------------
class Service:
    """A helper process in its own process group (a Ctrl-C in the caller's terminal does not reach it),
    its output appended to `log`, stopped by its own id."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict | None = None):
        self.name = name
        self.log = Path(log)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_until(what: str, check, service: Service, timeout: float = 60) -> None:
    """Wait until `check()` is true; a service that exits or never gets ready is stopped, not left behind."""
    import httpx

    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not service.alive():
                raise RuntimeError(f"{service.name} exited with {service.proc.returncode}; see {service.log}")
            try:
                if check():
                    return
            except (OSError, httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{what} not ready after {timeout}s; see {service.log}")
    except BaseException:
        service.stop()
        raise


def start_ebox_sandbox(
    directory: Path, log: Path | None = None, port: int | None = None, args: tuple[str, ...] = ()
):
    """`python -m sandboxes.ebox` serving HTTPS on 127.0.0.1; returns (service, an httpx.Client that
    trusts its CA, the `ebox_default` Connection as JSON) once it answers and has written its
    connection file."""
    import httpx

    directory = Path(directory)
    (directory / "connection.json").unlink(missing_ok=True)
    port = port or free_port()
    service = Service(
        "eBox sandbox",
        [sys.executable, "-m", "sandboxes.ebox", "--port", str(port), "--dir", str(directory), *args],
        log or directory.parent / "ebox-sandbox.log",
    )
    found: dict = {}

    def ready() -> bool:
        if "client" not in found:
            if not (directory / "ca.pem").exists():
                return False
            found["client"] = httpx.Client(
                base_url=f"https://127.0.0.1:{port}",
                timeout=120,
                verify=ssl.create_default_context(cafile=str(directory / "ca.pem")),
            )
        if found["client"].get("/_sandbox/health").status_code != 200:
            return False
        # The sandbox writes its connection once it serves: a health answer can come first.
        found["connection"] = json.loads((directory / "connection.json").read_text())
        return True

    wait_until("eBox sandbox", ready, service)
    return service, found["client"], found["connection"]


def start_printhouse(directory: Path, log: Path | None = None, port: int = 0, args: tuple[str, ...] = ()):
    """`python -m sandboxes.printhouse` (asyncssh SFTP) on 127.0.0.1; returns (service, the
    `printhouse_sftp` Connection as JSON) once it has written its connection file."""
    directory = Path(directory)
    (directory / "connection.json").unlink(missing_ok=True)
    service = Service(
        "print house SFTP",
        [sys.executable, "-m", "sandboxes.printhouse", "--dir", str(directory), "--port", str(port), *args],
        log or directory.parent / "printhouse.log",
    )
    wait_until("print house SFTP", lambda: (directory / "connection.json").exists(), service)
    return service, json.loads((directory / "connection.json").read_text())


# -- OpenSSH's sshd as the print house -------------------------------------------------------------
SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
SFTP_USER = "dijlepost-sftp"
STATE_PARENT = Path("/run")
PRIVSEP_DIR = Path("/run/sshd")
REMOTE_DIRS = ("inbox", "outbox")
TAKEN_DIR = "printed"
START_TIMEOUT_S = 10.0


@dataclass
class SshdServer:
    """A running sshd; `root` is the SFTP user's chroot on disk, holding inbox/, outbox/ and printed/."""

    host: str
    port: int
    username: str
    client_key_path: Path
    host_public_key: str
    root: Path
    state_dir: Path
    process: subprocess.Popen

    def airflow_connection(self) -> dict:
        """The Connection as JSON for `AIRFLOW_CONN_PRINTHOUSE_SFTP`."""
        return sftp_connection(
            self.host, self.port, self.username, str(self.client_key_path), self.host_public_key
        )

    def answer_as_print_house(self, behaviour=None) -> dict:
        """Play the print house on the served tree: take complete batches from the inbox (to printed/),
        check them and write acknowledgements (and, per `behaviour`, rejections and returned mail) to
        the outbox."""
        from sandboxes.printhouse.simulator import PrinterBehaviour, process_inbox

        return process_inbox(self.root, behaviour or PrinterBehaviour())

    def printed_letters(self):
        """How many times the print house printed each letter (a Counter by letter id)."""
        from sandboxes.printhouse.simulator import printed_letters

        return printed_letters(self.root)

    def log(self) -> str:
        return (self.state_dir / "sshd.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.state_dir, ignore_errors=True)


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")


def _ensure_sftp_user() -> int:
    """Create the SFTP-only system user if missing; return its uid.

    Its password field must be '*' (matches no password), not useradd's default '!': with UsePAM no,
    sshd takes a '!' for a locked account and refuses even public-key logins.
    """
    try:
        pwd.getpwnam(SFTP_USER)
    except KeyError:
        _run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--password",
                "*",
                SFTP_USER,
            ]
        )
    else:
        for line in Path("/etc/shadow").read_text().splitlines():
            user, _, rest = line.partition(":")
            if user == SFTP_USER and rest.startswith("!"):
                _run(["usermod", "--password", "*", SFTP_USER])
    return pwd.getpwnam(SFTP_USER).pw_uid


def _check_chroot_chain(path: Path) -> None:
    for component in [path, *path.parents]:
        st = component.stat()
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise RuntimeError(
                f"sshd refuses a chroot under {component}: it must be root-owned and not group- or "
                "world-writable"
            )


def _openssh_version() -> tuple[int, int]:
    out = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True).stderr
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _keygen(path: Path, comment: str) -> None:
    _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def _config(state: Path, chroot: Path, port: int) -> str:
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {state / 'ssh_host_ed25519_key'}",
        f"PidFile {state / 'sshd.pid'}",
        f"AuthorizedKeysFile {state / 'authorized_keys'}",
        "UsePAM no",
        "StrictModes yes",
        "PubkeyAuthentication yes",
        "AuthenticationMethods publickey",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        f"AllowUsers {SFTP_USER}",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
    ]
    if _openssh_version() >= (9, 8):
        # Refusal tests drop connections on purpose; penalties would then slow later tests down.
        lines.append("PerSourcePenalties no")
    lines += [
        f"Match User {SFTP_USER}",
        f"    ChrootDirectory {chroot}",
        "    ForceCommand internal-sftp -d /",
        "    AllowTcpForwarding no",
        "    PermitTTY no",
    ]
    return "\n".join(lines) + "\n"


def _wait_until_listening(process: subprocess.Popen, log: Path) -> None:
    # sshd logs this line once its listening socket is bound (-e sends the log to our file).
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        if "Server listening on" in log.read_text(errors="replace"):
            return
        time.sleep(0.02)
    process.kill()
    process.wait()
    raise RuntimeError(f"sshd did not start within {START_TIMEOUT_S}s:\n{log.read_text(errors='replace')}")


def start_sshd() -> SshdServer:
    """Start sshd in the foreground with a fresh state directory; the caller must `stop()` it."""
    uid = _ensure_sftp_user()
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)

    state = Path(tempfile.mkdtemp(prefix="dijlepost-sshd-", dir=STATE_PARENT))
    try:
        # 0755: the SFTP user must traverse it to read authorized_keys (sshd reads it as that user).
        state.chmod(0o755)
        chroot = state / "chroot"
        chroot.mkdir(mode=0o755)
        _check_chroot_chain(chroot)
        for name in REMOTE_DIRS:
            (chroot / name).mkdir(mode=0o755)
            os.chown(chroot / name, uid, -1)
        (chroot / TAKEN_DIR).mkdir(mode=0o755)

        _keygen(state / "ssh_host_ed25519_key", "dijlepost-test-sshd")
        _keygen(state / "client_key", "dijlepost-test-client")
        shutil.copyfile(state / "client_key.pub", state / "authorized_keys")
        (state / "authorized_keys").chmod(0o644)
        host_public_key = " ".join((state / "ssh_host_ed25519_key.pub").read_text().split()[:2])

        port = free_port()
        config = state / "sshd_config"
        config.write_text(_config(state, chroot, port))
        config.chmod(0o600)
        log = state / "sshd.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        _wait_until_listening(process, log)
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise
    return SshdServer(
        host="127.0.0.1",
        port=port,
        username=SFTP_USER,
        client_key_path=state / "client_key",
        host_public_key=host_public_key,
        root=chroot,
        state_dir=state,
        process=process,
    )


# -- Airflow ---------------------------------------------------------------------------------------
def worker_hostname() -> str:
    """`[core] hostname_callable` for a Celery worker: the worker's own name (see module doc)."""
    return os.environ.get("DIJLEPOST_WORKER_NAME") or socket.getfqdn()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        roles = {
            **parse_logins(os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "")),
            **{name: role.lower() for name, role in self.users.items()},
            self.user: "admin",
        }
        parse_logins(",".join(f"{n}:{r}" for n, r in roles.items()))  # a wrong role fails here
        # {name: (role, password)}: every login of the UI and the REST API
        self.logins = {
            name: (
                role,
                self.password if name == self.user else self.passwords.get(name) or secrets.token_hex(16),
            )
            for name, role in roles.items()
        }
        self._token: str | None = None

    # -- configuration --------------------------------------------------------------------------
    def env(self) -> dict:
        if self._env is not None:
            return self._env
        sa_url = self.metadata_url.replace("postgresql://", "postgresql+psycopg://", 1)
        env = dict(os.environ)
        env.update(
            {
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
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sa_url,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            }
        )
        if self.executor == "CeleryExecutor":
            env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sa_url,
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                }
            )
        env.update(self.extra_env)
        self._env = env
        return env

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
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        passwords = self.workdir / "passwords.json"
        passwords.write_text(json.dumps({name: password for name, (_, password) in self.logins.items()}))
        passwords.chmod(0o600)
        if self._own_database:
            with psycopg.connect(f"{self.server}/postgres", autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.metadata_db}"')
        self.airflow("db", "migrate")
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
        self._spawn(
            "api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        )
        self._spawn("dag-processor", ["dag-processor"])
        self._spawn("scheduler", ["scheduler", "--skip-serve-logs"])
        for name in self.celery_workers:
            self._spawn(
                name,
                [
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
                ],
                {
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "sandboxes.processes.worker_hostname",
                    "DIJLEPOST_WORKER_NAME": name,
                },
            )
        self._wait_for_api()

    def stop(self) -> None:
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
        if not self._own_database:
            return
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

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=2).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"api-server not up after {timeout}s; see {self.workdir / 'logs'}")

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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            found = {
                r[0]
                for r in self.query(
                    "SELECT dag_id FROM serialized_dag WHERE dag_id = ANY(%s)", (list(dag_ids),)
                )
            }
            if found >= set(dag_ids):
                return
            time.sleep(1)
        raise TimeoutError(f"DAGs {dag_ids} not parsed after {timeout}s; see {self.workdir / 'logs'}")

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
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            states = {r: self.run_state(*r) for r in runs}
            if all(s in FINAL_RUN_STATES for s in states.values()):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"runs not finished after {timeout}s: {states}; see {self.workdir / 'logs'}"
                )
            time.sleep(poll)

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
